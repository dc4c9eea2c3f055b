"""xraygan.experiments.plots on its own: the vertical average of per-fold ROC curves against
scikit-learn, and every chart written as a decodable, non-blank PNG from a small hand-built results
dict (one panel per evaluation set; missing values and CIs skipped)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve

from xraygan.experiments.plots import (
    _mean_fold_roc,
    plot_calibration,
    plot_ci,
    plot_confusion,
    plot_learning_curve,
    plot_roc,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _data(n, seed, signal):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(int)
    s = 1 / (1 + np.exp(-(signal * (y - 0.5) + rng.normal(0, 1, n))))
    return y, s


def _image(png: bytes) -> np.ndarray:
    assert png[:8] == PNG
    im = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    assert im.std() > 5  # something was drawn
    return im


def _results(sets=("test",)):
    y, s1 = _data(80, 0, 1.0)
    _, s2 = _data(80, 1, 3.0)
    truth = {"oof": y, **{k: _data(40, 2, 0)[0] for k in sets}}
    scores = {"real": {"oof": s1, **{k: _data(40, 3, 1.0)[1] for k in sets}},
              "real+synthetic": {"oof": s2, **{k: _data(40, 4, 2.0)[1] for k in sets}}}
    ci = lambda v: {"value": v, "lo": v - 0.05, "hi": v + 0.05}  # noqa: E731
    cm = {"classes": ["A", "B", "C"], "rate": np.eye(3).tolist(), "lo": (0.8 * np.eye(3)).tolist(), "hi": np.ones((3, 3)).tolist()}
    arms = {a: {"fold_tests": {"auc": ci(0.8), "ece": {"value": 0.05, "lo": None, "hi": float("nan")},
                               "sensitivity": {"value": None, "lo": None, "hi": None}, "confusion": cm},
                "test_sets": {k: {"auc": ci(0.7), "ece": ci(0.1), "sensitivity": ci(0.6)} for k in sets}}
            for a in scores}
    curve = {"real": {"0.25": {"real_patients": 5, "value": 0.6, "lo": 0.5, "hi": 0.7},
                      "1.0": {"real_patients": 20, "value": 0.8, "lo": None, "hi": None}},
             "real+synthetic": {"1.0": {"real_patients": 20, "value": 0.82, "lo": 0.75, "hi": 0.9}}}
    return {"_truth": truth, "_scores": scores, "_fold_of": np.arange(80) // 40, "arms": arms,
            "protocol": {"held_out_sets": {k: {"n_images": 40} for k in sets}}, "learning_curve": curve}


def test_mean_fold_roc_against_sklearn():
    y, s = _data(60, 5, 1.5)
    grid, tpr, auc = _mean_fold_roc(y, s, np.zeros(60, int))
    fpr, ref_tpr, _ = roc_curve(y, s)
    assert grid.shape == tpr.shape == (201,) and grid[0] == 0 and grid[-1] == 1
    assert tpr[1:] == pytest.approx(np.interp(grid, fpr, ref_tpr)[1:]) and tpr[0] == 0 and tpr[-1] == 1
    assert auc == pytest.approx(roc_auc_score(y, s))
    folds = np.arange(60) % 3
    grid, tpr, auc = _mean_fold_roc(y, s, folds)
    per = [np.interp(grid, *roc_curve(y[folds == f], s[folds == f])[:2]) for f in range(3)]
    assert tpr[1:] == pytest.approx(np.mean(per, axis=0)[1:]) and np.all(np.diff(tpr) >= 0)
    assert auc == pytest.approx(np.mean([roc_auc_score(y[folds == f], s[folds == f]) for f in range(3)]))


def test_roc_and_calibration_have_one_panel_per_set():
    roc = _image(plot_roc(_results(("test",))))  # fold tests and one held-out set
    calibration = _image(plot_calibration(_results(())))  # fold tests only
    assert roc.shape[1] > 1.6 * calibration.shape[1]  # two panels side by side against one (same panel size)


def test_ci_confusion_and_learning_curve_write_pngs():
    res = _results(())  # 3 panels: fold tests x (auc, ece without a CI, sensitivity without a value)
    column = _image(plot_ci(res, ncols=1))
    assert column.shape[0] > column.shape[1]  # one panel a row: three rows
    cm = _image(plot_confusion(res))
    assert cm.shape[1] > cm.shape[0]  # two arms side by side
    _image(plot_learning_curve(res))
