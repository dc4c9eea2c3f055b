"""Statistics for the classifier experiment: patient-level bootstrap, paired DeLong, corrected t-test.

- Binary classification metrics (AUC, accuracy, balanced accuracy, sensitivity, specificity, F1)
  with 95% confidence intervals from a *patient-level* bootstrap (Efron & Tibshirani 1993,
  percentile interval): patients, not images, are resampled, because images of one patient are
  not independent.
- The paired DeLong test for two correlated AUCs on the same cases (DeLong, DeLong &
  Clarke-Pearson 1988, Biometrics 44:837), computed with the fast midrank algorithm of Sun & Xu
  (2014, IEEE Signal Processing Letters 21:1389).
- The corrected resampled t-test for the mean difference over repeated train/test splits
  (Nadeau & Bengio 2003, Machine Learning 52:239; the repeated k-fold form of Bouckaert & Frank
  2004): the variance term 1/J is replaced by 1/J + n_test/n_train because the splits share
  training data, so the naive interval is too narrow.
- Issue 13 (calibrated; what the experiment's summary uses): :func:`corrected_repeated_cv_ttest`
  (seeds averaged within a fold, one difference per repeat x fold), :func:`delong_clustered`
  (Obuchowski 1997, patients as clusters), :func:`holm`, :func:`tost`,
  :func:`minimum_detectable_effect` and :func:`decide` ("improves" / "harms" / "equivalent" /
  "inconclusive"). Their type-I error and power are measured by ``benchmarks/calibration.py``.
  :func:`corrected_ttest`, :func:`delong_paired` and :func:`delong_stratified` are the earlier
  tests, kept for that comparison (and DeLong's midrank algorithm).

The positive class is label 1 throughout. Since the split, the point metrics and the bootstrap live
here, the DeLong tests in :mod:`xraygan.experiments.stats_auc`, the t-tests, Holm, TOST and the verdict
rules in :mod:`xraygan.experiments.stats_tests` (all importable from this module as before), and the
multi-class metrics in :mod:`xraygan.experiments.stats_multiclass`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats as sps

METRICS = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1")
# threshold-free secondary metrics (issue 13): sensitivity at 90% / 95% specificity, PR-AUC (average
# precision), Brier score and expected calibration error (10 equal-width bins of the score)
SECONDARY_METRICS = ("sensitivity_at_90_specificity", "sensitivity_at_95_specificity", "pr_auc", "brier", "ece")
ALL_METRICS = METRICS + SECONDARY_METRICS


# --- point metrics -----------------------------------------------------------------------------
def auc_score(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney form with ties counted 1/2); NaN if one class is absent."""
    y = np.asarray(y).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        return float("nan")
    ranks = sps.rankdata(np.asarray(score, dtype=np.float64))  # midranks handle ties
    return float((ranks[y].sum() - m * (m + 1) / 2) / (m * n))


def sensitivity_at_specificity(y: np.ndarray, score: np.ndarray, specificity: float) -> float:
    """The highest sensitivity of any threshold ``t`` (positive: ``score >= t``) whose specificity is at
    least ``specificity``; NaN if a class is absent."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = np.sort(score[y]), np.sort(score[~y])
    if not len(pos) or not len(neg):
        return float("nan")
    cand = np.append(np.unique(score), np.inf)
    spec = np.searchsorted(neg, cand, side="left") / len(neg)  # negatives below t
    sens = 1 - np.searchsorted(pos, cand, side="left") / len(pos)  # positives at or above t
    ok = spec >= specificity - 1e-12
    return float(sens[ok].max())


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """PR-AUC as scikit-learn's ``average_precision_score`` defines it (sum over distinct thresholds of
    recall step x precision; tested equal to it), in numpy because the bootstrap calls it thousands of
    times; NaN if a class is absent."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    if not y.any() or y.all():
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(t)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def expected_calibration_error(y: np.ndarray, score: np.ndarray, bins: int = 10) -> float:
    """ECE: sum over equal-width score bins of (bin share) x |mean label - mean score|."""
    y = np.asarray(y, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    if not len(y):
        return float("nan")
    idx = np.clip((score * bins).astype(np.int64), 0, bins - 1)
    n = np.bincount(idx, minlength=bins)
    gap = np.abs(np.bincount(idx, y, minlength=bins) - np.bincount(idx, score, minlength=bins))  # n x |mean diff|
    return float(gap.sum() / len(y)) if n.sum() else float("nan")


def youden_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The threshold ``t`` (positive: ``score >= t``) maximising Youden's J = sensitivity + specificity - 1
    over the observed scores (ties: the lowest such ``t``); 0.5 if a class is absent."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = np.sort(score[y]), np.sort(score[~y])
    if not len(pos) or not len(neg):
        return 0.5
    cand = np.unique(score)
    j = (np.searchsorted(neg, cand, side="left") / len(neg)) - np.searchsorted(pos, cand, side="left") / len(pos)
    return float(cand[int(np.argmax(j))])


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: "float | np.ndarray" = 0.5) -> dict[str, float]:
    """All :data:`ALL_METRICS` for labels ``y`` (0/1) and positive-class scores ``score``.

    Predictions are ``score >= threshold`` (``threshold``: one number, or one per image). Undefined
    ratios (e.g. no positives) are NaN. The secondary metrics do not use the threshold.
    """
    y = np.asarray(y).astype(bool)
    pred = np.asarray(score) >= threshold
    tp = float(np.sum(pred & y))
    tn = float(np.sum(~pred & ~y))
    fp = float(np.sum(pred & ~y))
    fn = float(np.sum(~pred & y))
    nan = float("nan")
    sens = tp / (tp + fn) if tp + fn else nan
    spec = tn / (tn + fp) if tn + fp else nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan
    return {
        "auc": auc_score(y, score),
        "accuracy": (tp + tn) / len(y) if len(y) else nan,
        "balanced_accuracy": (sens + spec) / 2,
        "sensitivity": sens,
        "specificity": spec,
        "f1": f1,
        **secondary_metrics(y, score),
    }


def secondary_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """:data:`SECONDARY_METRICS`."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    nan = float("nan")
    return {
        "sensitivity_at_90_specificity": sensitivity_at_specificity(y, score, 0.90),
        "sensitivity_at_95_specificity": sensitivity_at_specificity(y, score, 0.95),
        "pr_auc": average_precision(y, score),
        "brier": float(np.mean((score - y) ** 2)) if len(y) else nan,
        "ece": expected_calibration_error(y, score),
    }


# --- patient-level bootstrap -------------------------------------------------------------------
def _group_rows(ids: np.ndarray) -> list[np.ndarray]:
    """Row indices of each distinct id (sorted by id)."""
    _, inv = np.unique(ids, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(inv.max() + 2 if len(inv) else 1))
    return [order[starts[i]:starts[i + 1]] for i in range(len(starts) - 1)]


def _mean_metrics(y: np.ndarray, score: np.ndarray, strata_rows: list[np.ndarray], threshold) -> dict[str, float]:
    per = [binary_metrics(y[r], score[r], threshold[r] if np.ndim(threshold) else threshold) for r in strata_rows]
    with np.errstate(all="ignore"):
        return {k: float(np.mean([m[k] for m in per])) for k in ALL_METRICS}


def bootstrap_metrics(
    y: Sequence[int],
    score: Sequence[float],
    patients: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    threshold: "float | Sequence[float]" = 0.5,
    strata: Sequence[int] | None = None,
) -> dict[str, dict[str, float]]:
    """Every metric with a percentile CI from resampling *patients* with replacement.

    Returns ``{metric: {"value", "lo", "hi"}}``; ``value`` is the metric on the full set. With
    ``strata`` (e.g. the fold of each image, whose scores come from different models) the metric
    is the mean of the per-stratum metrics and patients are resampled within each stratum.
    Resamples where a metric is undefined (e.g. one class only, for AUC) are skipped for it.
    """
    y = np.asarray(y, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    patients = np.asarray(patients, dtype=str)
    strata_arr = np.zeros(len(y), np.int64) if strata is None else np.asarray(strata)
    # per stratum: the rows of each of its patients, so a resample concatenates whole patients
    groups = [[rows[g] for g in _group_rows(patients[rows])] for rows in _group_rows(strata_arr)]
    full = _mean_metrics(y, score, [np.concatenate(g) for g in groups], threshold)
    rng = np.random.default_rng(seed)
    if np.ndim(threshold):
        threshold = np.asarray(threshold, dtype=np.float64)  # one per image
    boot = {k: [] for k in ALL_METRICS}
    for _ in range(n_boot):
        resampled = [np.concatenate([g[i] for i in rng.integers(0, len(g), len(g))]) for g in groups]
        for k, v in _mean_metrics(y, score, resampled, threshold).items():
            if np.isfinite(v):
                boot[k].append(v)
    out = {}
    for k in ALL_METRICS:
        vals = np.asarray(boot[k])
        lo, hi = (np.quantile(vals, [alpha / 2, 1 - alpha / 2]) if len(vals) else (np.nan, np.nan))
        out[k] = {"value": full[k], "lo": float(lo), "hi": float(hi)}
    return out


# --- the tests, in their own modules since the split (names importable from here as before) --------
from xraygan.experiments.stats_auc import (  # noqa: E402,F401
    DeLongResult, clustered_auc_cov, delong_clustered, delong_clustered_stratified, delong_paired, delong_stratified,
)
from xraygan.experiments.stats_tests import (  # noqa: E402,F401
    VERDICT_WORDS, corrected_repeated_cv_ttest, corrected_ttest, decide, holm, minimum_detectable_effect, tost,
)
