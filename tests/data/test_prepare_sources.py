"""open_image_set (prepared datasets and generated class folders), the shipped sample, and the
real shared data (slow)."""
from __future__ import annotations

import csv
import logging

import numpy as np
import pytest

from tests.prepare_fixtures import save_png
from xraygan import open_image_set, sample_path
from xraygan.data.prepare import prepare
from xraygan.data.splits import KERMANY_PATIENT_REGEX
from xraygan.errors import XrayganError


def test_open_prepared_dataset(tiny_prepared):
    s = open_image_set(tiny_prepared)
    assert s.pixels.dtype == np.uint8 and s.pixels.shape == (48, 16, 16)
    assert s.labels.dtype == np.int64 and set(s.labels.tolist()) == {0, 1}
    assert s.classes == ["NORMAL", "PNEUMONIA"] and s.files[0].startswith("images/")
    t = open_image_set(tiny_prepared, split="test")
    assert 0 < len(t) < 48


def test_open_generated_folder_and_resize(tmp_path, caplog):
    gen = tmp_path / "gen"
    rng = np.random.default_rng(0)
    for c in ("NORMAL", "PNEUMONIA"):
        for i in range(3):
            save_png(gen / c / f"{i:06d}.png", rng.integers(0, 256, (32, 32), dtype=np.uint8))
    (gen / "manifest.csv").write_text("file,label\n")
    s = open_image_set(gen)
    assert s.pixels.shape == (6, 32, 32) and s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert s.files[0] == "NORMAL/000000.png"
    with caplog.at_level(logging.INFO):
        r = open_image_set(gen, size=16)
    assert r.pixels.shape == (6, 16, 16) and r.pixels.dtype == np.uint8 and "resizing" in caplog.text
    # the same resizer as everywhere (resize_images), rounded to uint8
    import torch

    from xraygan.data.dataset import resize_images

    ref = resize_images(torch.from_numpy(s.pixels.astype(np.float32))[:, None], 16)[:, 0].numpy()
    assert np.abs(r.pixels - ref).max() <= 0.5 + 1e-4
    ordered = open_image_set(gen, classes=["PNEUMONIA", "NORMAL"])
    assert ordered.classes == ["PNEUMONIA", "NORMAL"]
    assert all((lab == 1) == f.startswith("NORMAL/") for lab, f in zip(ordered.labels, ordered.files))


def test_open_image_set_errors(tmp_path):
    (tmp_path / "empty" / "A").mkdir(parents=True)
    with pytest.raises(XrayganError, match="no PNG/JPEG/TIFF/BMP or DICOM images"):
        open_image_set(tmp_path / "empty")
    with pytest.raises(XrayganError, match="not a folder"):
        open_image_set(tmp_path / "missing")


def test_shipped_sample_prepares_by_patient(tmp_path):
    root = sample_path()
    with open(root / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert 300 <= len(rows) <= 400 and {r["label"] for r in rows} == {"NORMAL", "PNEUMONIA"}
    assert "CC BY 4.0" in (root / "README.md").read_text()
    ds = prepare(root / "labels.csv", tmp_path / "out", size=32)
    assert len(ds) == len(rows) and ds.info["patient_ids_from"] == "csv"
    seen = {}
    for r in ds.rows:
        assert seen.setdefault(r["patient_id"], r["split"]) == r["split"]
    assert all(ds.info["counts"][s][c] > 0 for s in ("train", "val", "test") for c in ds.classes)


@pytest.mark.slow
def test_shared_data_csv_and_regex_agree(shared_data, tmp_path):
    a = prepare(shared_data / "labels.csv", tmp_path / "a", size=32, workers=2)
    b = prepare(shared_data, tmp_path / "b", size=32, patient_regex=KERMANY_PATIENT_REGEX, workers=2)
    assert len(a) == len(b) == 4469 and a.info["n_patients"] == b.info["n_patients"] == 2419
    pa = {r["source"]: r["patient_id"] for r in a.rows}
    assert all(pa[r["source"]] == r["patient_id"] for r in b.rows)
