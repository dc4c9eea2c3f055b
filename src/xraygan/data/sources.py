"""Readers of the source layouts ``xraygan prepare`` accepts, each giving a list of records.

- a folder with one sub-folder per class (PNG/JPEG/TIFF/BMP, 8 or 16 bit, or DICOM files);
- a CSV whose paths are relative to the CSV's folder (like the Kermany chest X-ray labels.csv);
- a MedMNIST ``.npz`` (``train_images``, ``train_labels``, ``val_*``, ``test_*``; Yang et al.,
  "MedMNIST v2", Scientific Data 10, 2023), whose own split is kept.

Nothing is decoded here (except the in-memory npz arrays): files that are plainly not images are
returned as ``kind="bad"`` records so that ``prepare`` can refuse or skip them (``--skip-bad``).
:func:`open_image_set` reads either a prepared dataset or a folder of generated images.
"""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from xraygan.data.io import is_dicom_file, is_image_file
from xraygan.errors import XrayganError

log = logging.getLogger(__name__)
NPZ_SPLITS = {"train": "train", "val": "val", "test": "test"}
RESERVED = ("file", "label", "patient_id", "sha256", "split", "source")


@dataclass
class Record:
    """One source image before decoding."""

    source: str  # display name: path relative to the source root, or "x.npz:train[3]"
    label: str
    path: Path | None = None
    kind: str = "image"  # image | dicom | array | bad
    patient_id: str | None = None
    split: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    array: np.ndarray | None = field(default=None, repr=False)
    error: str | None = None


@dataclass
class Source:
    """What a source holds: its records, classes in a fixed order, and its type."""

    records: list[Record]
    classes: list[str]
    source_type: str  # folder | csv | npz
    extra_columns: list[str] = field(default_factory=list)


def read_source(
    source: str | Path,
    path_col: str = "path",
    label_col: str = "label",
    patient_col: str | None = None,
    label_names: Sequence[str] | None = None,
) -> Source:
    """Read ``source`` (class folder, CSV or MedMNIST npz) into records; see the module docstring."""
    src = Path(source)
    if not src.exists():
        raise XrayganError(f"source {src} does not exist; give a folder with one sub-folder per class, a CSV or a .npz file")
    if src.is_dir():
        return read_folder(src)
    suffix = src.suffix.lower()
    if suffix == ".csv":
        return read_csv(src, path_col, label_col, patient_col)
    if suffix == ".npz":
        return read_npz(src, label_names)
    raise XrayganError(f"source {src}: unsupported file type {src.suffix or '(none)'}; give a folder with one sub-folder per class, a .csv or a .npz")


def _visible(p: Path | str) -> bool:
    name = p if isinstance(p, str) else p.name
    return not name.startswith(".") and name not in ("Thumbs.db", "desktop.ini")


def _classify(path: Path, display: str, label: str) -> Record:
    if is_image_file(path):
        return Record(display, label, path, "image")
    if is_dicom_file(path):
        return Record(display, label, path, "dicom")
    return Record(display, label, path, "bad", error=f"{path}: not an image file (PNG/JPEG/TIFF/BMP or DICOM expected); remove it or pass --skip-bad")


def read_folder(root: Path) -> Source:
    """One sub-folder per class; files are found recursively inside each class folder."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    if not subdirs:
        has_files = any(p.is_file() and _visible(p) for p in root.iterdir())
        if has_files:
            raise XrayganError(f"source {root}: has files but no class sub-folders; put each class in its own sub-folder ({root}/<class>/image.png)")
        raise XrayganError(f"source {root}: is empty; give a folder with one sub-folder per class of images")
    records: list[Record] = []
    for d in subdirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and all(_visible(q) for q in p.relative_to(root).parts))
        if not files:
            raise XrayganError(f"class folder {d} is empty; add images to it or remove the folder")
        records.extend(_classify(p, p.relative_to(root).as_posix(), d.name) for p in files)
    return Source(records, [d.name for d in subdirs], "folder")


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def read_csv(path: Path, path_col: str = "path", label_col: str = "label", patient_col: str | None = None) -> Source:
    """A CSV of image paths (relative to the CSV's folder), labels and optional patient ids."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise XrayganError(f"{path}: not a readable CSV file ({e}); save it as UTF-8 CSV") from None
    if not columns or not rows:
        raise XrayganError(f"{path}: CSV has no rows; it needs a header line and one row per image")
    for col, opt in ((path_col, "--path-col"), (label_col, "--label-col")):
        if col not in columns:
            raise XrayganError(f"{path}: missing column '{col}' (columns: {', '.join(columns)}); name the right one with {opt}")
    if patient_col is not None and patient_col not in columns:
        raise XrayganError(f"{path}: missing column '{patient_col}' given by --patient-col (columns: {', '.join(columns)})")
    if patient_col is None and "patient_id" in columns:
        patient_col = "patient_id"
    extras = [c for c in columns if c not in (path_col, label_col, patient_col)]
    rename = {c: (f"source_{c}" if c in RESERVED else c) for c in extras}
    base = path.parent.resolve()
    records: list[Record] = []
    for line, row in enumerate(rows, start=2):
        rel, label = (row.get(path_col) or "").strip(), (row.get(label_col) or "").strip()
        if not rel or not label:
            which = path_col if not rel else label_col
            raise XrayganError(f"{path} line {line}: empty '{which}' value; fill it in or remove the row")
        full = Path(os.path.normpath(base / rel))  # lexical: symlinked images inside the folder are fine
        if Path(rel).is_absolute() or not _inside(full, base):
            raise XrayganError(f"{path} line {line}: path {rel} is outside the CSV's folder {base}; use paths relative to the CSV's folder")
        pid = ((row.get(patient_col) or "").strip() or None) if patient_col else None
        if not full.is_file():
            rec = Record(rel, label, full, "bad", error=f"{full} (from {path} line {line}): file not found; fix the path or pass --skip-bad")
        else:
            rec = _classify(full, Path(rel).as_posix(), label)
        rec.patient_id = pid
        rec.extra = {rename[c]: row.get(c) or "" for c in extras}
        records.append(rec)
    classes = sorted({r.label for r in records})
    return Source(records, classes, "csv", [rename[c] for c in extras])


def read_npz(path: Path, label_names: Sequence[str] | None = None) -> Source:
    """A MedMNIST-style npz; its ``train``/``val``/``test`` split is kept as is."""
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:
        raise XrayganError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    with data:
        present = [s for s in NPZ_SPLITS if f"{s}_images" in data.files]
        if not present:
            raise XrayganError(f"{path}: no 'train_images' array (arrays: {', '.join(data.files)}); a MedMNIST npz has train_/val_/test_ images and labels")
        parts = []
        for s in present:
            if f"{s}_labels" not in data.files:
                raise XrayganError(f"{path}: has '{s}_images' but no '{s}_labels'")
            imgs, labs = data[f"{s}_images"], np.asarray(data[f"{s}_labels"])
            labs = labs.reshape(len(labs), -1)
            if labs.shape[1] != 1 or len(labs) != len(imgs) or imgs.ndim not in (3, 4):
                raise XrayganError(f"{path}: '{s}' arrays have unexpected shapes (images {imgs.shape}, labels {labs.shape}); single-label (N,H,W[,C]) images expected")
            parts.append((s, imgs, labs[:, 0].astype(np.int64)))
    n_cls = int(max(int(labs.max()) for _, _, labs in parts if len(labs)) + 1)
    if label_names:
        names = [str(n).strip() for n in label_names]
        if len(names) < n_cls or len(set(names)) != len(names):
            raise XrayganError(f"--label-names: {len(names)} distinct names given but {path} has labels 0..{n_cls - 1}; give one name per label, comma-separated")
    else:
        names = [str(i) for i in range(n_cls)]
    records = []
    for s, imgs, labs in parts:
        for i, (img, lab) in enumerate(zip(imgs, labs)):
            if lab < 0:
                raise XrayganError(f"{path}: negative label {lab} in {s}_labels[{i}]")
            records.append(Record(f"{path.name}:{s}[{i}]", names[lab], None, "array", split=NPZ_SPLITS[s], array=img))
    used = sorted({r.label for r in records}, key=names.index)
    return Source(records, used, "npz")


@dataclass
class ImageSet:
    """Images with labels: ``pixels`` uint8 (N, H, W), ``labels`` int64 (N,), ``classes``, ``files``."""

    pixels: np.ndarray
    labels: np.ndarray
    classes: list[str]
    files: list[str]

    def __len__(self) -> int:
        return len(self.files)


def open_image_set(path: str | Path, size: int | None = None, split: str | Sequence[str] | None = None, classes: Sequence[str] | None = None) -> ImageSet:
    """Open a prepared dataset folder or a folder of ``<label>/*.png`` images (what ``generate`` writes).

    ``size`` resizes with :func:`xraygan.data.dataset.resize_images` when it differs; ``split``
    selects splits of a prepared dataset; ``classes`` fixes the class order of a folder.
    """
    root = Path(path)
    if not root.is_dir():
        raise XrayganError(f"{root}: not a folder; give a prepared dataset or a folder with one sub-folder per class of images")
    if (root / "dataset.json").is_file():
        from xraygan.data.dataset import PreparedDataset

        ds = PreparedDataset.open(root)
        idx = ds.indices(split=split) if split is not None else np.arange(len(ds))
        if len(idx) == 0:
            raise XrayganError(f"{root}: no images in split {split!r}")
        pix = np.asarray(ds.pixels()[idx])
        out = ImageSet(pix, ds.labels[idx], ds.classes, [ds.rows[i]["file"] for i in idx])
    else:
        out = _read_class_folders(root, classes, size)
    return _resize_set(out, size, root)


def _read_class_folders(root: Path, classes: Sequence[str] | None, size: int | None) -> ImageSet:
    from xraygan.data.io import read_image_uint8

    dirs = {d.name: d for d in sorted(root.iterdir()) if d.is_dir() and _visible(d)}
    names = list(classes) if classes is not None else sorted(dirs)
    unknown = sorted(set(dirs) - set(names))
    if unknown:
        raise XrayganError(f"{root}: class folder(s) {', '.join(unknown)} not among the expected classes {', '.join(names)}")
    imgs, labels, files = [], [], []
    for ci, name in enumerate(names):
        if name not in dirs:
            continue
        for p in sorted(q for q in dirs[name].rglob("*") if q.is_file() and is_image_file(q) and _visible(q)):
            imgs.append(read_image_uint8(p))
            labels.append(ci)
            files.append(p.relative_to(root).as_posix())
    if not imgs:
        raise XrayganError(f"{root}: no PNG/JPEG images found in class sub-folders; expected {root}/<class>/*.png")
    shapes = sorted({a.shape for a in imgs})
    if len(shapes) > 1:
        if size is None:
            raise XrayganError(f"{root}: images have {len(shapes)} different sizes ({shapes[0]} ... {shapes[-1]}); give a size to resize them to")
        log.info("%s: images have %d different sizes; resizing all to %d px", root, len(shapes), size)
        imgs = [_resize_uint8(a[None], size)[0] if a.shape != (size, size) else a for a in imgs]
    return ImageSet(np.stack(imgs), np.asarray(labels, dtype=np.int64), names, files)


def _resize_uint8(pix: np.ndarray, size: int) -> np.ndarray:
    import torch

    from xraygan.data.dataset import resize_images

    x = torch.from_numpy(np.ascontiguousarray(pix, dtype=np.float32)).unsqueeze(1)
    y = resize_images(x, size)[:, 0].round().clamp(0, 255)
    return y.to(torch.uint8).numpy()


def _resize_set(s: ImageSet, size: int | None, root: Path) -> ImageSet:
    if size is None or s.pixels.shape[1:] == (size, size):
        return s
    log.info("%s: resizing %d images from %dx%d to %d px (resize_images)", root, len(s), s.pixels.shape[1], s.pixels.shape[2], size)
    chunks = [_resize_uint8(s.pixels[i:i + 512], size) for i in range(0, len(s), 512)]
    return ImageSet(np.concatenate(chunks), s.labels, s.classes, s.files)
