"""Issue 13: the --test overlap refusal, the inner-split Youden threshold and the secondary metrics."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from tests.helpers import make_prepared
from xraygan.data.dataset import PreparedDataset
from xraygan.errors import XrayganError
from xraygan.experiments import folds as F
from xraygan.experiments import stats

from xraygan.experiments.folds import inner_split
from xraygan.experiments.heldout import refuse_training_overlap
from xraygan.experiments.runner import run_experiment
from tests.helpers import tiny_experiment


_cfg = tiny_experiment


def _rename_patients(root: Path, prefix: str) -> Path:
    """Give every patient of a prepared dataset a new id (pixels unchanged)."""
    man = root / "manifest.csv"
    with open(man, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["patient_id"] = prefix + r["patient_id"]
    with open(man, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


# --- the --test guard ----------------------------------------------------------------------------
def test_test_set_sharing_patients_or_pixels_is_refused(tiny_prepared, tmp_path):
    ds = PreparedDataset.open(tiny_prepared)
    same_patients = make_prepared(tmp_path / "same_pat", size=16, n_per_class=8, seed=7)  # other pixels, same ids
    held = PreparedDataset.open(same_patients)
    train_pats = set(ds.patients[ds.indices(split=("train", "val"))])
    n_img = sum(p in train_pats for p in held.patients)
    n_pat = len(set(held.patients) & train_pats)
    assert 0 < n_img < len(held)  # patients of PREPARED's own test split are no training patients
    with pytest.raises(XrayganError, match=rf"--test .*same_pat: {n_img} of its 16 images overlap .*{n_pat} patient\(s\)"):
        run_experiment(_cfg(tiny_prepared, tmp_path / "e1", test=str(same_patients)), progress=False)
    same_pixels = _rename_patients(make_prepared(tmp_path / "same_pix", size=16, n_per_class=24), "ext-")  # same pixels
    with pytest.raises(XrayganError, match=r"identical pixels"):
        refuse_training_overlap("--test x", PreparedDataset.open(same_pixels), ds)
    clean = _rename_patients(make_prepared(tmp_path / "clean", size=16, n_per_class=8, seed=7), "ext-")
    refuse_training_overlap("--test x", PreparedDataset.open(clean), ds)  # no overlap: accepted
    info = json.loads((clean / "dataset.json").read_text())  # the same set, its ids pseudonymised with another key
    (clean / "dataset.json").write_text(json.dumps({**info, "patient_key_fingerprint": "0123456789abcdef"}))
    with pytest.raises(XrayganError, match=r"--test x: its patient ids are pseudonymised with key 0123456789abcdef.*same --patient-key"):
        refuse_training_overlap("--test x", PreparedDataset.open(clean), ds)


# --- statistics --------------------------------------------------------------------------------
def test_threshold_and_secondary_metrics_by_hand():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    assert stats.youden_threshold(y, s) == 0.4  # J = 0.75 at 0.4 and at 0.7: the lowest
    assert stats.youden_threshold(np.ones(3), np.ones(3)) == 0.5
    assert stats.sensitivity_at_specificity(y, s, 0.9) == 0.75 and stats.sensitivity_at_specificity(y, s, 0.75) == 1.0
    assert stats.expected_calibration_error([0, 1], [0.25, 0.75]) == pytest.approx(0.25)
    m = stats.binary_metrics(y, s, threshold=0.4)
    assert m["sensitivity"] == 1.0 and m["specificity"] == 0.75
    assert m["brier"] == pytest.approx(np.mean((s - y) ** 2))
    rng = np.random.default_rng(0)
    for _ in range(20):
        yy = rng.integers(0, 2, 40)
        ss = np.round(rng.random(40) + 0.3 * yy, 1)  # ties too
        assert stats.average_precision(yy, ss) == pytest.approx(average_precision_score(yy, ss), abs=1e-12)
    ci = stats.bootstrap_metrics(y, s, np.arange(8).astype(str), n_boot=50, threshold=np.full(8, 0.4))
    assert set(ci) == set(stats.ALL_METRICS) and ci["sensitivity"]["value"] == 1.0


# --- the inner split and a tiny real experiment ------------------------------------------------
def test_inner_split_and_thresholds_end_to_end(tmp_path, tiny_prepared):
    prep = make_prepared(tmp_path / "prep", size=16, n_per_class=60)
    ds = PreparedDataset.open(prep)
    fold = F.make_folds(ds, n_folds=2, seed=0)[0]
    rest, inner, note = inner_split(ds, fold)
    pats = ds.patients
    assert note is None and len(inner) and not set(pats[inner]) & set(pats[rest.train])
    assert sorted(np.concatenate([rest.train, inner])) == sorted(fold.train) and np.array_equal(rest.test, fold.test)
    for c in (0, 1):
        n_c = len(set(pats[fold.train][ds.labels[fold.train] == c]))
        assert len(set(pats[inner][ds.labels[inner] == c])) == round(0.15 * n_c) >= 2
    assert np.array_equal(inner_split(ds, fold)[1], inner)  # the same for every arm and seed

    res = run_experiment(_cfg(prep, tmp_path / "e", arms=("real", "real+classic")), progress=False)
    saved = json.loads((tmp_path / "e" / "results.json").read_text())
    for label in ("real", "real+classic"):
        arm = saved["arms"][label]
        for u in arm["units"]:
            assert 0 <= u["threshold"] <= 1 and u["threshold_note"] is None
        assert arm["held_out_threshold"] == pytest.approx(np.mean([u["threshold"] for u in arm["units"]]))
        for sets in (arm["fold_tests"], arm["test_sets"]["test"]):
            for k in stats.SECONDARY_METRICS:
                assert sets[k]["lo"] <= sets[k]["value"] <= sets[k]["hi"] or not np.isfinite(sets[k]["value"]), (label, k)
    rec = json.loads((tmp_path / "e" / "units" / "fold0_seed0_real.json").read_text())
    assert rec["n_threshold_images"] == len(inner) and sum(rec["n_real"]) == len(fold.train) - len(inner)  # trained on the rest
    assert "Youden" in res["protocol"]["threshold"]
    assert (tmp_path / "e" / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    small = run_experiment(_cfg(tiny_prepared, tmp_path / "s"), progress=False)  # 5 training patients per class
    for u in small["arms"]["real"]["units"]:
        assert u["threshold"] == 0.5 and "fewer than 2 patients" in u["threshold_note"]
