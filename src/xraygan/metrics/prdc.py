"""Precision/recall and density/coverage from k-nearest-neighbour balls in feature space.

- Precision and recall: Kynkaanniemi et al. 2019, "Improved precision and recall metric for
  assessing generative models" (k = 3). The real (resp. fake) manifold is the union of balls
  around each real (fake) sample whose radius is the distance to its k-th nearest neighbour in the
  same set. Precision = share of fakes inside the real manifold; recall = share of reals inside the
  fake manifold.
- Density and coverage: Naeem et al. 2020, "Reliable fidelity and diversity metrics for generative
  models" (k = 5). Density = (1 / kM) sum_j sum_i 1[fake_j in ball(real_i)] (can exceed 1);
  coverage = share of real balls that hold at least one fake.

Distances are Euclidean, computed in float64 in blocks so memory stays O(block x n).
:func:`prdc` computes one real-real and one real-fake distance matrix for all four scores, and
takes the real radii precomputed (:func:`knn_radii_multi`) when one real set is scored against
several candidates (the synthetic set and the real floor); the numbers are those of the separate
functions, bit for bit.
"""
from __future__ import annotations

import numpy as np

from xraygan.errors import XrayganError

_BLOCK = 1024


def pairwise_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix (len(x), len(y)) in float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x2, y2 = (x * x).sum(1), (y * y).sum(1)
    out = np.empty((x.shape[0], y.shape[0]))
    for s in range(0, x.shape[0], _BLOCK):
        d2 = x2[s:s + _BLOCK, None] + y2[None, :] - 2.0 * x[s:s + _BLOCK] @ y.T
        out[s:s + _BLOCK] = np.sqrt(np.clip(d2, 0, None))
    return out


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of ``x`` to its k-th nearest *other* row (the ball radius)."""
    n = np.asarray(x).shape[0]
    if n <= k:
        raise XrayganError(f"k-NN radius with k={k} needs more than {k} samples, got {n}")
    d = pairwise_distances(x, x)
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def knn_radii_multi(x: np.ndarray, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """:func:`knn_radii` for several k from one distance matrix and one partition (same values)."""
    n = np.asarray(x).shape[0]
    if n <= max(ks):
        raise XrayganError(f"k-NN radius with k={max(ks)} needs more than {max(ks)} samples, got {n}")
    d = pairwise_distances(x, x)
    np.fill_diagonal(d, np.inf)
    part = np.partition(d, sorted({k - 1 for k in ks}), axis=1)
    return {k: part[:, k - 1].copy() for k in ks}


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN balls."""
    r_real, r_fake = knn_radii(real, k), knn_radii(fake, k)
    d = pairwise_distances(real, fake)  # (n_real, n_fake)
    precision = (d <= r_real[:, None]).any(axis=0).mean()
    recall = (d <= r_fake[None, :]).any(axis=1).mean()
    return {"precision": float(precision), "recall": float(recall)}


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020) with k-NN balls around the real samples."""
    r_real = knn_radii(real, k)
    inside = pairwise_distances(real, fake) <= r_real[:, None]  # (n_real, n_fake)
    density = inside.sum() / (k * inside.shape[1])
    coverage = inside.any(axis=1).mean()
    return {"density": float(density), "coverage": float(coverage)}


def prdc_indicators(real: np.ndarray, fake: np.ndarray, k_pr: int = 3, k_dc: int = 5,
                    real_radii: dict[int, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The per-image terms behind :func:`prdc`'s scores: per synthetic image ``precision`` (inside the
    real manifold) and ``balls`` (how many real k_dc-balls it falls in; density is their mean / k_dc);
    per real image ``recall`` (inside the synthetic manifold) and ``coverage`` (a synthetic image in
    its ball). A bootstrap resamples these with the radii of the full sets."""
    rr = real_radii if real_radii is not None else knn_radii_multi(real, (k_pr, k_dc))
    r_fake = knn_radii(fake, k_pr)
    d = pairwise_distances(real, fake)  # (n_real, n_fake), shared by all four scores
    inside = d <= rr[k_dc][:, None]
    return {"precision": (d <= rr[k_pr][:, None]).any(axis=0), "recall": (d <= r_fake[None, :]).any(axis=1),
            "balls": inside.sum(axis=0), "coverage": inside.any(axis=1)}


def prdc(real: np.ndarray, fake: np.ndarray, k_pr: int = 3, k_dc: int = 5,
         real_radii: dict[int, np.ndarray] | None = None) -> dict[str, float]:
    """Precision, recall (k_pr) and density, coverage (k_dc) of ``fake`` against ``real`` features.

    ``real_radii``: :func:`knn_radii_multi` ``(real, (k_pr, k_dc))`` when already computed.
    """
    per = prdc_indicators(real, fake, k_pr, k_dc, real_radii)
    return {"precision": float(per["precision"].mean()), "recall": float(per["recall"].mean()),
            "density": float(per["balls"].sum() / (k_dc * len(per["balls"]))), "coverage": float(per["coverage"].mean())}
