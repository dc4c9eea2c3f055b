"""Controls that keep the verdict honest (issue 5): in the 10% regime an oracle "generator" (real
training-fold images the classifier did not get) must be judged "improves"; pure noise must not.

The fast control uses a tiny dataset whose class signal is weak enough that 10% of the patients
do not suffice (a faint blob at a jittered position under heavy pixel noise and random exposure),
so more real data visibly helps. Its settings were checked on four data seeds with the earlier test
(3 folds x 3 seeds counted as 9 runs): the oracle was judged "improves" on all (corrected t-test p
0.003-0.02) and noise on none (p > 0.19). Since issue 13 seeds are averaged within a fold, so
the same number of units is spent as 3 repetitions x 3 folds x 1 seed (9 fold differences, df 8)
rather than 3 folds x 3 seeds (3 differences, df 2). The slow control runs on the shared chest X-rays.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import make_prepared
from xraygan.experiments.classifier import ClassifierConfig
from xraygan.experiments.runner import ExperimentConfig, run_experiment


def make_weak_signal_prepared(root: Path, n_per_class: int = 200, size: int = 16, amp: float = 100.0,
                              noise: float = 50.0, seed: int = 0) -> Path:
    """A prepared dataset (one image per patient) where class 1 carries a faint, jittered blob."""
    root = make_prepared(root, size=size, n_per_class=n_per_class, per_patient=1, seed=seed)
    with open(root / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    pixels = []
    for r in rows:
        c = int(r["label"] == "PNEUMONIA")
        cx, cy = 0.5 + rng.normal(0, 0.12, 2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.01)
        img = 110 + rng.normal(0, 15) + amp * c * blob + rng.normal(0, noise, (size, size))
        img = np.clip(img, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / r["file"])
        pixels.append(img)
    np.save(root / "pixels.npy", np.stack(pixels))
    return root


def _control(prep: Path, out: Path, source: str, **kw) -> dict:
    # 10% of a fold's ~45 training patients per class; the oracle adds 8 held-back images per kept one
    base = dict(prepared=str(prep), out=str(out), gan_config=source, arms=("real", "real+synthetic"), ratios=(8.0,),
                folds=3, seeds=1, repeats=3, real_fraction=0.1, classifier=ClassifierConfig(input_size=16, steps=60, batch=16), n_boot=200)
    base.update(kw)
    res = run_experiment(ExperimentConfig(**base), progress=False)
    return res["comparisons"][f"real+synthetic x{base['ratios'][0]:g}"]


def test_oracle_improves_and_noise_does_not_in_the_low_data_regime(tmp_path):
    prep = make_weak_signal_prepared(tmp_path / "weak")
    oracle = _control(prep, tmp_path / "oracle", "oracle")
    noise = _control(prep, tmp_path / "noise", "noise")
    assert oracle["verdict"] == "improves", oracle["because"]
    assert oracle["corrected_ttest"]["lo"] > 0
    assert noise["verdict"] != "improves", noise["because"]


@pytest.mark.slow
def test_controls_on_the_shared_chest_xrays(shared_data, tmp_path_factory):
    from xraygan.data.prepare import prepare

    work = tmp_path_factory.mktemp("shared_controls")
    prep = work / "prepared32"
    prepare(shared_data / "labels.csv", prep, size=32, patient_col="patient_id", seed=0)
    # The same number of optimiser steps in every arm, so only the data differs. At 10% the small CNN
    # is already near AUC 0.99, so the oracle's gain is small; 400 steps (~50 epochs of the kept
    # patients) let the real arm overfit. Measured: 120 steps gave +0.004 (t-test p=0.39, six
    # diffs of both signs); 400 steps gave +0.006 (p=0.009, all six positive), noise -0.052 -- with
    # 3 folds x 2 seeds under the earlier test. Under the calibrated test (seeds averaged, Nadeau-Bengio
    # factor 1/(k r) + n_test/n_train) 2 repetitions x 3 folds gave +0.005, p=0.067: "equivalent", not
    # detected; the n_test/n_train term barely shrinks with repetitions, so 5 folds (n_test/n_train 1/4).
    # 2026-12-02: at 10% the oracle's +0.003 was "equivalent"/"inconclusive" (p=0.14-0.46) in two runs:
    # too little room. At 2% of the patients it gains about +0.02 AUC. With one seed per fold the
    # corrected t-test applied the n_test/n_train term to all of the fold variance (p=0.081, MDE 0.037,
    # "inconclusive"); with 2 seeds it measures the seed noise within folds and corrects only the rest:
    # +0.020, p=0.013, MDE 0.015, "improves"; noise -0.026, "harms" (session 7, 602 s under load).
    kw = dict(ratios=(8.0,), folds=5, seeds=2, repeats=2, real_fraction=0.02,
              classifier=ClassifierConfig(input_size=32, steps=400, batch=32))
    oracle = _control(prep, work / "oracle", "oracle", **kw)
    noise = _control(prep, work / "noise", "noise", **kw)
    assert oracle["verdict"] == "improves", oracle["because"]
    assert oracle["corrected_ttest"]["lo"] > 0 and oracle["corrected_ttest"]["seed_sd"] is not None, oracle["because"]
    assert noise["verdict"] != "improves", noise["because"]
