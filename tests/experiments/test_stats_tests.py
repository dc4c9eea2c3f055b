"""xraygan.experiments.stats_tests on its own: the corrected t-tests against scipy's one-sample t-test
(the correction vanishes as n_test/n_train -> 0), their degenerate and invalid inputs, Holm's
step-down with ties, TOST's duality with the (1 - 2 alpha) CI, the MDE's power and the verdict rules'
remaining branches."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from xraygan.experiments.stats_auc import DeLongResult
from xraygan.experiments.stats_tests import (
    corrected_repeated_cv_ttest,
    corrected_ttest,
    decide,
    holm,
    minimum_detectable_effect,
    tost,
)

D = [0.012, -0.004, 0.02, 0.007, 0.015, 0.001]


def test_corrected_ttest_without_correction_is_the_one_sample_t_test():
    ref = sps.ttest_1samp(D, 0.0)
    r = corrected_ttest(D, n_train=1e15, n_test=1)
    assert r.t == pytest.approx(ref.statistic, rel=1e-9) and r.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.df == 5 and r.n_runs == 6 and r.mean == pytest.approx(np.mean(D))
    # the correction widens the SE by sqrt((1/J + r) / (1/J))
    c = corrected_ttest(D, n_train=4, n_test=1)
    assert c.se == pytest.approx(r.se * np.sqrt((1 / 6 + 0.25) * 6)) and c.p > r.p
    assert c.hi - c.mean == pytest.approx(sps.t.ppf(0.975, 5) * c.se)


def test_corrected_ttest_ignores_nan_and_handles_zero_variance():
    assert corrected_ttest(D + [float("nan")], 4, 1).p == pytest.approx(corrected_ttest(D, 4, 1).p)
    const = corrected_ttest([0.01, 0.01, 0.01], 4, 1)
    assert const.se == 0 and const.p == 0.0 and const.t == np.inf
    zero = corrected_ttest([0.0, 0.0], 4, 1)
    assert zero.p == 1.0 and zero.t == 0.0
    with pytest.raises(ValueError, match="at least two"):
        corrected_ttest([0.1, float("nan")], 4, 1)


def test_repeated_cv_ttest_shapes_and_invalid_inputs():
    flat = corrected_repeated_cv_ttest(D, n_train=1e15, n_test=1)  # one repeat of 6 folds
    assert flat.n_repeats == 1 and flat.n_folds == 6 and flat.n_seeds == 1
    assert flat.p == pytest.approx(sps.ttest_1samp(D, 0.0).pvalue, rel=1e-9)
    # a fold whose seeds all failed drops out and costs a degree of freedom
    d = np.array(D, float).reshape(2, 3)[..., None].repeat(2, axis=2)
    d[0, 1] = np.nan
    r = corrected_repeated_cv_ttest(d, n_train=8, n_test=2)
    kept = np.delete(np.array(D), 1)
    assert r.df == 4 and r.mean == pytest.approx(kept.mean()) and r.sd == pytest.approx(kept.std(ddof=1))
    with pytest.raises(ValueError, match="shape"):
        corrected_repeated_cv_ttest(np.zeros((2, 2, 2, 2)), 8, 2)
    with pytest.raises(ValueError, match="positive"):
        corrected_repeated_cv_ttest(D, n_train=0, n_test=2)


def _holm_by_definition(p):
    """Reject-set definition of Holm: p_(i) adjusted = max_{j <= i} min(1, (m - j + 1) p_(j)), by a loop."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


def test_holm_matches_its_definition_with_ties_and_nans():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = list(np.round(rng.random(7) ** 3, 2))  # rounding makes ties
        assert holm(p) == pytest.approx(_holm_by_definition(p))
    assert np.all(np.isnan(holm([float("nan"), float("nan")])))
    assert holm([]).shape == (0,)
    assert holm([0.01, 0.01]) == pytest.approx([0.02, 0.02])
    # a NaN does not count towards m
    assert holm([0.01, float("nan"), 0.02])[[0, 2]] == pytest.approx([0.02, 0.02])


def test_tost_is_equivalent_exactly_when_the_90_percent_ci_is_inside_the_margin():
    for mean in np.linspace(-0.02, 0.02, 17):
        for se in (0.001, 0.004, 0.008):
            r = tost(float(mean), se, margin=0.01, df=12)
            assert r.equivalent == (-0.01 < r.lo and r.hi < 0.01)
            assert r.hi - mean == pytest.approx(sps.t.ppf(0.95, 12) * se)  # the 90% CI at alpha 0.05
            assert r.p == max(r.p_lower, r.p_upper)
    zero = tost(0.005, 0.0, margin=0.01)
    assert zero.equivalent and zero.p == 0.0 and zero.lo == zero.hi == 0.005
    assert not tost(0.02, 0.0, margin=0.01).equivalent and tost(0.02, 0.0, margin=0.01).p_upper == 1.0
    with pytest.raises(ValueError, match="margin"):
        tost(0.0, 0.01, margin=0.0)


def test_minimum_detectable_effect_has_the_stated_power():
    for alpha, power in ((0.05, 0.8), (0.01, 0.9)):
        mde = minimum_detectable_effect(0.02, alpha, power)
        # a true difference of MDE is detected (|z| > z_{1-alpha/2}) with probability `power`
        z = sps.norm.ppf(1 - alpha / 2)
        got = sps.norm.sf(z - mde / 0.02) + sps.norm.cdf(-z - mde / 0.02)
        assert got == pytest.approx(power, abs=1e-3)


def test_decide_remaining_branches():
    against = {"external": DeLongResult(0.8, 0.83, 0.03, 0.005, 6.0, 1e-9, 0.02, 0.04)}
    # a NaN adjusted p is never significant; with a wide CI the verdict is inconclusive and says why
    word, why = decide(0.02, float("nan"), -0.01, 0.05)
    assert word == "inconclusive" and "not within" in why
    # significant but a zero mean cannot say improves or harms
    assert decide(0.0, 0.001, -0.001, 0.001, margin=0.01)[0] == "equivalent"
    # a significant held-out difference of the same sign leaves "improves"; against "harms" it makes it inconclusive
    assert decide(0.03, 0.01, 0.01, 0.05, held_out=against)[0] == "improves"
    assert decide(-0.03, 0.01, -0.05, -0.01, held_out=against)[0] == "inconclusive"
    word, why = decide(0.03, 0.01, 0.01, 0.05, alpha=0.005)
    assert word == "inconclusive" and "99% CI" in why  # (1 - 2 alpha) CI named with alpha
