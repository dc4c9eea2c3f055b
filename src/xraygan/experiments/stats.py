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

The positive class is label 1 throughout.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
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
    ratio = float(n_test) / float(n_train)
    mean, sd, se, t, df, p = _nadeau_bengio_t(d, ratio)
    q = float(sps.t.ppf(1 - alpha / 2, df))
    return CorrectedTTest(mean, sd, j, ratio, se, t, df, p, mean - q * se, mean + q * se)


def _nadeau_bengio_t(x: np.ndarray, ratio: float) -> tuple[float, float, float, float, int, float]:
    """Mean, sd, corrected SE sqrt((1/J + n_test/n_train) sd^2), t, df = J - 1 and two-sided p of J differences."""
    j = len(x)
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    se = float(np.sqrt((1.0 / j + ratio) * sd**2))
    df = j - 1
    if se == 0.0:
        t = 0.0 if mean == 0 else float(np.sign(mean) * np.inf)
        p = 1.0 if mean == 0 else 0.0
    else:
        t = mean / se
        p = float(2 * sps.t.sf(abs(t), df))
    return mean, sd, se, float(t), df, p


# =================================================================================================
# Calibrated tests (issue 13): repeated k-fold corrected t-test on seed-averaged differences,
# patient-clustered DeLong, Holm, TOST equivalence, minimum detectable effect, four-word verdict.
# =================================================================================================
VERDICT_WORDS = ("improves", "harms", "equivalent", "inconclusive")


@dataclass
class RepeatedCVTTest:
    """Corrected repeated k-fold t-test of the mean paired difference (Bouckaert & Frank 2004)."""

    mean: float
    sd: float
    n_repeats: int
    n_folds: int
    n_seeds: int
    n_train: float
    n_test: float
    test_train_ratio: float
    se: float
    t: float
    df: int
    p: float
    lo: float  # (1 - alpha) CI
    hi: float
    lo90: float  # (1 - 2 alpha) CI, the one TOST reads
    hi90: float
    mde: float  # (z_{1-alpha/2} + z_{0.8}) x se

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def minimum_detectable_effect(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true difference a two-sided level-``alpha`` test detects with probability ``power``.

    The normal-approximation formula ``(z_{1-alpha/2} + z_{power}) x SE`` (e.g. Cohen 1988, ch. 2;
    Bloom 1995, Evaluation Review 19:547): with alpha 0.05 and power 0.8, 2.80 x SE.
    """
    return float((sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)) * se)


def corrected_repeated_cv_ttest(diffs, n_train: float, n_test: float, alpha: float = 0.05) -> RepeatedCVTTest:
    """Corrected repeated k-fold cross-validation t-test of paired differences (arm b - arm a).

    ``diffs`` has shape (R, K) -- one difference per repetition r (a fresh patient-grouped
    partition) and fold k -- or (R, K, S) with S classifier seeds per fold, which are averaged
    first: seeds trained on one fold share its training and test data, so they are not
    independent splits and must not add degrees of freedom (issue 13, finding 1). With the
    R x K fold means ``x_rk``, mean ``m`` and sample variance ``s^2`` (ddof 1),

        t = m / sqrt((1/(K R) + n_test/n_train) * s^2),   df = K R - 1,

    the corrected resampled t statistic of Nadeau & Bengio (2003, Machine Learning 52:239,
    eq. for the "corrected resampled t-test") in the repeated k-fold form of Bouckaert & Frank
    (2004, PAKDD, LNCS 3056:3). The term n_test/n_train stands in for the correlation between
    folds caused by their overlapping training sets. The experiment passes the patients per fold,
    averaged over folds, with ``n_train`` counted *before* ``--real-fraction`` subsampling (the
    fold partition's training patients; :func:`xraygan.experiments.summary.n_train_n_test`).
    Non-finite entries are ignored (a fold whose seeds all failed drops out; the remaining count
    sets df).

    Why not the subsampled count: measured (``benchmarks/calibration.py``), the test is calibrated
    where training-set variation dominates and conservative where test-set noise dominates, but
    with the subsampled count at ``--real-fraction`` 0.1 its type-I error fell to about 0.001 at
    alpha 0.05 (power lost for nothing): n_test/n_train then becomes large and overstates the
    correlation it stands in for. With the partition's count it stays near alpha once seeds are
    averaged within a fold.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim == 1:
        d = d[None, :]
    n_seeds = 1
    if d.ndim == 3:
        n_seeds = d.shape[2]
        with warnings.catch_warnings():  # an all-NaN fold (every seed failed) stays NaN, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            d = np.nanmean(d, axis=2)
    if d.ndim != 2:
        raise ValueError("diffs must have shape (repeats, folds) or (repeats, folds, seeds)")
    n_repeats, n_folds = d.shape
    x = d[np.isfinite(d)]
    j = len(x)
    if j < 2:
        raise ValueError("the corrected t-test needs at least two fold differences (repeats x folds >= 2)")
    if not (n_train > 0 and n_test > 0):
        raise ValueError("n_train and n_test must be positive")
    ratio = float(n_test) / float(n_train)
    mean, sd, se, t, df, p = _nadeau_bengio_t(x, ratio)
    q, q90 = float(sps.t.ppf(1 - alpha / 2, df)), float(sps.t.ppf(1 - alpha, df))
    return RepeatedCVTTest(mean, sd, n_repeats, n_folds, n_seeds, float(n_train), float(n_test), ratio, se, t, df, p,
                           mean - q * se, mean + q * se, mean - q90 * se, mean + q90 * se,
                           minimum_detectable_effect(se, alpha))


# --- patient-clustered DeLong (Obuchowski 1997) ---------------------------------------------------
def _clustered_components(y: np.ndarray, scores: np.ndarray, clusters: np.ndarray):
    """Per-cluster sums of the DeLong placement values: Obuchowski's V_X(i), V_Y(i), m_i, n_i."""
    y = np.asarray(y).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    if m < 1 or n < 1:
        raise ValueError("a clustered AUC needs at least one positive and one negative image")
    tx, ty = _midranks(pos), _midranks(neg)
    tz = _midranks(np.concatenate([pos, neg], axis=1))
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n  # per positive image: fraction of all negatives below it (ties 1/2)
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per negative image: fraction of all positives above it
    _, cid = np.unique(np.asarray(clusters), return_inverse=True)
    n_cl = int(cid.max()) + 1
    vx = np.zeros((len(aucs), n_cl))
    vy = np.zeros((len(aucs), n_cl))
    for k in range(len(aucs)):
        vx[k] = np.bincount(cid[y], weights=v10[k], minlength=n_cl)
        vy[k] = np.bincount(cid[~y], weights=v01[k], minlength=n_cl)
    mi = np.bincount(cid[y], minlength=n_cl).astype(np.float64)
    ni = np.bincount(cid[~y], minlength=n_cl).astype(np.float64)
    return aucs, vx, vy, mi, ni


def clustered_auc_cov(y: Sequence[int], scores: np.ndarray, clusters: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their covariance matrix for ``scores`` (k, n) when images are clustered in patients.

    Obuchowski (1997, Biometrics 53:567), the nonparametric clustered-data extension of DeLong et
    al. (1988). With I patients, M positive and N negative images, image placements V10 (positive
    image: fraction of negatives below it) and V01 (negative image: fraction of positives above
    it) summed per patient i into V_X(i), V_Y(i), and m_i, n_i the patient's positive and negative
    image counts, for scorers a, b (A the AUCs):

        S10 = I10/((I10-1) M) sum_i (V_X^a(i) - m_i A_a)(V_X^b(i) - m_i A_b)
        S01 = I01/((I01-1) N) sum_i (V_Y^a(i) - n_i A_a)(V_Y^b(i) - n_i A_b)
        S11 = I/(I-1)         sum_i (V_X^a(i) - m_i A_a)(V_Y^b(i) - n_i A_b)
        cov(A_a, A_b) = S10/M + S01/N + (S11^{ab} + S11^{ba})/(M N)

    where I10 (I01) counts patients with at least one positive (negative) image. With one image per
    patient S11 = 0 and this is exactly DeLong's covariance (:func:`delong_auc_cov`).
    """
    y = np.asarray(y).astype(bool)
    aucs, vx, vy, mi, ni = _clustered_components(y, scores, np.asarray(clusters))
    M, N = mi.sum(), ni.sum()
    i10, i01, i_all = int((mi > 0).sum()), int((ni > 0).sum()), len(mi)
    if i10 < 2 or i01 < 2:
        raise ValueError("the clustered DeLong test needs at least two patients with positive and two with negative images")
    rx = vx - mi[None, :] * aucs[:, None]  # residuals per scorer x patient
    ry = vy - ni[None, :] * aucs[:, None]
    s10 = i10 / ((i10 - 1) * M) * (rx @ rx.T)
    s01 = i01 / ((i01 - 1) * N) * (ry @ ry.T)
    s11 = i_all / (i_all - 1) * (rx @ ry.T)
    cov = s10 / M + s01 / N + (s11 + s11.T) / (M * N)
    return aucs, cov


def delong_clustered(y: Sequence[int], score_a: Sequence[float], score_b: Sequence[float], clusters: Sequence,
                     alpha: float = 0.05) -> DeLongResult:
    """Paired patient-clustered DeLong test of AUC(b) - AUC(a) (Obuchowski 1997), normal CI.

    Images of one patient are correlated; the ordinary DeLong test treats them as independent
    and is too liberal (issue 13, finding 3). This is the analytic alternative to a paired
    patient bootstrap of delta-AUC; it is what xraygan uses.
    """
    aucs, cov = clustered_auc_cov(y, np.stack([np.asarray(score_a, float), np.asarray(score_b, float)]), clusters)
    return _diff_result(float(aucs[0]), float(aucs[1]), float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]), alpha)


def delong_clustered_stratified(strata, alpha: float = 0.05) -> DeLongResult:
    """Clustered DeLong over disjoint test sets (fold test sets, each with its own models).

    ``strata``: (labels, scores a, scores b, patient ids) per fold. As in
    :func:`delong_stratified`, the difference is the mean of the per-fold differences and its
    variance sum(v_s)/K^2 (the folds share no patient, so their estimates are independent given
    the models).
    """
    diffs, variances, auc_a, auc_b = [], [], [], []
    for y, a, b, c in strata:
        aucs, cov = clustered_auc_cov(y, np.stack([np.asarray(a, float), np.asarray(b, float)]), c)
        auc_a.append(aucs[0])
        auc_b.append(aucs[1])
        diffs.append(aucs[1] - aucs[0])
        variances.append(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    k = len(diffs)
    res = _diff_result(float(np.mean(auc_a)), float(np.mean(auc_b)), float(np.sum(variances)) / k**2, alpha)
    return res


def _diff_result(auc_a: float, auc_b: float, var: float, alpha: float) -> DeLongResult:
    diff = auc_b - auc_a
    se = float(np.sqrt(max(var, 0.0)))
    if se == 0.0:
        z, p = 0.0, 1.0
    else:
        z = diff / se
        p = float(2 * sps.norm.sf(abs(z)))
    q = float(sps.norm.ppf(1 - alpha / 2))
    return DeLongResult(auc_a, auc_b, diff, se, float(z), p, diff - q * se, diff + q * se)


# --- multiplicity and equivalence ------------------------------------------------------------------
def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm (1979, Scand. J. Statist. 6:65) step-down adjusted p-values, in the input order.

    Sorted ascending p_(1) <= ... <= p_(m): adjusted p_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)).
    Rejecting where adjusted p < alpha controls the family-wise error rate at alpha under any
    dependence. NaN p-values are left NaN and do not count towards m.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


@dataclass
class TOSTResult:
    """Two one-sided tests of |difference| < margin (Schuirmann 1987)."""

    margin: float
    p_lower: float  # H0: diff <= -margin
    p_upper: float  # H0: diff >= +margin
    p: float  # max of the two
    lo: float  # (1 - 2 alpha) CI
    hi: float
    equivalent: bool

    def to_dict(self) -> dict:
        return asdict(self)


def tost(mean: float, se: float, margin: float, df: float | None = None, alpha: float = 0.05) -> TOSTResult:
    """Equivalence by two one-sided tests (Schuirmann 1987, J. Pharmacokin. Biopharm. 15:657).

    p_lower = P(T >= (mean + margin)/se), p_upper = P(T <= (mean - margin)/se) with T Student t on
    ``df`` degrees of freedom (normal when ``df`` is None); equivalent when max(p) < alpha, which is
    the same as the (1 - 2 alpha) CI (90% at alpha 0.05) lying strictly inside (-margin, +margin).
    """
    if margin <= 0:
        raise ValueError("the equivalence margin must be positive")
    dist = sps.norm if df is None else sps.t(df)
    q = float(dist.ppf(1 - alpha))
    if se == 0.0:
        inside = abs(mean) < margin
        p_l = 0.0 if mean > -margin else 1.0
        p_u = 0.0 if mean < margin else 1.0
        return TOSTResult(margin, p_l, p_u, max(p_l, p_u), mean, mean, inside)
    p_l = float(dist.sf((mean + margin) / se))
    p_u = float(dist.cdf((mean - margin) / se))
    p = max(p_l, p_u)
    return TOSTResult(margin, p_l, p_u, p, mean - q * se, mean + q * se, bool(p < alpha))


def decide(mean: float, p_adjusted: float, lo90: float, hi90: float, margin: float = 0.01, alpha: float = 0.05,
           held_out: dict[str, DeLongResult] | None = None, oracle_detected: bool | None = None) -> tuple[str, str]:
    """The verdict word of issue 13 and why: (word, reason).

    In order: an oracle control that ran and was not detected -> "inconclusive" (the experiment
    could not detect a gain of that size); Holm-adjusted p < alpha -> "improves" or "harms" by
    the sign of ``mean``, unless a held-out patient-level test is significant the other way
    ("inconclusive"); the (1 - 2 alpha) CI [lo90, hi90] inside (-margin, +margin) -> "equivalent"
    (TOST), unless a held-out test finds a significant difference (either sign: "inconclusive");
    otherwise "inconclusive". ``oracle_detected`` None means no oracle ran (no gating).
    """
    held_out = held_out or {}
    if oracle_detected is False:
        return "inconclusive", "the oracle control was not detected: this experiment could not detect a gain of that size"
    if np.isfinite(p_adjusted) and p_adjusted < alpha and mean != 0:
        sign = 1 if mean > 0 else -1
        against = [k for k, d in held_out.items() if d.p < alpha and np.sign(d.diff) == -sign]
        if against:
            return "inconclusive", f"significant (Holm-adjusted p={p_adjusted:.3g}) but the held-out test on {', '.join(against)} is significant the other way"
        return ("improves" if sign > 0 else "harms"), f"Holm-adjusted p={p_adjusted:.3g} < {alpha:g}"
    if -margin < lo90 and hi90 < margin:
        differ = [k for k, d in held_out.items() if d.p < alpha]
        if differ:
            return "inconclusive", f"{100 * (1 - 2 * alpha):g}% CI within +-{margin:g} but the held-out test on {', '.join(differ)} finds a difference"
        return "equivalent", f"{100 * (1 - 2 * alpha):g}% CI {lo90:+.3f} to {hi90:+.3f} lies within +-{margin:g} (TOST)"
    return "inconclusive", (f"not significant (Holm-adjusted p={p_adjusted:.3g}) and the {100 * (1 - 2 * alpha):g}% CI "
                            f"{lo90:+.3f} to {hi90:+.3f} is not within +-{margin:g}")
