"""Per-class collapse scores: precision, recall, density, coverage, FD and intra-class diversity
of a conditional generator, each beside its real-vs-real floor.

The *reference* set R_c of class c is a set of real images. The synthetic set F_c (n images of
class c) is scored against R_c; the *floor* is the same score for a second, disjoint real set B_c
of the same n against R_c. A generator that repeats one image per class keeps its precision but
its recall and coverage fall to about 1/n of the floor: :func:`collapse_warnings` flags a class
whose recall is below half its floor (``COLLAPSE_FRACTION``).

Intra-class diversity (``pixel_std``) is the mean over pixels of the per-pixel standard deviation
across the images of one class, in units of [0, 1] intensity; the floor is the same number for
the real images. A collapsed class has ``pixel_std`` near 0.

Metric definitions: :mod:`xraygan.metrics.prdc` (Kynkaanniemi et al. 2019; Naeem et al. 2020)
and :mod:`xraygan.metrics.frechet`.
"""
from __future__ import annotations

import numpy as np

from xraygan.utils.pixels import to_unit

COLLAPSE_FRACTION = 0.5  # a class is flagged when its recall < COLLAPSE_FRACTION * its floor
PR_K, DC_K = 3, 5
METRICS = ("fd", "precision", "recall", "density", "coverage", "pixel_std")


def pixel_std(pixels: np.ndarray) -> float:
    """Mean per-pixel standard deviation across images (uint8 (n, H, W) or float in [0, 1])."""
    x = np.asarray(pixels)
    x = to_unit(x, np.float64) if x.dtype == np.uint8 else x.astype(np.float64)
    if len(x) < 2:
        return 0.0
    return float(x.reshape(len(x), -1).std(axis=0).mean())


def _scores(ref: np.ndarray, cand: np.ndarray) -> dict:
    from xraygan.metrics.frechet import frechet_distance_features
    from xraygan.metrics.prdc import density_coverage, precision_recall

    n = min(len(ref), len(cand))
    out = {"fd": None, "precision": None, "recall": None, "density": None, "coverage": None}
    if n >= 2:
        out["fd"] = float(frechet_distance_features(ref, cand))
    if n > PR_K:
        out.update(precision_recall(ref, cand, PR_K))
    if n > DC_K:
        out.update(density_coverage(ref, cand, DC_K))
    return out


def class_scores(ref_feats: np.ndarray, fake_feats: np.ndarray, floor_feats: np.ndarray,
                 fake_pix: np.ndarray | None = None, real_pix: np.ndarray | None = None) -> dict:
    """{metric: {"value", "floor"}} for one class; ``*_pix`` (uint8) add ``pixel_std``.

    ``ref_feats`` are the reference real features, ``fake_feats`` the synthetic ones and
    ``floor_feats`` a disjoint real set; the two candidate sets should have the same n.
    """
    val, flo = _scores(ref_feats, fake_feats), _scores(ref_feats, floor_feats)
    out = {k: {"value": val[k], "floor": flo[k]} for k in val}
    if fake_pix is not None and real_pix is not None:
        out["pixel_std"] = {"value": pixel_std(fake_pix), "floor": pixel_std(real_pix)}
    out["n"] = int(min(len(fake_feats), len(floor_feats)))
    out["n_ref"] = int(len(ref_feats))
    return out


def collapse_warnings(per_class: dict, fraction: float = COLLAPSE_FRACTION) -> list[str]:
    """One line per class whose recall is below ``fraction`` of its real-vs-real floor."""
    out = []
    for name, e in per_class.items():
        r = (e.get("recall") or {})
        v, f = r.get("value"), r.get("floor")
        if v is not None and f is not None and f > 0 and v < fraction * f:
            out.append(f"class {name} looks collapsed: recall {v:.3f} is below {fraction:g} x its real-vs-real floor {f:.3f}")
    return out


def min_recall_ratio(per_class: dict) -> float:
    """min over classes of recall / floor (1 = as diverse as real data; 0 = collapsed)."""
    ratios = []
    for e in per_class.values():
        r = e.get("recall") or {}
        if r.get("value") is not None and r.get("floor"):
            ratios.append(min(1.0, r["value"] / r["floor"]))
    return float(min(ratios)) if ratios else float("nan")


def flat_record(per_class: dict, prefix: str = "pc") -> dict:
    """``{f"{prefix}_{metric}_{class}": value, ..._floor: floor}`` for metrics.jsonl / TensorBoard."""
    rec = {}
    for name, e in per_class.items():
        for m in METRICS:
            if m in e and e[m]["value"] is not None:
                rec[f"{prefix}_{m}_{name}"] = round(float(e[m]["value"]), 5)
                if e[m]["floor"] is not None:
                    rec[f"{prefix}_{m}_{name}_floor"] = round(float(e[m]["floor"]), 5)
    return rec


def random_subset(idx: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random subset of ``idx`` of size ``min(n, len(idx))``, sorted (never the lowest indices)."""
    idx = np.asarray(idx)
    if len(idx) <= n:
        return np.sort(idx)
    return np.sort(rng.choice(idx, n, replace=False))
