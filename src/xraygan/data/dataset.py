"""Reading a prepared dataset (the folder ``xraygan prepare`` writes).

Contract (format version 1), read by every later stage:

- ``dataset.json``: ``format`` = "xraygan-prepared", ``format_version``, ``size``, ``classes``
  (fixed order: a label's index is its position here), ``counts`` per split and class,
  ``source``, ``source_type``, ``options``, ``pixels`` (name of the uint8 array file).
- ``manifest.csv``: one row per image, columns ``file,label,patient_id,sha256,split`` and every
  extra column of the source CSV; ``file`` is relative to the dataset folder (``images/...png``).
- ``images/``: 8-bit grayscale PNGs of ``size`` x ``size`` pixels.
- ``pixels.npy``: the same pixels as one ``(N, size, size)`` uint8 array in manifest order
  (loading it is much faster than decoding PNGs; the PNGs are what users look at).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from xraygan.errors import XrayganError
from xraygan.utils.formats import check_format_version
from xraygan.utils.pixels import signed_tensor

FORMAT = "xraygan-prepared"
FORMAT_VERSION = 1
MANIFEST_COLUMNS = ("file", "label", "patient_id", "sha256", "split")
SPLITS = ("train", "val", "test")


@dataclass
class PreparedDataset:
    """A prepared dataset on disk; arrays are loaded lazily and cached."""

    root: Path
    info: dict
    rows: list[dict] = field(repr=False)

    @classmethod
    def open(cls, path: str | Path) -> "PreparedDataset":
        """Open and validate the prepared dataset at ``path``."""
        root = Path(path)
        meta = root / "dataset.json"
        if not meta.is_file():
            raise XrayganError(f"{root} is not a prepared dataset (no dataset.json); create one with `xraygan prepare`")
        try:
            info = json.loads(meta.read_text())
        except json.JSONDecodeError as e:
            raise XrayganError(f"{meta} is not valid JSON: {e}") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            found = info.get("format") if isinstance(info, dict) else type(info).__name__
            raise XrayganError(f"{meta}: not an xraygan prepared dataset (format={found!r})")
        check_format_version(meta, info.get("format_version"), what="prepared dataset", current=FORMAT_VERSION,
                             rerun="prepare it again from its source images with `xraygan prepare`")
        man = root / "manifest.csv"
        if not man.is_file():
            raise XrayganError(f"{root}: manifest.csv is missing; re-run `xraygan prepare`")
        with open(man, newline="") as fh:
            rows = list(csv.DictReader(fh))
        missing = [c for c in MANIFEST_COLUMNS if rows and c not in rows[0]]
        if missing:
            raise XrayganError(f"{man}: missing column(s) {', '.join(missing)}")
        return cls(root=root, info=info, rows=rows)

    # --- metadata -------------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    @property
    def size(self) -> int:
        return int(self.info["size"])

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> np.ndarray:
        """Class index of every image, shape (N,), int64."""
        idx = {c: i for i, c in enumerate(self.classes)}
        return np.array([idx[r["label"]] for r in self.rows], dtype=np.int64)

    @property
    def patients(self) -> np.ndarray:
        return np.array([r["patient_id"] for r in self.rows], dtype=object)

    @property
    def splits(self) -> np.ndarray:
        return np.array([r["split"] for r in self.rows], dtype=object)

    def label_index(self, label: str | int) -> int:
        """Index of class ``label`` (name or index); unknown labels are an error naming the classes."""
        classes = self.classes
        if isinstance(label, int) or (isinstance(label, str) and label.isdigit() and label not in classes):
            i = int(label)
            if 0 <= i < len(classes):
                return i
        elif label in classes:
            return classes.index(label)
        raise XrayganError(f"unknown label {label!r}; this dataset's classes are: {', '.join(classes)}")

    def indices(
        self,
        split: str | Sequence[str] | None = None,
        label: str | int | None = None,
        patients: Iterable[str] | None = None,
    ) -> np.ndarray:
        """Row indices matching every given filter (split name(s), class, patient ids)."""
        keep = np.ones(len(self.rows), dtype=bool)
        if split is not None:
            wanted = {split} if isinstance(split, str) else set(split)
            keep &= np.isin(self.splits, list(wanted))
        if label is not None:
            keep &= self.labels == self.label_index(label)
        if patients is not None:
            keep &= np.isin(self.patients, list(set(patients)))
        return np.flatnonzero(keep)

    # --- pixels ---------------------------------------------------------------------------
    def pixels(self) -> np.ndarray:
        """All images as a (N, size, size) uint8 array in manifest order (memory-mapped)."""
        if not hasattr(self, "_pixels"):
            arr_path = self.root / self.info.get("pixels", "pixels.npy")
            if arr_path.is_file():
                try:
                    arr = np.load(arr_path, mmap_mode="r", allow_pickle=False)
                except (ValueError, OSError, EOFError) as e:  # truncated, object dtype, not an .npy
                    raise XrayganError(f"{arr_path}: damaged or not an image array ({' '.join(str(e).split())[:200]}); "
                                       "re-run `xraygan prepare`") from None
                if arr.ndim != 3 or arr.dtype != np.uint8:
                    raise XrayganError(f"{arr_path}: expected uint8 images of shape (N, H, W), found {arr.dtype} {arr.shape}; "
                                       "re-run `xraygan prepare`")
            else:
                from PIL import Image

                arr = np.stack([np.asarray(Image.open(self.root / r["file"]).convert("L")) for r in self.rows]) if self.rows else np.zeros((0, self.size, self.size), np.uint8)
            if arr.shape[0] != len(self.rows):
                raise XrayganError(f"{arr_path}: {arr.shape[0]} images but manifest.csv has {len(self.rows)} rows; re-run `xraygan prepare`")
            self._pixels = arr
        return self._pixels

    def tensor(self, indices: Sequence[int] | np.ndarray | None = None, size: int | None = None):
        """Images as a float32 tensor (n, 1, H, W) scaled to [-1, 1], resized to ``size`` if given."""
        pix = self.pixels()
        sel = np.asarray(pix if indices is None else pix[np.asarray(indices, dtype=np.int64)])
        x = signed_tensor(sel).unsqueeze(1)
        return resize_images(x, size) if size else x


def resize_images(x, size: int):
    """The one resizer xraygan uses everywhere (training, evaluation): (n,1,H,W) -> (n,1,size,size).

    Downsampling uses antialiased bilinear interpolation; upsampling plain bilinear.
    """
    import torch.nn.functional as F

    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
