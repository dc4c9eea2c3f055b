"""A prepared dataset as a ``torch.utils.data.Dataset``, for your own training loop.

    from torch.utils.data import DataLoader
    import xraygan

    train = xraygan.XrayDataset("data/cxr64", split="train")            # all classes
    pneu = xraygan.XrayDataset("data/cxr64", split="test", label="PNEUMONIA")
    for x, y in DataLoader(train, batch_size=32, shuffle=True):
        ...  # x: (32, 1, 64, 64) float32 in [-1, 1]; y: (32,) int64 class indices (train.classes)

Item ``i`` is ``(image, label)``: the image a (1, H, W) float32 tensor scaled to [-1, 1] (the same
scaling training uses), or whatever ``transform(image)`` returns; the label the index of the image's
class in :attr:`XrayDataset.classes`, which are all the dataset's classes in their fixed order
(also when ``label`` keeps only one of them). Pixels come from the dataset's memory-mapped
``pixels.npy``; ``DataLoader`` worker processes open it themselves.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from xraygan.data.dataset import SPLITS, PreparedDataset
from xraygan.errors import XrayganError


class XrayDataset(Dataset):
    """Images of a prepared dataset (``xraygan prepare``'s output) with their class indices.

    ``split``: ``"train"``, ``"val"``, ``"test"``, a list of them, or None for every image.
    ``label``: one class name (or None for every class). ``transform``: called on each (1, H, W)
    image tensor in [-1, 1] (e.g. torchvision transforms). ``size``: resize to this side with
    xraygan's resizer (:func:`xraygan.data.dataset.resize_images`) before ``transform``.
    """

    def __init__(self, root: str | Path | PreparedDataset, split: str | Sequence[str] | None = "train",
                 label: str | None = None, transform: Callable[[torch.Tensor], Any] | None = None,
                 size: int | None = None) -> None:
        ds = root if isinstance(root, PreparedDataset) else PreparedDataset.open(root)
        splits = [split] if isinstance(split, str) else list(split) if split is not None else None
        for s in splits or []:
            if s not in SPLITS:
                raise XrayganError(f"split {s!r}: choose from {', '.join(SPLITS)} (or None for every image)")
        if label is not None and str(label) not in ds.classes:
            raise XrayganError(f"label {label!r}: not a class of {ds.root}; its classes are: {', '.join(ds.classes)}")
        if size is not None and (int(size) < 1):
            raise XrayganError(f"size {size}: must be at least 1")
        self.root = ds.root
        self.split, self.label, self.transform, self.size = split, label, transform, size
        self.classes: list[str] = ds.classes
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        self.indices: np.ndarray = ds.indices(split=splits, label=None if label is None else str(label))
        self.targets: list[int] = [int(t) for t in ds.labels[self.indices]]  # class index per item
        self.patients: list[str] = [str(p) for p in ds.patients[self.indices]]
        self._ds = ds

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        x = self._ds.tensor([int(self.indices[i])], size=self.size)[0]  # (1, H, W) float32 in [-1, 1]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[i]

    def __repr__(self) -> str:
        what = f"split={self.split!r}" + (f", label={self.label!r}" if self.label is not None else "")
        return f"XrayDataset({str(self.root)!r}, {what}: {len(self)} images, classes={self.classes})"

    def __getstate__(self) -> dict[str, Any]:
        # a DataLoader worker started by spawn gets the manifest, not a copy of the pixel array: it maps
        # pixels.npy itself on first use
        state = self.__dict__.copy()
        ds = self._ds
        state["_ds"] = PreparedDataset(root=ds.root, info=ds.info, rows=ds.rows)
        return state
