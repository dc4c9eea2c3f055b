"""xraygan.experiments.heldout on its own: the held-out sets of an experiment (PREPARED's test split,
``--test`` as a prepared dataset or a folder prepared once into OUT) and the overlap guard's counts
and its rule that empty patient ids never match."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import make_prepared, synthetic_xrays
from xraygan.data.dataset import PreparedDataset
from xraygan.errors import XrayganError
from xraygan.experiments.heldout import load_test_sets, refuse_training_overlap
from xraygan.experiments.runner import ExperimentConfig


def _cfg(prep: Path, out: Path, test=None) -> ExperimentConfig:
    return ExperimentConfig(prepared=str(prep), out=str(out), test=None if test is None else str(test))


def _edit_manifest(root: Path, edit) -> Path:
    man = root / "manifest.csv"
    with open(man, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, r in enumerate(rows):
        edit(i, r)
    with open(man, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def _class_folder(root: Path, classes=("NORMAL", "PNEUMONIA"), n=6, seed=50) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i, img in enumerate(synthetic_xrays(n, 16, c, seed + c)):
            Image.fromarray(img).save(root / name / f"ext_{name}_{i}.png")
    return root


def test_without_test_option_the_held_out_set_is_the_test_split(tiny_prepared, tmp_path):
    ds = PreparedDataset.open(tiny_prepared)
    sets = load_test_sets(_cfg(tiny_prepared, tmp_path / "out"), ds)
    assert list(sets) == ["test"]
    held, rows = sets["test"]
    assert held is ds and rows.tolist() == [i for i, r in enumerate(ds.rows) if r["split"] == "test"]


def test_test_option_as_a_prepared_dataset(tiny_prepared, tmp_path):
    ext = _edit_manifest(make_prepared(tmp_path / "ext", size=16, n_per_class=6, seed=11),
                         lambda i, r: r.update(patient_id="ext-" + r["patient_id"]))
    sets = load_test_sets(_cfg(tiny_prepared, tmp_path / "out", test=ext), PreparedDataset.open(tiny_prepared))
    assert list(sets) == ["test", "external"]
    held, rows = sets["external"]
    assert held.root.resolve() == ext.resolve() and rows.tolist() == list(range(12))
    assert not (tmp_path / "out" / "test-prepared").exists()  # nothing prepared for a prepared dataset


def test_test_option_as_a_folder_is_prepared_once_at_the_experiments_size(tiny_prepared, tmp_path):
    folder = _class_folder(tmp_path / "folder")
    ds = PreparedDataset.open(tiny_prepared)
    cfg = _cfg(tiny_prepared, tmp_path / "out", test=folder)
    held, rows = load_test_sets(cfg, ds)["external"]
    dest = tmp_path / "out" / "test-prepared"
    assert held.root.resolve() == dest.resolve() and held.size == ds.size == 16
    assert len(held) == 12 == len(rows) and held.classes == ds.classes
    stamp = (dest / "dataset.json").stat().st_mtime_ns
    load_test_sets(cfg, ds)  # a second call reuses the prepared copy
    assert (dest / "dataset.json").stat().st_mtime_ns == stamp


def test_test_option_errors(tiny_prepared, tmp_path):
    ds = PreparedDataset.open(tiny_prepared)
    with pytest.raises(XrayganError, match=r"--test .*nowhere: not found"):
        load_test_sets(_cfg(tiny_prepared, tmp_path / "o1", test=tmp_path / "nowhere"), ds)
    other = make_prepared(tmp_path / "other", size=16, n_per_class=4, classes=("NORMAL", "COVID"), seed=9)
    with pytest.raises(XrayganError, match=r"classes \['NORMAL', 'COVID'\] differ from PREPARED's \['NORMAL', 'PNEUMONIA'\]"):
        load_test_sets(_cfg(tiny_prepared, tmp_path / "o2", test=other), ds)


def test_overlap_counts_and_empty_patient_ids(tiny_prepared, tmp_path):
    ds = PreparedDataset.open(tiny_prepared)
    train_pats = sorted({r["patient_id"] for r in ds.rows if r["split"] in ("train", "val")})
    test_pats = sorted({r["patient_id"] for r in ds.rows if r["split"] == "test"})
    # 8 fresh images: rows 0-1 reuse one training patient's id, row 2 reuses a test-split patient (allowed),
    # row 3 has an empty id, row 4 an empty sha256; the rest are new
    held = make_prepared(tmp_path / "held", size=16, n_per_class=4, seed=123)
    ids = {0: train_pats[0], 1: train_pats[0], 2: test_pats[0], 3: ""}
    _edit_manifest(held, lambda i, r: r.update(patient_id=ids.get(i, f"new{i}"), sha256="" if i == 4 else r["sha256"]))
    with pytest.raises(XrayganError, match=r"^--test x: 2 of its 8 images overlap .*\(2 from 1 patient\(s\) .*, 0 with identical pixels"):
        refuse_training_overlap("--test x", PreparedDataset.open(held), ds)
    # copying one training image's pixels (its sha256) into a held-out row is caught as well, once per image
    train_sha = next(r["sha256"] for r in ds.rows if r["split"] == "train")
    _edit_manifest(held, lambda i, r: r.update(patient_id=ids.get(i, f"new{i}") if i in (0, 3) else f"new{i}",
                                               sha256=train_sha if i in (0, 5) else r["sha256"]))
    with pytest.raises(XrayganError, match=r"2 of its 8 images overlap .*\(1 from 1 patient\(s\) .*, 2 with identical pixels"):
        refuse_training_overlap("--test x", PreparedDataset.open(held), ds)
    # empty ids and empty hashes never match: a set of only those is accepted
    _edit_manifest(held, lambda i, r: r.update(patient_id="", sha256=""))
    refuse_training_overlap("--test x", PreparedDataset.open(held), ds)
