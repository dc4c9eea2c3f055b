"""The scores of an evaluation, each beside its floor: feature-space scores (:func:`compare`,
:func:`scores_with_floor`), patient-bootstrap intervals, SSIM diversity, class consistency and
memorisation.

Split out of :mod:`xraygan.metrics.evaluate`, which re-exports every name. One real set is
scored against two candidates (the synthetic set and the real floor), so its k-NN radii are
computed once and shared (:func:`xraygan.metrics.prdc.knn_radii_multi`); the numbers are those of
scoring each pair on its own.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from xraygan.errors import XrayganError
from xraygan.metrics.features import Extractor, to_tensor
from xraygan.utils.pixels import to_unit

log = logging.getLogger(__name__)

PR_K, DC_K = 3, 5
MIN_STABLE_CLASS_N = 100  # per-class n below which a warning says the estimate is unstable
BOOTSTRAP = 200  # patient-bootstrap resamples for the 95% intervals


def bootstrap_ci(fa: np.ndarray, ff: np.ndarray, patients: np.ndarray, n_boot: int = BOOTSTRAP, seed: int = 0,
                 fd: float | None = None) -> dict:
    """Bootstrap 95% intervals of precision, recall, density, coverage and FD of fakes ``ff``
    against real features ``fa`` whose images belong to ``patients`` (aligned with ``fa``).

    The k-NN radii are those of the full sets, so every score is a mean of fixed per-image
    indicators, and each is resampled over the images it averages: recall and coverage (one
    indicator per real image) over whole real patients, with replacement (all images of a drawn
    patient come along); precision and density (one per synthetic image) over the synthetic
    images, which are independent draws. (Precision as the union of the balls of the resampled
    patients would shrink the real manifold to the ~63% distinct patients of a resample and bias
    the interval low: on 150 patients it excluded its own estimate.) FD resamples both; a resample's
    repeated images shrink its covariance estimates and inflate its FD, so the FD interval is the
    bootstrap's spread around the full-set FD: its percentiles shifted by (full-set FD - bootstrap
    median), floored at 0 (the percentile interval itself excluded its estimate on real data).
    ``fd``: the full-set FD when already computed (the value the report shows), else computed here.
    """
    from xraygan.metrics.frechet import frechet_distance_features
    from xraygan.metrics.prdc import prdc_indicators

    if len(fa) <= DC_K or len(ff) <= DC_K:
        return {}
    per = prdc_indicators(fa, ff, PR_K, DC_K)  # per synthetic image: precision, balls; per real image: recall, coverage
    groups: dict = {}
    for i, p in enumerate(patients):
        groups.setdefault(p, []).append(i)
    members = list(groups.values())
    rng = np.random.default_rng([int(seed), 2])
    out: dict[str, list] = {k: [] for k in ("precision", "recall", "density", "coverage", "fd")}
    for _ in range(n_boot):
        sel = np.concatenate([members[j] for j in rng.integers(len(members), size=len(members))])
        fsel = rng.integers(len(ff), size=len(ff))
        out["precision"].append(per["precision"][fsel].mean())
        out["density"].append(per["balls"][fsel].mean() / DC_K)
        for k in ("recall", "coverage"):
            out[k].append(per[k][sel].mean())
        out["fd"].append(frechet_distance_features(fa[sel], ff[fsel]) if len(np.unique(sel)) > 1 else np.nan)
    ci = {k: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))] for k, v in out.items()}
    if np.isfinite(out["fd"]).any():
        full = frechet_distance_features(fa, ff) if fd is None else float(fd)
        shift = full - float(np.nanmedian(out["fd"]))
        ci["fd"] = [max(0.0, ci["fd"][0] + shift), max(0.0, ci["fd"][1] + shift)]
    return ci


def compare(real: np.ndarray, fake: np.ndarray, kid_subsets: int, kid_subset_size: int, seed: int,
            real_radii: dict[int, np.ndarray] | None = None) -> dict:
    """Feature-space scores of ``fake`` against ``real`` (both (n, d)); None where n is too small.

    ``real_radii``: the k-NN radii of ``real`` for k = PR_K and DC_K when already computed.
    """
    from xraygan.metrics.frechet import KID_MIN_N, frechet_distance_features, kernel_inception_distance
    from xraygan.metrics.prdc import precision_recall, prdc

    n = min(len(real), len(fake))
    out: dict = {"fd": None, "kid": None, "kid_std": None, "precision": None, "recall": None, "density": None, "coverage": None}
    if n >= 2:
        out["fd"] = frechet_distance_features(real, fake)
    if n >= KID_MIN_N:
        out["kid"], out["kid_std"] = kernel_inception_distance(real, fake, kid_subsets, kid_subset_size, seed)
    if n > DC_K:
        out.update(prdc(real, fake, PR_K, DC_K, real_radii))
    elif n > PR_K:
        out.update(precision_recall(real, fake, PR_K))
    return out


def scores_with_floor(fa: np.ndarray, fb: np.ndarray, ff: np.ndarray, opts: dict) -> dict:
    """{metric: {"value": fake vs A, "floor": B vs A}} for every feature metric."""
    from xraygan.metrics.prdc import knn_radii_multi

    radii = knn_radii_multi(fa, (PR_K, DC_K)) if min(len(fa), len(fb), len(ff)) > DC_K else None
    val = compare(fa, ff, opts["kid_subsets"], opts["kid_subset_size"], opts["seed"], radii)
    flo = compare(fa, fb, opts["kid_subsets"], opts["kid_subset_size"], opts["seed"], radii)
    out = {k: {"value": val[k], "floor": flo[k]} for k in val if k != "kid_std"}
    out["kid"].update(std=val["kid_std"], floor_std=flo["kid_std"])
    return out


def _diversity(real_pix: np.ndarray, fake_pix: np.ndarray, pairs: int, seed: int) -> dict:
    from xraygan.metrics.diversity import mean_pairwise_ssim

    if min(len(real_pix), len(fake_pix)) < 2 or pairs <= 0:
        return {"value": None, "floor": None}
    f, r = mean_pairwise_ssim(fake_pix, pairs, seed), mean_pairwise_ssim(real_pix, pairs, seed)
    return {"value": f["mean"], "floor": r["mean"], "std": f["std"], "floor_std": r["std"], "pairs": f["pairs"], "floor_pairs": r["pairs"], "method": f["method"]}


def head_mapping(head_classes: list[str], classes: list[str], groups: dict | None = None) -> dict[int, set[int]] | None:
    """Dataset class index -> set of encoder-head class indices that read as it (None if unmappable).

    A dataset class matches the head class of its name (case-insensitive), else the head classes
    ``groups`` (from the encoder checkpoint: dataset class -> head classes) lists for it.
    """
    head = [h.lower() for h in head_classes]
    groups = {str(k).lower(): {str(m).lower() for m in v} for k, v in (groups or {}).items()}
    out = {}
    for ci, name in enumerate(classes):
        key = name.lower()
        members = {key} if key in head else groups.get(key)
        if not members or not members <= set(head):
            return None
        out[ci] = {head.index(m) for m in members}
    return out


def class_consistency(xray: Extractor, real_pix, real_lab, fake_pix, fake_lab, classes, size, feats_rf=None) -> dict | None:
    """Share of images of class c that the encoder's head reads as c: synthetic (value) beside real (floor).

    ``feats_rf``: the encoder's features of (real, fake) when already computed.
    """
    mapping = head_mapping(xray.classes or [], classes, xray.class_groups)
    if mapping is None:
        log.info("class consistency skipped: classes %s do not map onto the encoder's %s", classes, xray.classes)
        return None
    if feats_rf is not None and xray.classify is not None:
        pr, pf = (xray.predict_features(f) for f in feats_rf)
    else:
        pr, pf = xray.predict(to_tensor(real_pix, size)), xray.predict(to_tensor(fake_pix, size))
    out = {}
    for ci, name in enumerate(classes):
        r, f = real_lab == ci, fake_lab == ci
        ok = lambda pred, sel: float(np.isin(pred[sel], list(mapping[ci])).mean()) if sel.any() else None  # noqa: E731
        out[name] = {"value": ok(pf, f), "floor": ok(pr, r), "n_fake": int(f.sum()), "n_real": int(r.sum())}
    return out



def memorisation(fake_pix, train_pix, held_pix, ex: Extractor, size: int, cache: Path | None, png: Path | None,
                 feats: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict:
    """Nearest-training-image scores in pixel and feature space; writes the closest-pairs PNG.

    ``feats``: the extractor's features of (fake, train, held-out) when already computed. The
    distances among the real sets come from the cache ``cache`` when there.
    """
    from xraygan.metrics.features import cached_features
    from xraygan.metrics.memorisation import cached_reference, memorisation_scores, reference_key, save_closest_pairs

    if len(held_pix) < 2 or len(train_pix) < 2:
        raise XrayganError(f"memorisation needs at least 2 training and 2 held-out real images, got {len(train_pix)} and {len(held_pix)}")
    unit = lambda p: to_unit(p).reshape(len(p), -1)  # noqa: E731
    ref = cached_reference(unit(train_pix), unit(held_pix), reference_key(train_pix, held_pix, "pixel"), cache)
    pixel = memorisation_scores(unit(fake_pix), unit(train_pix), None, reference=ref)
    if feats is None:
        feats = cached_features(fake_pix, ex, size, None), cached_features(train_pix, ex, size, cache), cached_features(held_pix, ex, size, cache)
    f_fake, f_train, f_held = feats
    if ex.standardise:
        mu, sd = f_train.mean(0), f_train.std(0) + 1e-12
        f_fake, f_train, f_held = ((f - mu) / sd for f in (f_fake, f_train, f_held))
    space = f"{ex.name}|{ex.fingerprint}|{size}|{ex.standardise}"
    ref = cached_reference(f_train, f_held, reference_key(train_pix, held_pix, space), cache)
    feat = memorisation_scores(f_fake, f_train, None, reference=ref)
    d, idx = pixel.pop("_fake_nn")
    feat.pop("_fake_nn")
    out = {"pixel": pixel, "feature": feat, "closest_pairs_png": None}
    if png is not None:
        out["closest_pairs_png"] = str(save_closest_pairs(png, fake_pix, train_pix, d, idx))
    return out


def heldout_subset(n_held: int, max_heldout: int, seed: int) -> np.ndarray:
    """Rows of the held-out set memorisation uses: all, or ``max_heldout`` random ones (sorted)."""
    if n_held > max_heldout:
        return np.sort(np.random.default_rng(seed).permutation(n_held)[:max_heldout])
    return np.arange(n_held)
