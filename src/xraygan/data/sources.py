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
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from xraygan.data.io import is_dicom_file, is_image_file
from xraygan.errors import XrayganError
from xraygan.utils.pixels import round_to_uint8, unit_to_uint8

log = logging.getLogger(__name__)
NPZ_SPLITS = {"train": "train", "val": "val", "test": "test"}
RESERVED = ("file", "label", "patient_id", "sha256", "split", "source")


class MixedSizesError(XrayganError):
    """A folder of images of different sizes was opened without a size to bring them to."""


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


def printable(name: str) -> str:
    """A file name as text that can be written anywhere (CSV, JSON, logs): bytes that are not
    UTF-8 (held by Python as surrogate escapes) become ``\\xNN``."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _path_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (None when it is a regular file)."""
    try:
        if path.is_file():
            return None
        return "not a file" if path.exists() else "file not found"
    except FileNotFoundError:
        return "file not found"
    except (OSError, ValueError) as e:  # name too long (ENAMETOOLONG), NUL byte, ...
        return getattr(e, "strerror", None) or str(e)


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
        records.extend(_classify(p, printable(p.relative_to(root).as_posix()), printable(d.name)) for p in files)
    return Source(records, [printable(d.name) for d in subdirs], "folder")


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


# column names (lower case, letters and digits only) read as the patient id when --patient-col is not given
PATIENT_COLUMNS = ("patientid", "patient", "subjectid", "subject", "mrn", "medicalrecordnumber")
# extra columns that identify a person: dropped from every output unless asked for (--keep-identifying-columns)
IDENTIFYING_COLUMN_PARTS = ("name", "birth", "dob", "mrn", "medicalrecord", "ssn", "socialsecurity", "address", "street",
                            "zip", "postcode", "phone", "email", "accession", "patientid", "otherpatientid", "instanceuid",
                            "studyuid", "seriesuid", "admission", "insurance", "nhs", "passport")


def _norm(column: str) -> str:
    return "".join(ch for ch in column.lower() if ch.isalnum())


def _patient_column(columns: Sequence[str], path: Path) -> str | None:
    """The CSV's patient id column when --patient-col is not given: ``patient_id`` or one of
    :data:`PATIENT_COLUMNS` by normalised name (``PatientID``, ``Patient ID``, ``subject_id``, ...)."""
    if "patient_id" in columns:
        return "patient_id"
    for c in columns:
        if _norm(c) in PATIENT_COLUMNS:
            log.info("%s: patient ids from column '%s' (name another with --patient-col)", path, c)
            return c
    return None


def identifying_columns(columns: Sequence[str]) -> list[str]:
    """The extra CSV columns whose names say they identify a person (see :data:`IDENTIFYING_COLUMN_PARTS`)."""
    return [c for c in columns if any(part in _norm(c) for part in IDENTIFYING_COLUMN_PARTS)]


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
            shown = ", ".join(c.encode("unicode_escape").decode("ascii") for c in columns)  # a name may hold a newline
            raise XrayganError(f"{path}: missing column '{col}' (columns: {shown}); name the right one with {opt}")
    if patient_col is not None and patient_col not in columns:
        raise XrayganError(f"{path}: missing column '{patient_col}' given by --patient-col (columns: {', '.join(columns)})")
    if patient_col is None:
        patient_col = _patient_column(columns, path)
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
        problem = _path_problem(full)
        if problem:
            rec = Record(rel, label, full, "bad", error=f"{full} (from {path} line {line}): {problem}; fix the path or pass --skip-bad")
        else:
            rec = _classify(full, Path(rel).as_posix(), label)
        rec.patient_id = pid
        rec.extra = {rename[c]: row.get(c) or "" for c in extras}
        records.append(rec)
    classes = sorted({r.label for r in records})
    return Source(records, classes, "csv", [rename[c] for c in extras])


def read_npz(path: Path, label_names: Sequence[str] | None = None) -> Source:
    """A MedMNIST-style npz; its ``train``/``val``/``test`` split is kept as is.

    Shapes and types are checked from the ``.npy`` headers before any array is loaded
    (:func:`xraygan.data.io.npz_headers`), so object arrays, empty images, mismatched lengths and
    arrays too large for memory are refused with one clear line instead of being loaded.
    """
    from xraygan.data.io import npz_headers, npz_load

    heads = npz_headers(path)
    present = [s for s in NPZ_SPLITS if f"{s}_images" in heads]
    if not present:
        raise XrayganError(f"{path}: no 'train_images' array (arrays: {', '.join(heads) or 'none'}); a MedMNIST npz has train_/val_/test_ images and labels")
    for s in present:
        if f"{s}_labels" not in heads:
            raise XrayganError(f"{path}: has '{s}_images' but no '{s}_labels'")
        im, lb = heads[f"{s}_images"], heads[f"{s}_labels"]
        what = f"{path}: '{s}' arrays have unexpected shapes (images {im.shape}, labels {lb.shape}); single-label (N,H,W[,C]) images expected"
        if len(im.shape) not in (3, 4) or (len(im.shape) == 4 and im.shape[3] not in (1, 3, 4)):
            raise XrayganError(what)
        if not 1 <= len(lb.shape) <= 2 or lb.shape[0] != im.shape[0] or math.prod(lb.shape[1:]) != 1:
            raise XrayganError(what + f" ({im.shape[0]} images, {lb.shape[0] if lb.shape else 0} labels)" if lb.shape[:1] != im.shape[:1] else what)
        if im.shape[0] and (im.shape[1] == 0 or im.shape[2] == 0):
            raise XrayganError(f"{path}: '{s}_images' are {im.shape[2]}x{im.shape[1]} pixels (empty images)")
        colour = len(im.shape) == 4 and im.shape[3] != 1
        if im.dtype.kind != "u" or im.dtype.itemsize not in (1, 2) or (colour and im.dtype.itemsize != 1):
            raise XrayganError(f"{path}: '{s}_images' are {im.dtype} ({'colour ' if colour else ''}); npz images must be uint8"
                               + ("" if colour else " or uint16"))
        if lb.dtype.kind not in "biuf":
            raise XrayganError(f"{path}: '{s}_labels' are {lb.dtype}; integer class labels (0, 1, ...) expected")
    arrays = npz_load(path, [f"{s}_{a}" for s in present for a in ("images", "labels")], heads)
    parts = []
    for s in present:
        imgs, labs = arrays[f"{s}_images"], arrays[f"{s}_labels"].reshape(-1)
        if imgs.ndim == 4 and imgs.shape[3] == 1:
            imgs = imgs[..., 0]
        if labs.dtype.kind == "f":
            bad = ~np.isfinite(labs) | (labs != np.round(labs)) | (np.abs(labs) > 2**31)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise XrayganError(f"{path}: {s}_labels[{i}] is {labs[i]}, not a whole number; integer class labels expected")
        labs = labs.astype(np.int64)
        if len(labs) and labs.min() < 0:
            i = int(np.flatnonzero(labs < 0)[0])
            raise XrayganError(f"{path}: negative label {labs[i]} in {s}_labels[{i}]")
        parts.append((s, imgs, labs))
    values = sorted({int(v) for _, _, labs in parts for v in np.unique(labs)})
    if not values:
        raise XrayganError(f"{path}: holds no images (every split is empty)")
    n_cls = values[-1] + 1
    if label_names:
        given = [str(n).strip() for n in label_names]
        if len(given) < n_cls or len(set(given)) != len(given):
            raise XrayganError(f"--label-names: {len(given)} distinct names given but {path} has labels 0..{n_cls - 1}; give one name per label, comma-separated")
        names = {v: given[v] for v in values}
    else:
        names = {v: str(v) for v in values}
    records = []
    for s, imgs, labs in parts:
        for i, (img, lab) in enumerate(zip(imgs, labs)):
            records.append(Record(f"{path.name}:{s}[{i}]", names[int(lab)], None, "array", split=NPZ_SPLITS[s], array=img))
    return Source(records, [names[v] for v in values], "npz")


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
    """Open a prepared dataset folder or a folder of ``<label>/*.png`` (or ``*.dcm``) images (what
    ``generate --format png|dicom`` writes; DICOM through :func:`xraygan.data.dicom.read_dicom`).

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


def _folder_labels(root: Path) -> dict[str, str]:
    """``{folder name: label}`` from the ``manifest.csv`` that ``generate`` writes (its folder names
    are the labels made safe for the file system); empty when there is none. A set of a newer
    format (its ``.xraygan`` marker) is refused: :func:`xraygan.utils.formats.check_generated_set`."""
    from xraygan.utils.formats import check_generated_set

    check_generated_set(root)
    try:
        with open(root / "manifest.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    out: dict[str, str] = {}
    for r in rows:
        folder, label = (r.get("file") or "").split("/", 1)[0], r.get("label")
        if label is not None and "/" in (r.get("file") or "") and out.setdefault(folder, label) != label:
            return {}  # inconsistent manifest: fall back to the folder names
    return out


def _read_class_folders(root: Path, classes: Sequence[str] | None, size: int | None) -> ImageSet:
    from xraygan.data.io import read_image_uint8

    def read(p: Path) -> np.ndarray:
        if is_dicom_file(p):  # what `generate --format dicom` writes, or any DICOM X-ray
            from xraygan.data.dicom import read_dicom

            return unit_to_uint8(read_dicom(p).pixels)
        return read_image_uint8(p)

    dirs = {d.name: d for d in sorted(root.iterdir()) if d.is_dir() and _visible(d)}
    dirs = {_folder_labels(root).get(k, k): d for k, d in dirs.items()}  # generate's safe folder names -> labels
    names = list(classes) if classes is not None else sorted(dirs)
    unknown = sorted(set(dirs) - set(names))
    if unknown:
        raise XrayganError(f"{root}: class folder(s) {', '.join(unknown)} not among the expected classes {', '.join(names)}")
    imgs, labels, files = [], [], []
    for ci, name in enumerate(names):
        if name not in dirs:
            continue
        for p in sorted(q for q in dirs[name].rglob("*") if q.is_file() and _visible(q) and (is_image_file(q) or is_dicom_file(q))):
            imgs.append(read(p))
            labels.append(ci)
            files.append(printable(p.relative_to(root).as_posix()))
    if not imgs:
        raise XrayganError(f"{root}: no PNG/JPEG/TIFF/BMP or DICOM images found in class sub-folders; expected {root}/<class>/*.png (or *.dcm)")
    shapes = sorted({a.shape for a in imgs})
    if len(shapes) > 1:
        if size is None:
            raise MixedSizesError(f"{root}: images have {len(shapes)} different sizes ({shapes[0]} ... {shapes[-1]}); give a size to resize them to")
        log.info("%s: images have %d different sizes; resizing all to %d px", root, len(shapes), size)
        imgs = [_resize_uint8(a[None], size)[0] if a.shape != (size, size) else a for a in imgs]
    return ImageSet(np.stack(imgs), np.asarray(labels, dtype=np.int64), names, files)


def _resize_uint8(pix: np.ndarray, size: int) -> np.ndarray:
    import torch

    from xraygan.data.dataset import resize_images

    x = torch.from_numpy(np.ascontiguousarray(pix, dtype=np.float32)).unsqueeze(1)
    return round_to_uint8(resize_images(x, size)[:, 0]).numpy()


def _resize_set(s: ImageSet, size: int | None, root: Path) -> ImageSet:
    if size is None or s.pixels.shape[1:] == (size, size):
        return s
    log.info("%s: resizing %d images from %dx%d to %d px (resize_images)", root, len(s), s.pixels.shape[1], s.pixels.shape[2], size)
    chunks = [_resize_uint8(s.pixels[i:i + 512], size) for i in range(0, len(s), 512)]
    return ImageSet(np.concatenate(chunks), s.labels, s.classes, s.files)
