"""xraygan.XrayDataset: a prepared dataset as a torch Dataset (split, label, transform), and the
training-loop example of docs/python-api.md run verbatim."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import xraygan
from xraygan.data.dataset import PreparedDataset
from xraygan.errors import XrayganError

README = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"  # where the example lives


def test_items_are_scaled_images_with_class_indices(tiny_prepared):
    ds = xraygan.XrayDataset(tiny_prepared, split="train")
    prep = PreparedDataset.open(tiny_prepared)
    assert isinstance(ds, Dataset) and ds.classes == ["NORMAL", "PNEUMONIA"] == prep.classes
    idx = prep.indices(split="train")
    assert len(ds) == len(idx) > 0 and ds.targets == [int(t) for t in prep.labels[idx]]
    x, y = ds[0]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32 and isinstance(y, int)
    assert -1.0 <= x.min() and x.max() <= 1.0
    assert torch.equal(x, prep.tensor([idx[0]])[0])  # the scaling training uses
    assert torch.equal(ds[-1][0], prep.tensor([idx[-1]])[0])
    # uint8 pixels round-trip exactly through the [-1, 1] scaling
    assert torch.equal(((x + 1) * 127.5).round().to(torch.uint8)[0], torch.from_numpy(prep.pixels()[idx[0]].copy()))
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_split_and_label_filters(tiny_prepared):
    prep = PreparedDataset.open(tiny_prepared)
    every = xraygan.XrayDataset(tiny_prepared, split=None)
    assert len(every) == len(prep)
    parts = [xraygan.XrayDataset(tiny_prepared, split=s) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == len(prep)
    both = xraygan.XrayDataset(tiny_prepared, split=["val", "test"])
    assert len(both) == len(parts[1]) + len(parts[2])
    pneu = xraygan.XrayDataset(prep, split="train", label="PNEUMONIA")  # a PreparedDataset works too
    assert 0 < len(pneu) < len(parts[0]) and set(pneu.targets) == {1}  # index among ALL classes
    assert pneu.classes == ["NORMAL", "PNEUMONIA"] and pneu.class_to_idx == {"NORMAL": 0, "PNEUMONIA": 1}
    assert all(p.startswith("pneumonia") for p in pneu.patients)
    with pytest.raises(XrayganError, match="NORMAL, PNEUMONIA"):
        xraygan.XrayDataset(tiny_prepared, label="COVID")
    with pytest.raises(XrayganError, match="train, val, test"):
        xraygan.XrayDataset(tiny_prepared, split="training")
    with pytest.raises(XrayganError, match="not a prepared dataset"):
        xraygan.XrayDataset(tiny_prepared / "images")


def test_transform_and_size(tiny_prepared):
    ds = xraygan.XrayDataset(tiny_prepared, split="train", transform=lambda x: (x + 1) / 2)
    x, _ = ds[0]
    assert 0.0 <= x.min() and x.max() <= 1.0
    small = xraygan.XrayDataset(tiny_prepared, split="train", size=8)
    assert small[0][0].shape == (1, 8, 8)
    # torchvision transforms take the tensor as it is
    tv = pytest.importorskip("torchvision.transforms.v2")
    flipped = xraygan.XrayDataset(tiny_prepared, split="train", transform=tv.RandomHorizontalFlip(p=1.0))
    assert torch.equal(flipped[0][0], xraygan.XrayDataset(tiny_prepared, split="train")[0][0].flip(-1))


def test_dataloader_batches_and_pickling(tiny_prepared):
    ds = xraygan.XrayDataset(tiny_prepared, split="train")
    ds.__getitem__(0)  # map the pixels: pickling must not copy them
    state = pickle.dumps(ds)
    assert len(state) < 16 * 16 * len(ds)  # manifest only, not the pixel array
    again = pickle.loads(state)
    assert torch.equal(again[3][0], ds[3][0]) and again.targets == ds.targets
    x, y = next(iter(DataLoader(ds, batch_size=5, shuffle=False)))
    assert x.shape == (5, 1, 16, 16) and y.dtype == torch.int64 and y.tolist() == ds.targets[:5]
    assert "XrayDataset(" in repr(ds) and "classes=['NORMAL', 'PNEUMONIA']" in repr(ds)


def readme_example() -> str:
    """The Python block of docs/python-api.md that uses XrayDataset (the training-loop example)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = [b for b in blocks if "XrayDataset(" in b and "DataLoader" in b]
    assert len(found) == 1, "docs/python-api.md should hold one XrayDataset training-loop example"
    return found[0]


def test_readme_training_loop_runs_verbatim(tmp_path, monkeypatch, capsys):
    code = readme_example()
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    exec(compile(code, "docs/python-api.md:XrayDataset example", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    m = re.search(r"test accuracy (\d\.\d\d) on (\d+) images", out)
    assert m and int(m.group(2)) > 0, out
    assert (tmp_path / "data" / "sample32" / "dataset.json").is_file()
