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
- :func:`verdict` turns these tests into "improves" / "no detectable difference" / "harms".

The positive class is label 1 throughout.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps

METRICS = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1")
VERDICTS = ("improves", "no detectable difference", "harms")


# --- point metrics -----------------------------------------------------------------------------
def auc_score(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney form with ties counted 1/2); NaN if one class is absent."""
    y = np.asarray(y).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        return float("nan")
    ranks = sps.rankdata(np.asarray(score, dtype=np.float64))  # midranks handle ties
    return float((ranks[y].sum() - m * (m + 1) / 2) / (m * n))


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """All :data:`METRICS` for labels ``y`` (0/1) and positive-class scores ``score``.

    Predictions are ``score >= threshold``. Undefined ratios (e.g. no positives) are NaN.
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
    }


# --- patient-level bootstrap -------------------------------------------------------------------
def _group_rows(ids: np.ndarray) -> list[np.ndarray]:
    """Row indices of each distinct id (sorted by id)."""
    _, inv = np.unique(ids, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(inv.max() + 2 if len(inv) else 1))
    return [order[starts[i]:starts[i + 1]] for i in range(len(starts) - 1)]


def _mean_metrics(y: np.ndarray, score: np.ndarray, strata_rows: list[np.ndarray], threshold: float) -> dict[str, float]:
    per = [binary_metrics(y[r], score[r], threshold) for r in strata_rows]
    with np.errstate(all="ignore"):
        return {k: float(np.mean([m[k] for m in per])) for k in METRICS}


def bootstrap_metrics(
    y: Sequence[int],
    score: Sequence[float],
    patients: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    threshold: float = 0.5,
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
    boot = {k: [] for k in METRICS}
    for _ in range(n_boot):
        resampled = [np.concatenate([g[i] for i in rng.integers(0, len(g), len(g))]) for g in groups]
        for k, v in _mean_metrics(y, score, resampled, threshold).items():
            if np.isfinite(v):
                boot[k].append(v)
    out = {}
    for k in METRICS:
        vals = np.asarray(boot[k])
        lo, hi = (np.quantile(vals, [alpha / 2, 1 - alpha / 2]) if len(vals) else (np.nan, np.nan))
        out[k] = {"value": full[k], "lo": float(lo), "hi": float(hi)}
    return out


# --- DeLong ------------------------------------------------------------------------------------
def _midranks(x: np.ndarray) -> np.ndarray:
    """Midranks (1-based, ties averaged) of each row of ``x`` (k, n); Sun & Xu's T arrays."""
    return np.stack([sps.rankdata(row) for row in x]) if x.size else x.astype(np.float64)


def delong_auc_cov(y: Sequence[int], scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for ``scores`` (k, n) on the same labels ``y``.

    Sun & Xu (2014), Algorithm 1: with m positives X and n negatives Y, midranks over X, over Y
    and over both give the structural components V10 (per positive) and V01 (per negative)
    without the O(mn) pairwise comparison; S = cov(V10)/m + cov(V01)/n.
    """
    y = np.asarray(y).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError("DeLong needs at least two positive and two negative cases")
    tx, ty = _midranks(pos), _midranks(neg)
    tz = _midranks(np.concatenate([pos, neg], axis=1))
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n  # fraction of negatives below each positive
    v01 = 1.0 - (tz[:, m:] - ty) / m  # fraction of positives above each negative
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


@dataclass
class DeLongResult:
    """Paired DeLong comparison of AUC(b) - AUC(a) on the same cases."""

    auc_a: float
    auc_b: float
    diff: float
    se: float
    z: float
    p: float
    lo: float
    hi: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def delong_paired(y: Sequence[int], score_a: Sequence[float], score_b: Sequence[float], alpha: float = 0.05) -> DeLongResult:
    """Two-sided paired DeLong test of AUC(b) - AUC(a), with a (1-alpha) normal CI of the difference."""
    aucs, cov = delong_auc_cov(y, np.stack([np.asarray(score_a, float), np.asarray(score_b, float)]))
    diff = float(aucs[1] - aucs[0])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0)))
    if se == 0.0:  # identical rankings (or both perfect): no evidence of a difference
        z, p = 0.0, 1.0
    else:
        z = diff / se
        p = float(2 * sps.norm.sf(abs(z)))
    q = float(sps.norm.ppf(1 - alpha / 2))
    return DeLongResult(float(aucs[0]), float(aucs[1]), diff, se, float(z), p, diff - q * se, diff + q * se)


def delong_stratified(strata: Sequence[tuple[Sequence[int], Sequence[float], Sequence[float]]], alpha: float = 0.05) -> DeLongResult:
    """Paired DeLong over disjoint test sets (e.g. the k fold test sets), each with its own models.

    Each stratum s gives a paired difference d_s = AUC_s(b) - AUC_s(a) and its DeLong variance
    v_s; the strata are disjoint, so the mean difference has variance sum(v_s) / K^2. Unlike
    pooling the scores of K different models into one ROC curve, this is unaffected by the
    models' calibration differing between folds. With one stratum it equals :func:`delong_paired`.
    """
    diffs, variances, auc_a, auc_b = [], [], [], []
    for y, a, b in strata:
        aucs, cov = delong_auc_cov(y, np.stack([np.asarray(a, float), np.asarray(b, float)]))
        auc_a.append(aucs[0])
        auc_b.append(aucs[1])
        diffs.append(aucs[1] - aucs[0])
        variances.append(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0))
    k = len(diffs)
    diff = float(np.mean(diffs))
    se = float(np.sqrt(np.sum(variances)) / k)
    z, p = (0.0, 1.0) if se == 0.0 else (diff / se, float(2 * sps.norm.sf(abs(diff / se))))
    q = float(sps.norm.ppf(1 - alpha / 2))
    return DeLongResult(float(np.mean(auc_a)), float(np.mean(auc_b)), diff, se, float(z), p, diff - q * se, diff + q * se)


# --- corrected resampled t-test ----------------------------------------------------------------
@dataclass
class CorrectedTTest:
    """Nadeau-Bengio corrected resampled t-test of the mean of paired differences."""

    mean: float
    sd: float
    n_runs: int
    test_train_ratio: float
    se: float
    t: float
    df: int
    p: float
    lo: float
    hi: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def corrected_ttest(diffs: Sequence[float], n_train: float, n_test: float, alpha: float = 0.05) -> CorrectedTTest:
    """Corrected resampled t-test over J paired differences (one per fold x seed).

    ``se = sqrt((1/J + n_test/n_train) * s^2)`` with ``s^2`` the sample variance of the
    differences; ``t = mean/se`` with J-1 degrees of freedom (Nadeau & Bengio 2003, eq. for the
    corrected resampled t; Bouckaert & Frank 2004 for repeated k-fold).
    """
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    j = len(d)
    if j < 2:
        raise ValueError("the corrected t-test needs at least two paired differences (folds x seeds >= 2)")
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    ratio = float(n_test) / float(n_train)
    se = float(np.sqrt((1.0 / j + ratio) * sd**2))
    df = j - 1
    if se == 0.0:
        t = 0.0 if mean == 0 else float(np.sign(mean) * np.inf)
        p = 1.0 if mean == 0 else 0.0
    else:
        t = mean / se
        p = float(2 * sps.t.sf(abs(t), df))
    q = float(sps.t.ppf(1 - alpha / 2, df))
    return CorrectedTTest(mean, sd, j, ratio, se, float(t), df, p, mean - q * se, mean + q * se)


# --- verdict -----------------------------------------------------------------------------------
def verdict(ttest: CorrectedTTest, delong: DeLongResult, others: dict[str, DeLongResult] | None = None,
            alpha: float = 0.05) -> dict[str, object]:
    """Plain-language verdict of an arm against ``real``, decided only by the tests given.

    "improves": the corrected t-test over folds x seeds finds a positive mean AUC difference
    (p < alpha, so its CI lies above 0), the paired DeLong test on the fold test sets
    (``delong``, :func:`delong_stratified`) agrees (positive, p < alpha), and no other DeLong test (``others``,
    e.g. the held-out test sets, often too small to be significant themselves) finds a
    significant difference the other way. "harms": the same with every sign reversed.
    Anything else is "no detectable difference".
    """
    others = others or {}

    def agrees(sign: int) -> bool:
        t_ok = ttest.p < alpha and np.sign(ttest.mean) == sign
        d_ok = delong.p < alpha and np.sign(delong.diff) == sign
        no_contra = not any(o.p < alpha and np.sign(o.diff) == -sign for o in others.values())
        return bool(t_ok and d_ok and no_contra)

    word = "improves" if agrees(+1) else "harms" if agrees(-1) else "no detectable difference"
    parts = [f"mean AUC difference over {ttest.n_runs} fold x seed runs {ttest.mean:+.3f} "
             f"(95% CI {ttest.lo:+.3f} to {ttest.hi:+.3f}, corrected t-test p={ttest.p:.3g})",
             f"DeLong on the fold test sets {delong.diff:+.3f} (p={delong.p:.3g})"]
    parts += [f"DeLong on {name} {d.diff:+.3f} (p={d.p:.3g})" for name, d in others.items()]
    return {"verdict": word, "alpha": alpha, "because": "; ".join(parts)}
