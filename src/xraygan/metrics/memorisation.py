"""Memorisation: are synthetic images copies of training images?

For every synthetic image we find its nearest training image, in pixel space (L2 on [0, 1]
pixels) and in feature space. The reference is the same distance for held-out real images
(never seen in training): a generator that copies produces many synthetic images closer to the
training set than almost any held-out real image is. We report how many synthetic images fall
below the 1st percentile of the held-out distances (about 1 % is expected without copying).

Authenticity follows Alaa, van Breugel, Saveliev & van der Schaar 2022, "How faithful is your
synthetic data? Sample-level metrics for evaluating and auditing generative models": a
synthetic sample is unauthentic when it is closer to its nearest training sample x* than x*'s
own nearest other training sample is; authenticity is the share of authentic samples. The same
share for held-out real images is reported beside it as the floor.

The distances among the real sets alone (held-out to training, training to training: most of the
cost, 3.6k x 3.6k x 4096 in pixel space for the shared data) do not depend on the synthetic set;
``evaluate`` caches them beside the features (:func:`cached_reference`).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from xraygan.metrics.prdc import pairwise_distances

log = logging.getLogger(__name__)


def nearest(query: np.ndarray, reference: np.ndarray, block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Distance and index of the nearest ``reference`` row for every ``query`` row."""
    dist, idx = np.empty(len(query)), np.empty(len(query), dtype=np.int64)
    for s in range(0, len(query), block):
        d = pairwise_distances(query[s:s + block], reference)
        idx[s:s + block] = d.argmin(axis=1)
        dist[s:s + block] = d[np.arange(d.shape[0]), idx[s:s + block]]
    return dist, idx


def train_nn_radius(train: np.ndarray, block: int = 512) -> np.ndarray:
    """Distance from every training row to its nearest *other* training row."""
    out = np.empty(len(train))
    for s in range(0, len(train), block):
        d = pairwise_distances(train[s:s + block], train)
        d[np.arange(d.shape[0]), np.arange(s, s + d.shape[0])] = np.inf
        out[s:s + block] = d.min(axis=1)
    return out


def reference_distances(train: np.ndarray, heldout: np.ndarray) -> dict[str, np.ndarray]:
    """What memorisation needs of the real sets alone (the costly part, cacheable): every held-out
    row's nearest training distance and index, and every training row's nearest other training row."""
    train, heldout = (np.asarray(a, np.float64).reshape(len(a), -1) for a in (train, heldout))
    d_held, i_held = nearest(heldout, train)
    return {"d_held": d_held, "i_held": i_held, "radius": train_nn_radius(train)}


def cached_reference(train: np.ndarray, heldout: np.ndarray, key: str, cache_dir: Path | None) -> dict[str, np.ndarray]:
    """:func:`reference_distances` read from / written to ``cache_dir`` (``memo-<key>.npz``; ``key``
    must identify the two sets and the space: see :func:`reference_key`); ``None`` disables the cache."""
    import io

    from xraygan.utils.fs import atomic_write_bytes

    path = Path(cache_dir) / f"memo-{key}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as z:
                ref = {k: z[k] for k in ("d_held", "i_held", "radius")}
            if len(ref["d_held"]) == len(heldout) and len(ref["radius"]) == len(train):
                return ref
        except Exception:  # truncated (BadZipFile), not an npz, other arrays: recompute
            pass
        log.warning("ignoring unreadable memorisation cache file %s", path)
    ref = reference_distances(train, heldout)
    if path is not None:
        buf = io.BytesIO()
        np.savez(buf, **ref)
        atomic_write_bytes(path, buf.getvalue())
    return ref


def reference_key(train_pixels: np.ndarray, heldout_pixels: np.ndarray, space: str) -> str:
    """Cache key of the reference distances: the two uint8 image sets' content and the space
    (``pixel``, or the extractor's name, fingerprint and size)."""
    h = hashlib.sha256(f"{space}|{train_pixels.shape}|{heldout_pixels.shape}|v1".encode())
    h.update(np.ascontiguousarray(train_pixels).tobytes())
    h.update(np.ascontiguousarray(heldout_pixels).tobytes())
    return h.hexdigest()[:32]


def memorisation_scores(fake: np.ndarray, train: np.ndarray, heldout: np.ndarray, percentile: float = 1.0,
                        reference: dict[str, np.ndarray] | None = None) -> dict:
    """Nearest-training-image statistics for ``fake`` vs ``heldout`` rows (one space).

    Returns the threshold (``percentile`` of held-out distances), how many fakes lie below it,
    median distances, authenticity for fakes and held-out reals, and the per-fake nearest
    training index and distance (``_fake_nn``: used for the closest-pairs picture).
    ``reference``: :func:`reference_distances` of (train, heldout) when already known.
    """
    fake, train = (np.asarray(a, np.float64).reshape(len(a), -1) for a in (fake, train))
    d_fake, i_fake = nearest(fake, train)
    ref = reference if reference is not None else reference_distances(train, heldout)
    d_held, i_held, radius = ref["d_held"], ref["i_held"], ref["radius"]
    thr = float(np.percentile(d_held, percentile))
    return {
        "threshold": thr,
        "percentile": percentile,
        "n_fake": int(len(fake)),
        "n_heldout": int(len(d_held)),
        "n_train": int(len(train)),
        "fake_below": int((d_fake < thr).sum()),
        "fake_below_share": float((d_fake < thr).mean()),
        "heldout_below_share": float((d_held < thr).mean()),
        "fake_median_nn": float(np.median(d_fake)),
        "heldout_median_nn": float(np.median(d_held)),
        "authenticity": float((d_fake > radius[i_fake]).mean()),
        "authenticity_heldout": float((d_held > radius[i_held]).mean()),
        "_fake_nn": (d_fake, i_fake),
    }


PAIRS_PNG_SOFTWARE = "xraygan evaluate: closest synthetic-training pairs"


def save_closest_pairs(path: str | Path, fake: np.ndarray, train: np.ndarray, dist: np.ndarray, idx: np.ndarray, n: int = 16) -> Path:
    """PNG grid of the ``n`` synthetic images closest to a training image: each row fake | train.

    ``fake``/``train`` are uint8 (N, H, W) arrays at the same size; the grid is 4 pairs wide.
    """
    from PIL import Image

    from xraygan.utils.fs import atomic_write_bytes

    order = np.argsort(dist)[:n]
    h, w = fake.shape[1:]
    cols, gap = 4, 2
    rows = (len(order) + cols - 1) // cols
    canvas = np.full((rows * (h + gap) + gap, cols * (2 * w + 3 * gap) + gap), 255, np.uint8)
    for k, j in enumerate(order):
        r, c = divmod(k, cols)
        y, x = gap + r * (h + gap), gap + c * (2 * w + 3 * gap)
        canvas[y:y + h, x:x + w] = fake[j]
        canvas[y:y + h, x + w + gap:x + 2 * w + gap] = train[idx[j]]
    import io

    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", PAIRS_PNG_SOFTWARE)
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG", pnginfo=info)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
