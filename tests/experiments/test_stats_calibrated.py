"""Issue 13's calibrated statistics against hand-computed values, and a small null simulation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from xraygan.experiments import stats


# --- corrected repeated k-fold t-test -------------------------------------------------------------
def test_repeated_cv_ttest_by_hand():
    # 2 repeats x 2 folds; mean 0.025, s^2 = (0.015^2 + 0.005^2 + 0.005^2 + 0.015^2) / 3 = 5e-4 / 3
    r = stats.corrected_repeated_cv_ttest([[0.01, 0.03], [0.02, 0.04]], n_train=90, n_test=10)
    s2 = 5e-4 / 3
    se = np.sqrt((1 / 4 + 10 / 90) * s2)  # Bouckaert & Frank: (1/(k r) + n2/n1) s^2
    assert r.mean == pytest.approx(0.025) and r.sd**2 == pytest.approx(s2)
    assert r.se == pytest.approx(se) and r.df == 3 and r.t == pytest.approx(0.025 / se)
    assert r.p == pytest.approx(2 * sps.t.sf(0.025 / se, 3))
    assert r.hi - r.mean == pytest.approx(sps.t.ppf(0.975, 3) * se)
    assert r.hi90 - r.mean == pytest.approx(sps.t.ppf(0.95, 3) * se)
    assert r.mde == pytest.approx((1.959964 + 0.841621) * se, rel=1e-5)


def test_repeated_cv_ttest_averages_seeds_before_testing():
    rng = np.random.default_rng(0)
    d = rng.normal(0.01, 0.02, (2, 3, 4))  # repeats x folds x seeds
    r = stats.corrected_repeated_cv_ttest(d, n_train=50, n_test=25)
    x = d.mean(axis=2).ravel()
    assert r.n_seeds == 4 and r.mean == pytest.approx(d.mean()) and r.sd == pytest.approx(x.std(ddof=1))
    # variance components by hand: seed variance pooled within folds (df 6 x 3), the rest corrected
    v_e = ((d - d.mean(axis=2, keepdims=True)) ** 2).sum() / (6 * 3)
    b = x.var(ddof=1) - v_e / 4
    assert b > 0  # this draw has a between-fold part: the Satterthwaite df apply
    var = x.var(ddof=1) / 6 + 0.5 * b
    df = var**2 / (((1 / 6 + 0.5) * x.var(ddof=1)) ** 2 / 5 + (0.5 * v_e / 4) ** 2 / 18)
    assert r.seed_sd == pytest.approx(np.sqrt(v_e)) and r.se == pytest.approx(np.sqrt(var))
    assert r.df == pytest.approx(min(5, max(2.5, df))) and r.df < 5
    assert r.p == pytest.approx(2 * sps.t.sf(abs(d.mean()) / np.sqrt(var), r.df))
    # seed noise alone (fold means closer than their seeds explain): no correction, df = J - 1
    quiet = d - d.mean(axis=2, keepdims=True) + d.mean() + 0.1 * (d.mean(axis=2, keepdims=True) - d.mean())
    q = stats.corrected_repeated_cv_ttest(quiet, n_train=50, n_test=25)
    assert q.df == 5 and q.se == pytest.approx(np.sqrt(quiet.mean(axis=2).var(ddof=1) / 6))
    # seeds that agree within each fold carry no seed noise: the plain formula on the fold means
    same = np.repeat(d[:, :, :1], 3, axis=2)
    plain = stats.corrected_repeated_cv_ttest(same[:, :, 0], n_train=50, n_test=25)
    both = stats.corrected_repeated_cv_ttest(same, n_train=50, n_test=25)
    assert both.se == pytest.approx(plain.se) and both.p == pytest.approx(plain.p) and plain.seed_sd is None
    # a fold whose seeds all failed drops out; one failed seed leaves the fold in
    holes = d.copy()
    holes[0, 0, :] = np.nan
    holes[1, 2, 1] = np.nan
    h = stats.corrected_repeated_cv_ttest(holes, n_train=50, n_test=25)
    same_units = stats.corrected_repeated_cv_ttest(holes.reshape(6, 4)[1:][None], n_train=50, n_test=25)
    assert np.isfinite(h.p) and 2 <= h.df <= 4 and (h.se, h.df, h.p) == pytest.approx((same_units.se, same_units.df, same_units.p))
    with pytest.raises(ValueError):
        stats.corrected_repeated_cv_ttest([[0.1]], n_train=10, n_test=5)


def test_repeated_cv_ttest_calibrated_when_seed_noise_dominates():
    """Null differences that are pure seed noise (the arms differ only in their seeds): applying the
    training-set correction to all of the fold variance makes the test conservative; the seed part is
    not inflated, so the rate comes back towards alpha."""
    rng = np.random.default_rng(5)
    n_sims, rej, rej_all = 1500, 0, 0
    for _ in range(n_sims):
        d = rng.normal(0, 0.02, (2, 3, 3))
        rej += stats.corrected_repeated_cv_ttest(d, n_train=100, n_test=50).p < 0.05
        rej_all += stats.corrected_repeated_cv_ttest(d.mean(axis=2), n_train=100, n_test=50).p < 0.05
    mcse = np.sqrt(0.05 * 0.95 / n_sims)
    assert rej_all / n_sims < 0.05 - 3 * mcse  # the old factor on everything: far below alpha
    assert 0.05 - 3 * mcse < rej / n_sims <= 0.05 + 3 * mcse, rej / n_sims


def test_repeated_cv_ttest_type_one_error_within_bounds():
    """Null differences with a fold-shared component (the correlation the correction is for)."""
    rng = np.random.default_rng(13)
    k, n_sims = 5, 400
    n_test, n_train = 1.0, 4.0
    rej_new = rej_naive = 0
    for _ in range(n_sims):
        # exchangeable folds with correlation rho = n_test/(n_test+n_train) = 0.2 (Nadeau & Bengio's model)
        common = rng.normal(0, np.sqrt(0.2))
        folds = common + rng.normal(0, np.sqrt(0.8), k)
        seeds = folds[:, None] + rng.normal(0, 0.3, (k, 3))  # seeds strongly correlated within a fold
        rej_new += stats.corrected_repeated_cv_ttest(seeds[None], n_train=n_train, n_test=n_test).p < 0.05
        rej_naive += stats.corrected_ttest(seeds.ravel(), n_train=n_train, n_test=n_test).p < 0.05
    rate = rej_new / n_sims
    mcse = np.sqrt(0.05 * 0.95 / n_sims)
    assert abs(rate - 0.05) <= 3 * mcse, rate
    assert rej_naive / n_sims > rate  # counting seeds as splits is more liberal


def test_train_overlap_scales_the_nadeau_bengio_correlation_by_hand():
    d = [[0.01, 0.03], [0.02, 0.04]]
    s2 = 5e-4 / 3
    full = stats.corrected_repeated_cv_ttest(d, n_train=90, n_test=10)
    assert stats.corrected_repeated_cv_ttest(d, n_train=90, n_test=10, train_overlap=1.0).se == pytest.approx(full.se)
    half = stats.corrected_repeated_cv_ttest(d, n_train=90, n_test=10, train_overlap=0.5)
    rho = 0.5 * 10 / 100  # omega n_test / (n_test + n_train)
    assert half.se == pytest.approx(np.sqrt((1 / 4 + rho / (1 - rho)) * s2)) and half.train_overlap == 0.5
    assert half.test_train_ratio == pytest.approx(rho / (1 - rho)) and half.p < full.p
    none = stats.corrected_repeated_cv_ttest(d, n_train=90, n_test=10, train_overlap=0.0)
    assert none.se == pytest.approx(np.sqrt(s2 / 4)) and none.df == 3  # no shared training data: the plain t-test
    with pytest.raises(ValueError, match="train_overlap"):
        stats.corrected_repeated_cv_ttest(d, n_train=90, n_test=10, train_overlap=1.5)


def test_train_overlap_keeps_the_type_one_error_when_folds_share_little():
    """Folds whose training sets share a quarter of what a full partition's do (--real-fraction 0.25):
    the fold-shared component's correlation is a quarter of Nadeau & Bengio's rho. The unscaled test is
    conservative; scaled by the overlap it rejects near alpha."""
    rng = np.random.default_rng(21)
    k, n_sims, omega = 5, 1000, 0.25
    rho = omega * 1.0 / (1.0 + 4.0)
    rej_scaled = rej_full = 0
    for _ in range(n_sims):
        folds = rng.normal(0, np.sqrt(rho)) + rng.normal(0, np.sqrt(1 - rho), k)
        seeds = folds[:, None] + rng.normal(0, 0.3, (k, 3))
        rej_scaled += stats.corrected_repeated_cv_ttest(seeds[None], n_train=4.0, n_test=1.0, train_overlap=omega).p < 0.05
        rej_full += stats.corrected_repeated_cv_ttest(seeds[None], n_train=4.0, n_test=1.0).p < 0.05
    mcse = np.sqrt(0.05 * 0.95 / n_sims)
    assert abs(rej_scaled / n_sims - 0.05) <= 3 * mcse, rej_scaled / n_sims
    assert rej_full / n_sims < 0.05 - 3 * mcse, rej_full / n_sims


# --- clustered DeLong ------------------------------------------------------------------------------
def _scores(seed=0, n=60):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    y[:3], y[3:6] = 1, 0
    return y, y * 0.8 + rng.normal(0, 0.7, n), y * 1.2 + rng.normal(0, 0.7, n)


def test_clustered_delong_is_delong_with_one_image_per_patient():
    y, a, b = _scores(1)
    ref = stats.delong_paired(y, a, b)
    r = stats.delong_clustered(y, a, b, clusters=[f"p{i}" for i in range(len(y))])
    assert r.diff == pytest.approx(ref.diff) and r.se == pytest.approx(ref.se, rel=1e-12) and r.p == pytest.approx(ref.p)


def test_clustered_variance_by_hand_on_a_small_example():
    # patients: P1 = two positives (0.9, 0.4), P2 = one positive (0.7), N1 = negatives (0.5, 0.1), N2 = negative (0.3)
    y = np.array([1, 1, 1, 0, 0, 0])
    s = np.array([0.9, 0.4, 0.7, 0.5, 0.1, 0.3])
    c = np.array(["P1", "P1", "P2", "N1", "N1", "N2"])
    # placements: V10 of 0.9, 0.4, 0.7 = 3/3, 2/3, 3/3; V01 of 0.5, 0.1, 0.3 = 2/3, 3/3, 3/3; AUC = 8/9
    auc = 8 / 9
    vx, mi = np.array([1 + 2 / 3, 1.0]), np.array([2, 1])  # P1, P2
    vy, ni = np.array([2 / 3 + 1, 1.0]), np.array([2, 1])  # N1, N2
    M = N = 3
    s10 = 2 / (1 * M) * np.sum((vx - mi * auc) ** 2)
    s01 = 2 / (1 * N) * np.sum((vy - ni * auc) ** 2)  # S11 = 0: no patient has both classes
    var = s10 / M + s01 / N
    aucs, cov = stats.clustered_auc_cov(y, s[None], c)
    assert aucs[0] == pytest.approx(auc) and cov[0, 0] == pytest.approx(var)


def test_clustered_delong_widens_when_images_of_a_patient_agree():
    y, a, b = _scores(2, n=40)
    rep = 4  # every patient's image repeated: no new information, DeLong thinks there is
    yy, aa, bb = np.repeat(y, rep), np.repeat(a, rep), np.repeat(b, rep)
    naive = stats.delong_paired(yy, aa, bb)
    clustered = stats.delong_clustered(yy, aa, bb, np.repeat(np.arange(40), rep))
    one = stats.delong_paired(y, a, b)
    assert clustered.se > 1.8 * naive.se
    assert clustered.se == pytest.approx(one.se, rel=0.1)


def test_clustered_stratified_with_one_stratum_is_clustered():
    y, a, b = _scores(3)
    c = np.arange(len(y)) // 2
    assert stats.delong_clustered_stratified([(y, a, b, c)]).se == pytest.approx(stats.delong_clustered(y, a, b, c).se)


# --- Holm, TOST, MDE, verdicts ------------------------------------------------------------------------
def test_holm_on_known_pvalues():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    adj = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = stats.holm([0.02, float("nan")])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1])


def test_tost_small_example():
    # mean 0.002, se 0.004, df 9, margin 0.01
    r = stats.tost(0.002, 0.004, margin=0.01, df=9)
    assert r.p_lower == pytest.approx(sps.t.sf(3.0, 9)) and r.p_upper == pytest.approx(sps.t.cdf(-2.0, 9))
    assert r.p == pytest.approx(sps.t.cdf(-2.0, 9)) and r.equivalent  # 0.038 < 0.05
    q = sps.t.ppf(0.95, 9)
    assert (r.lo, r.hi) == pytest.approx((0.002 - q * 0.004, 0.002 + q * 0.004))
    assert not stats.tost(0.002, 0.006, margin=0.01, df=9).equivalent
    assert stats.tost(0.0, 0.004, margin=0.01).p == pytest.approx(sps.norm.sf(2.5))


def test_minimum_detectable_effect():
    assert stats.minimum_detectable_effect(0.01) == pytest.approx(0.028016, abs=1e-6)


def test_verdict_rules():
    held = {"test": stats.DeLongResult(0.8, 0.78, -0.02, 0.005, -4.0, 6e-5, -0.03, -0.01)}
    assert stats.decide(0.03, 0.01, 0.01, 0.05)[0] == "improves"
    assert stats.decide(-0.03, 0.01, -0.05, -0.01)[0] == "harms"
    assert stats.decide(0.03, 0.01, 0.01, 0.05, held_out=held)[0] == "inconclusive"  # held-out the other way
    assert stats.decide(0.002, 0.6, -0.004, 0.008, margin=0.01)[0] == "equivalent"
    assert stats.decide(0.002, 0.6, -0.004, 0.012, margin=0.01)[0] == "inconclusive"
    assert stats.decide(0.002, 0.6, -0.004, 0.008, margin=0.01, held_out=held)[0] == "inconclusive"
    word, why = stats.decide(0.03, 0.001, 0.02, 0.04, oracle_detected=False)
    assert word == "inconclusive" and "could not detect" in why
    assert stats.decide(0.03, 0.001, 0.02, 0.04, oracle_detected=True)[0] == "improves"
    assert set(stats.VERDICT_WORDS) == {"improves", "harms", "equivalent", "inconclusive"}
