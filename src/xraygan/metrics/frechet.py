"""Frechet distance and kernel inception distance on feature vectors.

- Frechet distance (Dowson & Landau 1982; as FID in Heusel et al. 2017, "GANs trained by a two
  time-scale update rule converge to a local Nash equilibrium"): the 2-Wasserstein distance
  between Gaussians fitted to the two feature sets,
  ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``. Biased upward at small n; needs n well above
  the feature dimension.
- KID (Binkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimator of the squared
  maximum mean discrepancy with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, averaged
  over random subsets; the mean and standard deviation over subsets are reported, as in the
  reference implementation that accompanies the paper.

All functions take features (n, d) arrays, so any extractor can be plugged in.
"""
from __future__ import annotations

import numpy as np

from xraygan.errors import XrayganError

KID_MIN_N = 4  # KID subsets hold half of the smaller side, and each needs 2 samples


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of ``features`` (n, d), in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise XrayganError(f"need at least 2 feature vectors to estimate a covariance, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues clipped)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``tr((S1 S2)^(1/2))`` is computed as ``sum sqrt(eig(S1^(1/2) S2 S1^(1/2)))``: the matrix inside is
    symmetric PSD, so this is stable where a general ``sqrtm`` returns complex noise.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise XrayganError(f"feature dimensions differ: {mu1.shape} vs {mu2.shape}")
    r1 = _sqrtm_psd(s1)
    inner = r1 @ s2 @ r1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean, 0.0))


def frechet_distance_features(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets ``a`` (n, d) and ``b`` (m, d)."""
    return frechet_distance(*feature_stats(a), *feature_stats(b))


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 estimate between samples ``x`` (m, d) and ``y`` (n, d), cubic polynomial kernel."""
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise XrayganError(f"KID needs at least 2 samples per side, got {m} and {n}")
    return _mmd2_from_kernels(_poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y))


def _mmd2_from_kernels(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 from kernel matrices: diagonals of kxx and kyy left out."""
    m, n = kxx.shape[0], kyy.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_inception_distance(
    a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID between feature sets ``a`` and ``b``: (mean, std) of unbiased MMD^2 over random subsets.

    Each subset draws ``min(subset_size, min(len(a), len(b)) // 2)`` rows of each side without
    replacement (half of the smaller side at most, so that subsets differ and the std means
    something). Up to ``_FULL_KERNEL_MAX`` rows per side the kernel matrices are computed once and
    every subset's block sums come from one matrix product with indicator vectors.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    size = min(subset_size, min(a.shape[0], b.shape[0]) // 2)
    if size < 2:  # KID_MIN_N
        raise XrayganError(f"KID needs at least {KID_MIN_N} samples per side, got {a.shape[0]} and {b.shape[0]}")
    rng = np.random.default_rng(seed)
    picks = [(rng.choice(a.shape[0], size, replace=False), rng.choice(b.shape[0], size, replace=False)) for _ in range(subsets)]
    if max(a.shape[0], b.shape[0]) > _FULL_KERNEL_MAX:
        vals = np.array([mmd2_unbiased(a[ia], b[ib]) for ia, ib in picks])
    else:
        wa, wb = np.zeros((a.shape[0], subsets)), np.zeros((b.shape[0], subsets))
        for j, (ia, ib) in enumerate(picks):
            wa[ia, j], wb[ib, j] = 1.0, 1.0
        kaa, kbb, kab = _poly_kernel(a, a), _poly_kernel(b, b), _poly_kernel(a, b)
        saa = (wa * (kaa @ wa)).sum(0) - wa.T @ np.diag(kaa)  # block sums without the diagonal
        sbb = (wb * (kbb @ wb)).sum(0) - wb.T @ np.diag(kbb)
        sab = (wa * (kab @ wb)).sum(0)
        vals = saa / (size * (size - 1)) + sbb / (size * (size - 1)) - 2.0 * sab / (size * size)
    return float(vals.mean()), float(vals.std(ddof=1) if subsets > 1 else 0.0)


_FULL_KERNEL_MAX = 10000  # rows per side; 3 matrices of 10000^2 float64 = 2.4 GB at most
