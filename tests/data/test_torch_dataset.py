"""xraygan.data.torch_dataset on its own (tests/data/test_xray_dataset.py covers the public
``xraygan.XrayDataset`` name, DataLoader and pickling): items against the PNG files the manifest
names (not pixels.npy), split lists and label filters against the manifest, negative indices,
any transform output, and the size check."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from xraygan.data.torch_dataset import XrayDataset
from xraygan.errors import XrayganError


def _manifest(root):
    with open(root / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_items_are_the_manifest_pngs_scaled_to_minus_one_one(tiny_prepared):
    rows = _manifest(tiny_prepared)
    ds = XrayDataset(tiny_prepared, split=("val", "test"), label="NORMAL")
    want = [r for r in rows if r["split"] in ("val", "test") and r["label"] == "NORMAL"]
    assert len(ds) == len(want) > 0
    assert ds.patients == [r["patient_id"] for r in want] and ds.targets == [0] * len(want)
    for i, r in enumerate(want):
        png = np.asarray(Image.open(tiny_prepared / r["file"]), np.float32)
        x, y = ds[i]
        assert y == 0 and x.shape == (1, 16, 16)
        assert torch.allclose(x[0], torch.from_numpy(png / 127.5 - 1.0), atol=1e-6)
    assert torch.equal(ds[-len(ds)][0], ds[0][0]) and torch.equal(ds[-1][0], ds[len(ds) - 1][0])
    with pytest.raises(IndexError, match="out of range"):
        ds[-len(ds) - 1]


def test_every_split_and_label_combination_follows_the_manifest(tiny_prepared):
    rows = _manifest(tiny_prepared)
    for split in ("train", "val", "test", None, ["train", "test"]):
        for label in (None, "NORMAL", "PNEUMONIA"):
            ds = XrayDataset(tiny_prepared, split=split, label=label)
            splits = {split} if isinstance(split, str) else set(split) if split else {"train", "val", "test"}
            want = [i for i, r in enumerate(rows) if r["split"] in splits and (label is None or r["label"] == label)]
            assert ds.indices.tolist() == want, (split, label)
            assert ds.targets == [["NORMAL", "PNEUMONIA"].index(rows[i]["label"]) for i in want]
            assert ("label=" in repr(ds)) == (label is not None) and f"{len(want)} images" in repr(ds)


def test_transform_output_is_returned_as_is_and_size_is_checked(tiny_prepared):
    seen = []

    def to_stats(x):
        seen.append(tuple(x.shape))
        return {"mean": float(x.mean()), "max": float(x.max())}

    plain = XrayDataset(tiny_prepared, split="test")
    ds = XrayDataset(tiny_prepared, split="test", transform=to_stats, size=8)
    item, y = ds[1]
    assert seen == [(1, 8, 8)] and y == plain.targets[1]  # the transform gets the resized tensor
    assert set(item) == {"mean", "max"} and -1.0 <= item["mean"] <= item["max"] <= 1.0
    for bad in (0, -3):
        with pytest.raises(XrayganError, match=f"size {bad}: must be at least 1"):
            XrayDataset(tiny_prepared, size=bad)
    with pytest.raises(XrayganError, match="'holdout'"):
        XrayDataset(tiny_prepared, split=["train", "holdout"])
