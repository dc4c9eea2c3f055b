"""Metric math on toy feature sets with known answers (no feature extractor involved)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xraygan.errors import XrayganError
from xraygan.metrics.diversity import mean_pairwise_ssim, ms_ssim, ms_ssim_scales, ssim
from xraygan.metrics.frechet import frechet_distance, frechet_distance_features, kernel_inception_distance, mmd2_unbiased
from xraygan.metrics.memorisation import memorisation_scores, save_closest_pairs
from xraygan.metrics.prdc import density_coverage, knn_radii, prdc, precision_recall


def _gauss(n, d, seed, shift=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(shift, scale, (n, d))


# --- Frechet distance ---------------------------------------------------------------------------
def test_fd_of_a_set_with_itself_is_zero():
    x = _gauss(500, 16, 0)
    assert frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fd_matches_closed_form_for_gaussians():
    rng = np.random.default_rng(1)
    d = 6
    a1, a2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a1 @ a1.T + np.eye(d), a2 @ a2.T + 0.5 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # closed form via scipy's general sqrtm
    from scipy.linalg import sqrtm

    expect = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expect, rel=1e-8)
    # diagonal covariances: sum (sqrt(v1) - sqrt(v2))^2 + |mu1 - mu2|^2
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    assert frechet_distance(np.zeros(3), np.diag(v1), np.ones(3), np.diag(v2)) == pytest.approx(3 + 1 + 1 + 0)


def test_fd_estimate_converges_to_population_value():
    x, y = _gauss(20000, 4, 2), _gauss(20000, 4, 3, shift=1.0, scale=2.0)
    # population: |mu|^2 = 4, per dim (1 - 2)^2 = 1 -> 4 + 4 = 8
    assert frechet_distance_features(x, y) == pytest.approx(8.0, rel=0.03)


def test_fd_rejects_mismatched_dims():
    with pytest.raises(XrayganError):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# --- KID ----------------------------------------------------------------------------------------
def test_kid_is_unbiased_on_same_distribution():
    vals = [mmd2_unbiased(_gauss(50, 8, s), _gauss(50, 8, 1000 + s)) for s in range(200)]
    mean, sem = np.mean(vals), np.std(vals) / np.sqrt(len(vals))
    assert abs(mean) < 3 * sem  # centred on zero (a biased estimator would sit clearly above)
    assert min(vals) < 0 < max(vals)


def test_kid_detects_shift_and_reports_std():
    same_mean, same_std = kernel_inception_distance(_gauss(300, 8, 0), _gauss(300, 8, 1), subsets=20, subset_size=100)
    diff_mean, diff_std = kernel_inception_distance(_gauss(300, 8, 0), _gauss(300, 8, 1, shift=0.5), subsets=20, subset_size=100)
    assert diff_mean > 10 * abs(same_mean) and diff_mean > 5 * diff_std
    assert same_std > 0


# --- precision / recall / density / coverage ----------------------------------------------------
def test_knn_radius_excludes_self():
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(knn_radii(x, 1), [1, 1, 2, 4])
    np.testing.assert_allclose(knn_radii(x, 2), [3, 2, 3, 6])


def test_prdc_identical_sets():
    x = _gauss(200, 5, 0)
    out = prdc(x, x)
    assert out["precision"] == 1.0 and out["recall"] == 1.0 and out["coverage"] == 1.0
    assert out["density"] == pytest.approx(1.0 + 0.0, abs=0.25)  # each real in its own ball + neighbours: ~1


def test_prdc_disjoint_and_collapsed_sets():
    real = _gauss(300, 2, 0)
    far = _gauss(300, 2, 1, shift=50.0)
    assert prdc(real, far) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    # mode collapse: every fake sits near one real point -> high precision, low recall and coverage
    collapsed = real[:1] + _gauss(300, 2, 2, scale=1e-3)
    pr, dc = precision_recall(real, collapsed), density_coverage(real, collapsed)
    assert pr["precision"] == 1.0 and pr["recall"] < 0.05 and dc["coverage"] < 0.05


def test_prdc_known_toy_answer():
    real = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    fake = np.array([[0.5], [11.5], [50.0], [51.0], [52.0], [53.0]])
    # k=1 radii: real all 1; fake: 0.5->11 , 11.5->11, 50..53 -> 1
    pr = precision_recall(real, fake, k=1)
    assert pr["precision"] == pytest.approx(2 / 6)
    assert pr["recall"] == pytest.approx(1.0)  # fake balls of radius 11 cover every real
    dc = density_coverage(real, fake, k=1)
    assert dc["coverage"] == pytest.approx(4 / 6)  # reals 0,1,11,12 hold a fake (2 and 10 do not)
    assert dc["density"] == pytest.approx(4 / 6)  # 0.5 in 2 balls, 11.5 in 2 balls -> 4 / (1 * 6)


def test_prdc_matches_reference_package():
    ref = pytest.importorskip("prdc")
    real, fake = _gauss(400, 10, 0), _gauss(400, 10, 1, shift=0.3)
    ours = prdc(real, fake, k_pr=5, k_dc=5)
    theirs = ref.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    for key in ours:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key


# --- SSIM diversity -----------------------------------------------------------------------------
def test_ssim_identity_and_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 32, 32, generator=g)
    assert torch.allclose(ssim(x, x), torch.ones(4, dtype=torch.float64))
    noisy = (x + 0.3 * torch.randn(4, 1, 32, 32, generator=g)).clamp(0, 1)
    other = torch.rand(4, 1, 32, 32, generator=g)
    assert (ssim(x, noisy) < 0.9).all() and (ssim(x, other) < ssim(x, noisy)).all()


def test_ms_ssim_scales_and_identity():
    assert ms_ssim_scales(176) == 5 and ms_ssim_scales(175) == 4 and ms_ssim_scales(64) == 3 and ms_ssim_scales(16) == 1
    x = torch.rand(2, 1, 180, 180, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ms_ssim(x, x), torch.ones(2, dtype=torch.float64))
    assert (ms_ssim(x, x.flip(-1)) < 0.5).all()


def test_mean_pairwise_ssim_ranks_collapse_above_diversity():
    rng = np.random.default_rng(0)
    diverse = rng.integers(0, 256, (40, 16, 16), dtype=np.uint8)
    base = rng.integers(0, 256, (16, 16))
    collapsed = np.clip(base + rng.normal(0, 5, (40, 16, 16)), 0, 255).astype(np.uint8)
    d, c = mean_pairwise_ssim(diverse, n_pairs=200), mean_pairwise_ssim(collapsed, n_pairs=200)
    assert c["mean"] > 0.8 > 0.2 > d["mean"] and d["method"] == "ssim"


# --- memorisation -------------------------------------------------------------------------------
def test_planted_copies_are_flagged_and_novel_images_are_not(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, 20))
    heldout = rng.normal(size=(200, 20))
    novel = rng.normal(size=(100, 20))
    copies = train[:10] + rng.normal(0, 1e-3, (10, 20))
    out = memorisation_scores(np.concatenate([copies, novel]), train, heldout)
    d, idx = out.pop("_fake_nn")
    assert out["fake_below"] >= 10 and out["fake_below"] <= 10 + 5  # copies plus ~1% of novel
    assert set(np.argsort(d)[:10]) == set(range(10)) and (idx[:10] == np.arange(10)).all()
    assert out["authenticity"] < 0.95 and out["authenticity_heldout"] > out["authenticity"]
    clean = memorisation_scores(novel, train, heldout)
    assert clean["fake_below"] <= 5 and clean["authenticity"] > 0.5
    pix = rng.integers(0, 256, (110, 8, 8), dtype=np.uint8)
    png = save_closest_pairs(tmp_path / "pairs.png", pix, pix[:100], d, np.minimum(idx, 99), n=6)
    from PIL import Image

    assert Image.open(png).size[0] > 8 * 8


def test_kid_full_kernel_path_equals_per_subset_path(monkeypatch):
    import xraygan.metrics.frechet as fr

    a, b = _gauss(120, 6, 0), _gauss(100, 6, 1, shift=0.2)
    fast = fr.kernel_inception_distance(a, b, subsets=7, subset_size=50, seed=3)
    monkeypatch.setattr(fr, "_FULL_KERNEL_MAX", 10)  # force the per-subset path
    slow = fr.kernel_inception_distance(a, b, subsets=7, subset_size=50, seed=3)
    assert fast == pytest.approx(slow, rel=1e-10)


def test_compare_leaves_kid_out_below_four_samples_and_keeps_fd():
    from xraygan.metrics.evaluate import compare

    rng = np.random.default_rng(0)
    small = compare(rng.normal(size=(3, 5)), rng.normal(size=(3, 5)), kid_subsets=5, kid_subset_size=100, seed=0)
    assert small["kid"] is None and small["fd"] is not None and small["fd"] >= 0
    enough = compare(rng.normal(size=(4, 5)), rng.normal(size=(4, 5)), kid_subsets=5, kid_subset_size=100, seed=0)
    assert enough["kid"] is not None
