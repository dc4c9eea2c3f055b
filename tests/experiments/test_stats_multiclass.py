"""xraygan.experiments.stats_multiclass on its own: per-class AUC with a missing class, accuracy and
per-class keys against scikit-learn, strata averaged in the bootstrap and the paired delta with a
custom metric (against scikit-learn per stratum), and a paired delta that cannot be computed."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

from xraygan.experiments.stats_multiclass import (
    MULTICLASS_METRICS,
    bootstrap_multiclass,
    confusion,
    macro_auc,
    multiclass_metrics,
    paired_bootstrap_delta,
    per_class_auc,
)

CLASSES = ["a", "b", "c"]


def _probs(n, seed, signal=0.8):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    p = rng.dirichlet(np.ones(3), n)
    p[np.arange(n), y] += signal * rng.random(n)
    return y, p / p.sum(axis=1, keepdims=True)


def test_per_class_auc_and_metrics_against_sklearn():
    y, p = _probs(60, 0)
    m = multiclass_metrics(y, p, CLASSES)
    assert set(MULTICLASS_METRICS) | {"auc_a", "auc_b", "auc_c"} == set(m)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p.argmax(1)))
    for c, name in enumerate(CLASSES):
        assert m[f"auc_{name}"] == pytest.approx(roc_auc_score(y == c, p[:, c]))
    # a class missing from y: its one-vs-rest AUC is undefined, the others are not
    y2 = np.where(y == 2, 0, y)
    pcs = per_class_auc(y2, p)
    assert np.isnan(pcs[2]) and pcs[0] == pytest.approx(roc_auc_score(y2 == 0, p[:, 0]))
    assert np.isnan(macro_auc(y2, p)) and np.isnan(multiclass_metrics(y2, p, CLASSES)["balanced_accuracy"])
    # counts include predictions of a class that never occurs
    assert np.array_equal(confusion(y2, p, 3), confusion_matrix(y2, p.argmax(1), labels=[0, 1, 2]))


def test_bootstrap_value_is_the_mean_over_strata():
    y, p = _probs(90, 1)
    strata = np.repeat([0, 1], 45)
    pats = np.array([f"p{i // 3}" for i in range(90)])
    res = bootstrap_multiclass(y, p, pats, CLASSES, n_boot=20, seed=0, strata=strata)
    halves = [slice(0, 45), slice(45, 90)]
    want_auc = np.mean([roc_auc_score(y[h], p[h], multi_class="ovr", average="macro") for h in halves])
    want_acc = np.mean([accuracy_score(y[h], p[h].argmax(1)) for h in halves])
    assert res["auc"]["value"] == pytest.approx(want_auc) and res["accuracy"]["value"] == pytest.approx(want_acc)
    assert res["per_class_auc"]["b"]["value"] == pytest.approx(np.mean([roc_auc_score(y[h] == 1, p[h][:, 1]) for h in halves]))
    assert res["confusion"]["counts"] == confusion_matrix(y, p.argmax(1)).tolist()
    for m in MULTICLASS_METRICS:
        assert res[m]["lo"] <= res[m]["hi"]


def test_paired_delta_with_a_custom_metric_and_strata():
    y, a = _probs(90, 2, signal=0.3)
    _, b = _probs(90, 3, signal=1.5)
    strata = np.repeat([0, 1], 45)
    pats = np.arange(90).astype(str)
    acc = lambda yy, pp: float(np.mean(pp.argmax(1) == yy))  # noqa: E731
    r = paired_bootstrap_delta(y, a, b, pats, metric=acc, n_boot=200, seed=1, strata=strata)
    halves = [slice(0, 45), slice(45, 90)]
    va = np.mean([accuracy_score(y[h], a[h].argmax(1)) for h in halves])
    vb = np.mean([accuracy_score(y[h], b[h].argmax(1)) for h in halves])
    assert (r.auc_a, r.auc_b) == pytest.approx((va, vb)) and r.diff == pytest.approx(vb - va)
    assert r.diff > 0 and r.lo < r.diff < r.hi and r.se > 0
    narrow = paired_bootstrap_delta(y, a, b, pats, metric=acc, n_boot=200, seed=1, alpha=0.5, strata=strata)
    assert r.lo <= narrow.lo <= narrow.hi <= r.hi
    # one class only: the macro AUC is never defined, so there is nothing to bootstrap
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap_delta(np.zeros(6, int), a[:6], b[:6], pats[:6], n_boot=10)
