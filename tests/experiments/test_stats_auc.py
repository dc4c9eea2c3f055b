"""xraygan.experiments.stats_auc on its own: DeLong covariances of tiny examples worked out by hand
(placement values of DeLong et al. 1988), the paired test's symmetry and CI, and the clustered
(Obuchowski 1997) covariance with a patient holding both classes (the S11 term)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from xraygan.experiments.stats_auc import (
    DeLongResult,
    clustered_auc_cov,
    delong_auc_cov,
    delong_clustered,
    delong_clustered_stratified,
    delong_paired,
)


def test_delong_covariance_of_a_four_case_example_by_hand():
    # positives 0.8, 0.4; negatives 0.6, 0.2
    # V10 (share of negatives below each positive) = 1, 1/2; V01 (share of positives above each negative) = 1/2, 1
    # AUC = 3/4; var = var([1, .5]) / 2 + var([.5, 1]) / 2 = 0.125 / 2 + 0.125 / 2
    y = [1, 1, 0, 0]
    s = np.array([[0.8, 0.4, 0.6, 0.2]])
    aucs, cov = delong_auc_cov(y, s)
    assert aucs.shape == (1,) and cov.shape == (1, 1)
    assert aucs[0] == pytest.approx(0.75) and cov[0, 0] == pytest.approx(0.125)


def test_delong_covariance_counts_ties_as_one_half():
    # positives 0.5, 0.9; negatives 0.5, 0.1: V10 = 1.5/2, 1; V01 = 1.5/2, 1; AUC = 0.875
    y = [1, 1, 0, 0]
    s = [0.5, 0.9, 0.5, 0.1]
    aucs, cov = delong_auc_cov(y, np.array([s]))
    assert aucs[0] == pytest.approx(0.875) == pytest.approx(roc_auc_score(y, s))
    v = np.var([0.75, 1.0], ddof=1)
    assert cov[0, 0] == pytest.approx(v / 2 + v / 2)


def test_delong_covariance_of_two_scorers_is_symmetric_and_matches_sklearn():
    rng = np.random.default_rng(4)
    y = np.r_[np.ones(15, int), np.zeros(20, int)]
    a = y + rng.normal(0, 1, 35)
    b = 2 * y + rng.normal(0, 1, 35)
    aucs, cov = delong_auc_cov(y, np.stack([a, b, a]))
    assert aucs == pytest.approx([roc_auc_score(y, a), roc_auc_score(y, b), roc_auc_score(y, a)], abs=1e-12)
    assert np.allclose(cov, cov.T)
    assert cov[0, 2] == pytest.approx(cov[0, 0]) and cov[2, 2] == pytest.approx(cov[0, 0])  # a scorer with itself
    assert np.all(np.linalg.eigvalsh(cov) > -1e-12)  # a covariance matrix
    with pytest.raises(ValueError, match="two positive and two negative"):
        delong_auc_cov([1, 0, 0, 0], np.array([[0.9, 0.1, 0.2, 0.3]]))


def test_paired_delong_is_antisymmetric_and_its_ci_has_the_normal_width():
    rng = np.random.default_rng(7)
    y = (np.arange(40) % 3 == 0).astype(int)
    a = y * 0.5 + rng.normal(0, 1, 40)
    b = y * 1.5 + rng.normal(0, 1, 40)
    ab, ba = delong_paired(y, a, b), delong_paired(y, b, a)
    assert ab.diff == pytest.approx(roc_auc_score(y, b) - roc_auc_score(y, a))
    assert ba.diff == pytest.approx(-ab.diff) and ba.se == pytest.approx(ab.se) and ba.p == pytest.approx(ab.p)
    q = sps.norm.ppf(0.975)
    assert ab.hi - ab.diff == pytest.approx(q * ab.se) and ab.diff - ab.lo == pytest.approx(q * ab.se)
    wide, narrow = delong_paired(y, a, b, alpha=0.01), delong_paired(y, a, b, alpha=0.2)
    assert narrow.hi - narrow.lo < ab.hi - ab.lo < wide.hi - wide.lo
    d = ab.to_dict()
    assert set(d) == {"auc_a", "auc_b", "diff", "se", "z", "p", "lo", "hi"} and d["z"] == pytest.approx(ab.diff / ab.se)


def test_clustered_covariance_with_a_patient_holding_both_classes_by_hand():
    # patient A: positive 0.9, negative 0.3; patient B: positive 0.6, negative 0.7
    # V10: 0.9 -> 1, 0.6 -> 1/2; V01: 0.3 -> 1, 0.7 -> 1/2; AUC = 3/4; M = N = 2, I10 = I01 = I = 2
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.3, 0.6, 0.7])
    c = np.array(["A", "A", "B", "B"])
    auc = 0.75
    rx = np.array([1.0, 0.5]) - 1 * auc  # V_X(i) - m_i A, patients A, B
    ry = np.array([1.0, 0.5]) - 1 * auc  # V_Y(i) - n_i A
    s10 = 2 / (1 * 2) * np.sum(rx * rx)
    s01 = 2 / (1 * 2) * np.sum(ry * ry)
    s11 = 2 / 1 * np.sum(rx * ry)  # non-zero: each patient has a positive and a negative image
    var = s10 / 2 + s01 / 2 + 2 * s11 / (2 * 2)
    aucs, cov = clustered_auc_cov(y, s[None], c)
    assert aucs[0] == pytest.approx(auc) and cov[0, 0] == pytest.approx(var)
    with pytest.raises(ValueError, match="two patients"):
        clustered_auc_cov(y, s[None], ["A", "A", "A", "B"])  # one patient holds both positives


def test_clustered_delong_identical_scorers_and_two_strata():
    rng = np.random.default_rng(3)
    y = (rng.random(60) < 0.5).astype(int)
    y[:2], y[2:4] = 1, 0
    a, b = y + rng.normal(0, 1, 60), 2 * y + rng.normal(0, 1, 60)
    pats = np.arange(60) // 3
    same = delong_clustered(y, a, a.copy(), pats)
    assert same.diff == 0 and same.se == 0 and same.p == 1.0 and same.lo == same.hi == 0
    # two disjoint strata: mean of the per-stratum differences, variance sum(v_s) / K^2
    h = slice(0, 30), slice(30, 60)
    per = [delong_clustered(y[k], a[k], b[k], pats[k]) for k in h]
    both = delong_clustered_stratified([(y[k], a[k], b[k], pats[k]) for k in h])
    assert isinstance(both, DeLongResult)
    assert both.diff == pytest.approx((per[0].diff + per[1].diff) / 2)
    assert both.auc_a == pytest.approx((per[0].auc_a + per[1].auc_a) / 2)
    assert both.se == pytest.approx(np.sqrt(per[0].se**2 + per[1].se**2) / 2)
    assert both.p == pytest.approx(2 * sps.norm.sf(abs(both.diff / both.se)))
