"""Multi-class metrics of the experiment (issue 14): macro one-vs-rest AUC, per-class AUC, balanced
accuracy, accuracy and the confusion matrix, each with a patient-level bootstrap CI; and the paired
patient bootstrap of a metric difference that replaces DeLong (binary only) for held-out sets.

Predictions are the argmax of the class probabilities (no threshold). The macro one-vs-rest AUC is
the unweighted mean over classes of the AUC of "class c against the rest" on the probability of c
(Hand & Till 2001 discuss the alternatives); it equals scikit-learn's
``roc_auc_score(y, probs, multi_class="ovr", average="macro")`` (tested).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import stats as sps

from xraygan.experiments.stats import _group_rows, auc_score
from xraygan.experiments.stats_auc import DeLongResult

MULTICLASS_METRICS = ("auc", "accuracy", "balanced_accuracy")  # "auc" is the macro one-vs-rest AUC


def per_class_auc(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC of each class (NaN where a class is absent or alone)."""
    y = np.asarray(y)
    probs = np.asarray(probs, dtype=np.float64)
    return np.array([auc_score(y == c, probs[:, c]) for c in range(probs.shape[1])])


def macro_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest AUC; NaN unless every class is present (as scikit-learn requires)."""
    aucs = per_class_auc(y, probs)
    return float(np.mean(aucs)) if np.all(np.isfinite(aucs)) else float("nan")


def confusion(y: np.ndarray, probs: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion counts, rows the true class, columns the argmax prediction."""
    pred = np.argmax(np.asarray(probs), axis=1)
    return np.bincount(np.asarray(y) * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def multiclass_metrics(y: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """:data:`MULTICLASS_METRICS` and ``auc_<class>`` (one vs rest) of argmax predictions."""
    y = np.asarray(y, dtype=np.int64)
    cm = confusion(y, probs, len(classes))
    with np.errstate(all="ignore"):
        recall = np.diag(cm) / cm.sum(axis=1)
    pcs = per_class_auc(y, probs)
    return {
        "auc": float(np.mean(pcs)) if np.all(np.isfinite(pcs)) else float("nan"),
        "accuracy": float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan"),
        "balanced_accuracy": float(np.mean(recall)) if np.all(np.isfinite(recall)) else float("nan"),
        **{f"auc_{c}": float(v) for c, v in zip(classes, pcs)},
    }


def _strata_groups(patients: np.ndarray, strata: np.ndarray) -> list[list[np.ndarray]]:
    return [[rows[g] for g in _group_rows(patients[rows])] for rows in _group_rows(strata)]


def _resample(groups: list[list[np.ndarray]], rng) -> list[np.ndarray]:
    return [np.concatenate([g[i] for i in rng.integers(0, len(g), len(g))]) for g in groups]


def bootstrap_multiclass(y, probs, patients, classes: Sequence[str], n_boot: int = 1000, seed: int = 0,
                         alpha: float = 0.05, strata=None) -> dict:
    """Every multi-class metric with a patient-bootstrap percentile CI, as :func:`stats.bootstrap_metrics`
    (mean of per-stratum metrics, patients resampled within strata), plus ``per_class_auc``
    ({class: {value, lo, hi}}) and ``confusion`` (row-normalised rates per cell with CIs, and counts)."""
    y = np.asarray(y, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    patients = np.asarray(patients, dtype=str)
    strata = np.zeros(len(y), np.int64) if strata is None else np.asarray(strata)
    groups = _strata_groups(patients, strata)
    k = len(classes)

    def measure(rows_per_stratum: list[np.ndarray]) -> tuple[dict, np.ndarray]:
        per = [multiclass_metrics(y[r], probs[r], classes) for r in rows_per_stratum]
        cm = sum(confusion(y[r], probs[r], k) for r in rows_per_stratum)
        with np.errstate(all="ignore"):
            return {m: float(np.mean([p[m] for p in per])) for m in per[0]}, cm / cm.sum(axis=1, keepdims=True)

    full, full_cm = measure([np.concatenate(g) for g in groups])
    rng = np.random.default_rng(seed)
    boot = {m: [] for m in full}
    cms = []
    for _ in range(n_boot):
        vals, cm = measure(_resample(groups, rng))
        for m, v in vals.items():
            if np.isfinite(v):
                boot[m].append(v)
        cms.append(cm)
    ci = lambda v: np.quantile(v, [alpha / 2, 1 - alpha / 2], axis=0) if len(v) else (np.nan, np.nan)  # noqa: E731
    out = {}
    for m, v in full.items():
        lo, hi = ci(np.asarray(boot[m]))
        out[m] = {"value": v, "lo": float(lo), "hi": float(hi)}
    per_cls = {c: out.pop(f"auc_{c}") for c in classes}
    with np.errstate(all="ignore"):
        lo_cm, hi_cm = np.nanquantile(np.stack(cms), [alpha / 2, 1 - alpha / 2], axis=0) if cms else (full_cm, full_cm)
    counts = sum(confusion(y[np.concatenate(g)], probs[np.concatenate(g)], k) for g in groups)
    out["per_class_auc"] = per_cls
    out["confusion"] = {"classes": list(classes), "rate": full_cm.tolist(), "lo": lo_cm.tolist(), "hi": hi_cm.tolist(),
                        "counts": counts.tolist()}
    return out


def paired_bootstrap_delta(y, probs_a, probs_b, patients, metric: Callable[[np.ndarray, np.ndarray], float] = macro_auc,
                           n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, strata=None) -> DeLongResult:
    """Paired patient bootstrap of metric(b) - metric(a) on the same images (per stratum, then averaged).

    Patients are resampled with replacement (within each stratum) and both scorers are evaluated on the
    same resample. Returns a :class:`DeLongResult` so it stands where DeLong stands: the difference,
    the bootstrap SE, z = diff/SE with its two-sided normal p, and the percentile CI."""
    y = np.asarray(y, dtype=np.int64)
    a, b = np.asarray(probs_a, np.float64), np.asarray(probs_b, np.float64)
    patients = np.asarray(patients, dtype=str)
    strata = np.zeros(len(y), np.int64) if strata is None else np.asarray(strata)
    groups = _strata_groups(patients, strata)

    def both(rows_per_stratum):
        with np.errstate(all="ignore"):
            va = float(np.mean([metric(y[r], a[r]) for r in rows_per_stratum]))
            vb = float(np.mean([metric(y[r], b[r]) for r in rows_per_stratum]))
        return va, vb

    va, vb = both([np.concatenate(g) for g in groups])
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(n_boot):
        xa, xb = both(_resample(groups, rng))
        if np.isfinite(xa) and np.isfinite(xb):
            deltas.append(xb - xa)
    if len(deltas) < 2:
        raise ValueError("the paired bootstrap needs resamples where the metric is defined")
    deltas = np.asarray(deltas)
    diff, se = vb - va, float(deltas.std(ddof=1))
    z, p = (0.0, 1.0) if se == 0 else (diff / se, float(2 * sps.norm.sf(abs(diff / se))))
    lo, hi = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    return DeLongResult(va, vb, diff, se, float(z), p, float(lo), float(hi))
