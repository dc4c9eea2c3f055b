"""AUC comparisons of the experiment: the paired DeLong test (DeLong, DeLong & Clarke-Pearson 1988,
Biometrics 44:837; midrank algorithm of Sun & Xu 2014) and its patient-clustered form (Obuchowski
1997, Biometrics 53:567). Importable from :mod:`xraygan.experiments.stats` as before the split."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps


# --- DeLong ------------------------------------------------------------------------------------
def _midranks(x: np.ndarray) -> np.ndarray:
    """Midranks (1-based, ties averaged) of each row of ``x`` (k, n); Sun & Xu's T arrays."""
    return np.stack([sps.rankdata(row) for row in x]) if x.size else x.astype(np.float64)


def _placements(y: Sequence[int], scores: np.ndarray, least: int, what: str):
    """Labels as bool, AUCs and the placement values of Sun & Xu (2014), Algorithm 1: with m
    positives X and n negatives Y, midranks over X, over Y and over both give V10 (per positive:
    fraction of negatives below it, ties 1/2) and V01 (per negative: fraction of positives above it)
    without the O(mn) pairwise comparison."""
    y = np.asarray(y).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    if m < least or n < least:
        raise ValueError(what)
    tx, ty = _midranks(pos), _midranks(neg)
    tz = _midranks(np.concatenate([pos, neg], axis=1))
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    return y, aucs, (tz[:, :m] - tx) / n, 1.0 - (tz[:, m:] - ty) / m


def delong_auc_cov(y: Sequence[int], scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for ``scores`` (k, n) on the same labels ``y``:
    S = cov(V10)/m + cov(V01)/n with the placement values of :func:`_placements`."""
    y, aucs, v10, v01 = _placements(y, scores, 2, "DeLong needs at least two positive and two negative cases")
    m, n = v10.shape[1], v01.shape[1]
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


# --- patient-clustered DeLong (Obuchowski 1997) ---------------------------------------------------
def _clustered_components(y: np.ndarray, scores: np.ndarray, clusters: np.ndarray):
    """Per-cluster sums of the DeLong placement values: Obuchowski's V_X(i), V_Y(i), m_i, n_i."""
    y, aucs, v10, v01 = _placements(y, scores, 1, "a clustered AUC needs at least one positive and one negative image")
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
    return diff_result(float(aucs[0]), float(aucs[1]), float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]), alpha)


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
    res = diff_result(float(np.mean(auc_a)), float(np.mean(auc_b)), float(np.sum(variances)) / k**2, alpha)
    return res


def diff_result(auc_a: float, auc_b: float, var: float, alpha: float) -> DeLongResult:
    """The z test and (1 - alpha) CI of ``auc_b - auc_a`` with variance ``var`` of that difference."""
    diff = auc_b - auc_a
    se = float(np.sqrt(max(var, 0.0)))
    if se == 0.0:
        z, p = 0.0, 1.0
    else:
        z = diff / se
        p = float(2 * sps.norm.sf(abs(z)))
    q = float(sps.norm.ppf(1 - alpha / 2))
    return DeLongResult(auc_a, auc_b, diff, se, float(z), p, diff - q * se, diff + q * se)
