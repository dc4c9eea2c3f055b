"""Statistics of the experiment against independently computed reference values."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from xraygan.experiments import stats


def _placements(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """O(m n) structural components from the Mann-Whitney kernel (DeLong 1988, eq. 2)."""
    x, yy = s[y == 1], s[y == 0]
    psi = (x[:, None] > yy[None, :]) + 0.5 * (x[:, None] == yy[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def _delong_reference(y, a, b):
    v10a, v01a = _placements(y, a)
    v10b, v01b = _placements(y, b)
    m, n = len(v10a), len(v01a)
    s10 = np.cov(np.stack([v10a, v10b]))
    s01 = np.cov(np.stack([v01a, v01b]))
    cov = s10 / m + s01 / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return v10a.mean(), v10b.mean(), var


def _data(seed=0, n=60, ties=False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    y[:2], y[2:4] = 1, 0
    a = y * 0.8 + rng.normal(0, 0.7, n)
    b = y * 1.3 + rng.normal(0, 0.7, n)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    return y, a, b


@pytest.mark.parametrize("ties", [False, True])
def test_auc_matches_sklearn(ties):
    y, a, _ = _data(1, ties=ties)
    assert stats.auc_score(y, a) == pytest.approx(roc_auc_score(y, a), abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_delong_matches_placement_definition(ties):
    y, a, b = _data(2, ties=ties)
    auc_a, auc_b, var = _delong_reference(y, a, b)
    r = stats.delong_paired(y, a, b)
    assert r.auc_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert r.auc_b == pytest.approx(auc_b, abs=1e-12)
    assert r.se**2 == pytest.approx(var, rel=1e-9)
    z = (auc_b - auc_a) / np.sqrt(var)
    assert r.p == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-9)
    assert r.lo < r.diff < r.hi


def test_delong_identical_scores_is_no_difference():
    y, a, _ = _data(3)
    r = stats.delong_paired(y, a, a.copy())
    assert r.diff == 0 and r.p == 1.0


def test_delong_detects_a_large_difference():
    y, _, _ = _data(4, n=200)
    rng = np.random.default_rng(0)
    weak, strong = y * 0.2 + rng.normal(0, 1, 200), y * 3.0 + rng.normal(0, 1, 200)
    assert stats.delong_paired(y, weak, strong).p < 1e-4


def test_binary_metrics_match_sklearn():
    y, a, _ = _data(5)
    score = 1 / (1 + np.exp(-a))
    m = stats.binary_metrics(y, score)
    pred = (score >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(np.mean(pred == y))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["sensitivity"] == pytest.approx(np.mean(pred[y == 1] == 1))
    assert m["specificity"] == pytest.approx(np.mean(pred[y == 0] == 0))


def test_bootstrap_resamples_patients_not_images():
    # 10 patients with 1 image each vs the same scores duplicated 5x per patient: a patient-level
    # bootstrap gives the same distribution; an image-level one would be ~sqrt(5) narrower.
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 5)
    s = y * 0.5 + rng.normal(0, 0.6, 10)
    pats = np.array([f"p{i}" for i in range(10)])
    one = stats.bootstrap_metrics(y, s, pats, n_boot=400, seed=1)
    rep = stats.bootstrap_metrics(np.repeat(y, 5), np.repeat(s, 5), np.repeat(pats, 5), n_boot=400, seed=1)
    for k in ("auc", "accuracy"):
        assert one[k]["value"] == pytest.approx(rep[k]["value"])
        assert rep[k]["hi"] - rep[k]["lo"] == pytest.approx(one[k]["hi"] - one[k]["lo"], rel=0.35)
        assert one[k]["lo"] <= one[k]["value"] <= one[k]["hi"]


def test_bootstrap_ci_of_a_known_proportion():
    # accuracy of 200 independent patients, true p=0.7: the percentile CI must be close to the
    # normal-approximation (Wald) interval p +- 1.96 sqrt(p(1-p)/n).
    rng = np.random.default_rng(7)
    y = np.ones(200, int)
    correct = rng.random(200) < 0.7
    s = np.where(correct, 0.9, 0.1)
    ci = stats.bootstrap_metrics(y, s, np.arange(200).astype(str), n_boot=2000, seed=3)["accuracy"]
    p = correct.mean()
    half = 1.96 * np.sqrt(p * (1 - p) / 200)
    assert ci["lo"] == pytest.approx(p - half, abs=0.015)
    assert ci["hi"] == pytest.approx(p + half, abs=0.015)


def test_corrected_ttest_by_hand():
    d = [0.02, 0.05, -0.01, 0.04, 0.03, 0.01]
    r = stats.corrected_ttest(d, n_train=80, n_test=20)
    mean = sum(d) / 6
    var = sum((x - mean) ** 2 for x in d) / 5
    se = ((1 / 6 + 20 / 80) * var) ** 0.5
    assert r.mean == pytest.approx(mean)
    assert r.se == pytest.approx(se)
    assert r.t == pytest.approx(mean / se)
    assert r.df == 5
    assert r.p == pytest.approx(2 * sps.t.sf(mean / se, 5))
    assert r.hi - r.mean == pytest.approx(sps.t.ppf(0.975, 5) * se)
    naive = sps.ttest_1samp(d, 0.0)
    assert r.p > naive.pvalue  # the correction widens the interval


def test_corrected_ttest_needs_two_runs():
    with pytest.raises(ValueError):
        stats.corrected_ttest([0.1], 10, 2)


def test_stratified_delong_one_stratum_equals_paired():
    y, a, b = _data(8)
    one, paired = stats.delong_stratified([(y, a, b)]), stats.delong_paired(y, a, b)
    assert one.diff == pytest.approx(paired.diff) and one.se == pytest.approx(paired.se) and one.p == pytest.approx(paired.p)


def test_stratified_delong_combines_disjoint_strata_by_hand():
    strata = [_data(s, n=50) for s in (9, 10, 11)]
    ref = [_delong_reference(*st) for st in strata]
    diff = np.mean([r[1] - r[0] for r in ref])
    se = np.sqrt(sum(r[2] for r in ref)) / 3
    out = stats.delong_stratified(strata)
    assert out.diff == pytest.approx(diff) and out.se == pytest.approx(se)
    assert out.p == pytest.approx(2 * sps.norm.sf(abs(diff / se)))
    # a per-fold calibration shift of one arm does not change it (pooling scores would)
    shifted = [(y, a, b + 10 * i) for i, (y, a, b) in enumerate(strata)]
    assert stats.delong_stratified(shifted).diff == pytest.approx(out.diff)


def test_stratified_bootstrap_is_mean_of_strata():
    y, a, _ = _data(12, n=80)
    strata = np.repeat([0, 1], 40)
    shifted = a + 5 * strata  # a calibration shift between the two 'fold models'
    pats = np.arange(80).astype(str)
    res = stats.bootstrap_metrics(y, shifted, pats, n_boot=200, strata=strata)
    want = np.mean([roc_auc_score(y[strata == s], shifted[strata == s]) for s in (0, 1)])
    assert res["auc"]["value"] == pytest.approx(want)
    assert res["auc"]["lo"] < want < res["auc"]["hi"]
