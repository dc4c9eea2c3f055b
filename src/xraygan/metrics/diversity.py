"""Diversity as mean SSIM over random pairs of images within one set (lower = more diverse).

- SSIM: Wang, Bovik, Sheikh & Simoncelli 2004, "Image quality assessment: from error visibility
  to structural similarity", with their constants K1 = 0.01, K2 = 0.03 and an 11x11 Gaussian
  window of sigma 1.5 (smaller, odd windows for images under 11 px), valid (unpadded) filtering,
  applied separably in float32 (local statistics, as two banded matrix products), averaged in
  float64.
- MS-SSIM: Wang, Simoncelli & Bovik 2003, "Multiscale structural similarity for image quality
  assessment": contrast-structure terms at every scale, luminance at the coarsest, combined
  with the published weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average pooling
  between scales. We use as many scales (up to 5) as keep the coarsest image at least as large
  as the window, renormalising the weights; from 176 px on all 5 fit. Below 176 px the
  single-scale SSIM is used, so numbers are only comparable at the same resolution.

A mean within-set SSIM means nothing alone: report it beside the same number for real images.
"""
from __future__ import annotations

import numpy as np

from xraygan.utils.pixels import signed_to_unit, to_unit

MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_MIN_SIZE = 176
_K1, _K2 = 0.01, 0.03


def _gaussian_window(size: int, sigma: float = 1.5):
    """Normalised 1-D Gaussian taps (size,), float32; the 2-D window is their outer product."""
    import torch

    ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    return g / g.sum()


def _band(n: int, taps):
    """(n, n - k + 1) matrix whose column j holds the taps at rows j..j+k-1: ``x @ band`` filters rows."""
    import torch

    k = taps.numel()
    m = torch.zeros(n, n - k + 1, dtype=taps.dtype)
    for j in range(n - k + 1):
        m[j:j + k, j] = taps
    return m


def _filter(x, taps):
    """Valid separable Gaussian filtering of (..., H, W): rows, then columns.

    Two plain matrix products with banded matrices (one large GEMM each) rather than a 1-channel
    convolution, which CPU convolution kernels run several times slower.
    """
    h, w = x.shape[-2:]
    bw, bh = _band(w, taps), _band(h, taps)
    y = (x.reshape(-1, w) @ bw).reshape(*x.shape[:-1], bw.shape[1])  # (..., H, W')
    y = y.transpose(-1, -2).reshape(-1, h) @ bh  # (... * W', H')
    return y.reshape(*x.shape[:-2], bw.shape[1], bh.shape[1]).transpose(-1, -2)


def window_size(image_size: int, preferred: int = 11) -> int:
    """The Gaussian window for an image side: 11, or the largest odd size that fits."""
    w = min(preferred, image_size)
    return w if w % 2 == 1 else w - 1


def _ssim_terms(x, y, win):
    """Per-image mean luminance*cs and cs terms of SSIM for (n, 1, H, W) float32 in [0, 1]."""
    import torch

    c1, c2 = _K1**2, _K2**2  # data range 1
    mu_x, mu_y, exx, eyy, exy = _filter(torch.cat([x, y, x * x, y * y, x * y], 1), win).unbind(1)
    sxx = exx - mu_x**2
    syy = eyy - mu_y**2
    sxy = exy - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (lum * cs).flatten(1).double().mean(1), cs.flatten(1).double().mean(1)


def ssim(x, y):
    """Single-scale SSIM per pair for tensors (n, 1, H, W) with values in [0, 1]; returns (n,)."""
    win = _gaussian_window(window_size(min(x.shape[-2:])))
    return _ssim_terms(x.float(), y.float(), win)[0]


def ms_ssim_scales(image_size: int, window: int = 11) -> int:
    """How many MS-SSIM scales (<= 5) fit: the coarsest scale must be at least ``window`` px."""
    s = 1
    while s < len(MS_WEIGHTS) and image_size // 2**s >= window:
        s += 1
    return s


def ms_ssim(x, y):
    """MS-SSIM per pair for (n, 1, H, W) in [0, 1] with the scales that fit; returns (n,)."""
    import torch
    import torch.nn.functional as F

    x, y = x.float(), y.float()
    scales = ms_ssim_scales(min(x.shape[-2:]))
    w = torch.tensor(MS_WEIGHTS[:scales], dtype=torch.float64)
    w = w / w.sum()
    win = _gaussian_window(11)
    out = torch.ones(x.shape[0], dtype=torch.float64)
    for s in range(scales):
        full, cs = _ssim_terms(x, y, win)
        term = full if s == scales - 1 else cs
        out = out * term.clamp(min=0) ** w[s]  # negative cs (anti-correlated) counts as 0
        if s < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return out


def mean_pairwise_ssim(images, n_pairs: int = 2000, seed: int = 0, batch: int = 500) -> dict:
    """Mean (and std) SSIM over ``n_pairs`` random pairs of distinct images from one set (every
    distinct pair once when there are no more than ``n_pairs`` of them; ``pairs`` says how many).

    ``images``: (n, 1, H, W) tensor in [-1, 1] or (n, H, W) uint8 array. Uses MS-SSIM from
    ``MS_SSIM_MIN_SIZE`` px on, single-scale SSIM below it.
    """
    import torch

    x = _as_unit_tensor(images)
    n = x.shape[0]
    if n < 2:
        from xraygan.errors import XrayganError

        raise XrayganError(f"SSIM diversity needs at least 2 images, got {n}")
    if n * (n - 1) // 2 <= n_pairs:  # no more pairs than there are distinct ones: each once, exactly
        i, j = np.triu_indices(n, 1)
        n_pairs = len(i)
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, n_pairs)
        j = (i + rng.integers(1, n, n_pairs)) % n  # j != i, uniform over the others
    size = min(x.shape[-2:])
    fn = ms_ssim if size >= MS_SSIM_MIN_SIZE else ssim
    if fn is ssim:
        vals = _ssim_of_pairs(x, i, j, batch)
    else:
        vals = torch.cat([fn(x[i[s:s + batch]], x[j[s:s + batch]]) for s in range(0, n_pairs, batch)])
    return {
        "mean": float(vals.mean()), "std": float(vals.std()), "pairs": int(n_pairs),
        "method": f"ms-ssim ({ms_ssim_scales(size)} scales)" if fn is ms_ssim else "ssim",
    }


def _ssim_of_pairs(x, i: np.ndarray, j: np.ndarray, batch: int):
    """Single-scale SSIM of the pairs (x[i[k]], x[j[k]]) for x (n, 1, H, W) in [0, 1]; returns (pairs,).

    The same numbers as :func:`ssim` per pair, with each image's local mean and variance filtered
    once (an image is in many pairs), only the cross term E[xy] per pair.
    """
    import torch

    win = _gaussian_window(window_size(min(x.shape[-2:])))
    used = np.unique(np.concatenate([i, j]))
    row = np.full(x.shape[0], -1, np.int64)
    row[used] = np.arange(len(used))
    mu, sq, var = [], [], []
    for s in range(0, len(used), batch):
        xb = x[used[s:s + batch]]
        m, e = _filter(torch.cat([xb, xb * xb], 1), win).unbind(1)
        m2 = m**2
        mu.append(m)
        sq.append(m2)
        var.append(e - m2)
    mu, sq, var = (torch.cat(t) for t in (mu, sq, var))
    c1, c2 = _K1**2, _K2**2  # data range 1
    out = []
    for s in range(0, len(i), batch):
        a, b = torch.from_numpy(row[i[s:s + batch]]), torch.from_numpy(row[j[s:s + batch]])
        exy = _filter(x[i[s:s + batch]] * x[j[s:s + batch]], win)[:, 0]
        mxy = mu[a] * mu[b]
        cs = (2 * (exy - mxy) + c2) / (var[a] + var[b] + c2)
        lum = (2 * mxy + c1) / (sq[a] + sq[b] + c1)
        out.append((lum * cs).flatten(1).double().mean(1))
    return torch.cat(out)


def _as_unit_tensor(images):
    """(n, 1, H, W) float tensor in [0, 1] from a [-1, 1] tensor or a uint8 (n, H, W) array."""
    import torch

    if isinstance(images, np.ndarray):
        t = torch.from_numpy(to_unit(images))
        return t.unsqueeze(1) if t.ndim == 3 else t
    t = images.float()
    return signed_to_unit(t.unsqueeze(1) if t.ndim == 3 else t)
