"""``evaluate``: how real, how diverse and how novel synthetic X-rays are, each beside its floor.

Every score of the synthetic set against real set A is printed beside the *floor*: the same
metric between two disjoint halves A and B of the real data at the same n (Frechet distance,
KID, precision/recall, density/coverage), or the same statistic within the real set (SSIM
diversity, class consistency). Per-class results use the class subsets of the same samples.
The metrics live in :mod:`~xraygan.metrics.frechet`, :mod:`~xraygan.metrics.prdc`,
:mod:`~xraygan.metrics.diversity` and :mod:`~xraygan.metrics.memorisation`.
"""
from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xraygan.errors import UsageError, XrayganError
from xraygan.metrics.features import Extractor, cached_features, default_cache_dir, get_extractor, to_tensor
from xraygan.utils.pixels import to_uint8, to_uint8_mul_add, to_unit

log = logging.getLogger(__name__)

PR_K, DC_K = 3, 5


@dataclass
class Sample:
    """Indices into the real set (halves ``a`` and ``b``) and the fake set, all of length ``n``."""

    a: np.ndarray
    b: np.ndarray
    fake: np.ndarray

    @property
    def n(self) -> int:
        return len(self.a)


def draw_sample(real_labels: np.ndarray, fake_labels: np.ndarray, n: int, seed: int) -> Sample:
    """Disjoint real halves and a fake sample, ``min(n, len(real) // 2, len(fake))`` each."""
    rng = np.random.default_rng(seed)
    m = min(n, len(real_labels) // 2, len(fake_labels))
    if m < 2:
        raise XrayganError(f"too few images to evaluate: {len(real_labels)} real and {len(fake_labels)} synthetic; need at least 4 real and 2 synthetic")
    pr, pf = rng.permutation(len(real_labels)), rng.permutation(len(fake_labels))
    return Sample(np.sort(pr[:m]), np.sort(pr[m:2 * m]), np.sort(pf[:m]))


def class_sample(s: Sample, real_labels: np.ndarray, fake_labels: np.ndarray, c: int, seed: int = 0) -> Sample:
    """The class-``c`` parts of ``s``, cut to a common n by *random* subsets (seed ``seed + c``,
    recorded as ``options.seed``), never by keeping the lowest indices."""
    from xraygan.metrics.per_class import random_subset

    a, b, f = s.a[real_labels[s.a] == c], s.b[real_labels[s.b] == c], s.fake[fake_labels[s.fake] == c]
    m = min(len(a), len(b), len(f))
    rng = np.random.default_rng([int(seed), int(c), 1])
    return Sample(random_subset(a, m, rng), random_subset(b, m, rng), random_subset(f, m, rng))


MIN_REPORT_CLASS = 200  # below this many test images of a class, its report set is val + test
MIN_STABLE_CLASS_N = 100  # per-class n below which a warning says the estimate is unstable
BOOTSTRAP = 200  # patient-bootstrap resamples for the 95% intervals


def bootstrap_ci(fa: np.ndarray, ff: np.ndarray, patients: np.ndarray, n_boot: int = BOOTSTRAP, seed: int = 0) -> dict:
    """Patient-bootstrap 95% intervals of precision, recall, density, coverage and FD of fakes
    ``ff`` against real features ``fa`` whose images belong to ``patients`` (aligned with ``fa``).

    Whole patients of the real set are resampled with replacement (all images of a drawn patient
    come along); the k-NN radii are those of the full sets, so each resample re-weights fixed
    per-image indicators (recall, coverage, density) or the union of real balls (precision).
    """
    from xraygan.metrics.frechet import frechet_distance_features
    from xraygan.metrics.prdc import knn_radii, pairwise_distances

    if len(fa) <= DC_K or len(ff) <= DC_K:
        return {}
    d = pairwise_distances(fa, ff)  # (n_real, n_fake)
    r_real_pr, r_real_dc, r_fake = knn_radii(fa, PR_K), knn_radii(fa, DC_K), knn_radii(ff, PR_K)
    in_real_pr = d <= r_real_pr[:, None]
    in_real_dc = d <= r_real_dc[:, None]
    rec_i = (d <= r_fake[None, :]).any(axis=1)
    cov_i = in_real_dc.any(axis=1)
    den_i = in_real_dc.sum(axis=1) / (DC_K * d.shape[1])
    groups = {}
    for i, p in enumerate(patients):
        groups.setdefault(p, []).append(i)
    members = list(groups.values())
    rng = np.random.default_rng([int(seed), 2])
    out = {k: [] for k in ("precision", "recall", "density", "coverage", "fd")}
    for _ in range(n_boot):
        pick = rng.integers(len(members), size=len(members))
        sel = np.concatenate([members[j] for j in pick])
        out["precision"].append(in_real_pr[np.unique(sel)].any(axis=0).mean())
        out["recall"].append(rec_i[sel].mean())
        out["coverage"].append(cov_i[sel].mean())
        out["density"].append(den_i[sel].sum() * len(fa) / len(sel))
        out["fd"].append(frechet_distance_features(fa[sel], ff) if len(np.unique(sel)) > 1 else np.nan)
    return {k: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))] for k, v in out.items()}


def report_real_set(real_path: str | Path, full: "Images") -> tuple["Images", np.ndarray, dict]:
    """The held-out real images a run is reported on: per class the test split, or val + test
    when the test split has fewer than :data:`MIN_REPORT_CLASS` images of the class.

    ``full`` is the whole prepared dataset (manifest order). Returns (images, patient ids, {class: splits}).
    """
    from xraygan.data.dataset import PreparedDataset

    ds = PreparedDataset.open(real_path)
    keep, used = [], {}
    for ci, name in enumerate(ds.classes):
        test = ds.indices(split="test", label=name)
        if len(test) >= MIN_REPORT_CLASS:
            keep.append(test)
            used[name] = "test"
        else:
            keep.append(ds.indices(split=["val", "test"], label=name))
            used[name] = "val+test"
    idx = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
    return Images(full.pixels[idx], full.labels[idx], full.classes), np.asarray(ds.patients, dtype=object)[idx], used


def compare(real: np.ndarray, fake: np.ndarray, kid_subsets: int, kid_subset_size: int, seed: int) -> dict:
    """Feature-space scores of ``fake`` against ``real`` (both (n, d)); None where n is too small."""
    from xraygan.metrics.frechet import KID_MIN_N, frechet_distance_features, kernel_inception_distance
    from xraygan.metrics.prdc import density_coverage, precision_recall

    n = min(len(real), len(fake))
    out: dict = {"fd": None, "kid": None, "kid_std": None, "precision": None, "recall": None, "density": None, "coverage": None}
    if n >= 2:
        out["fd"] = frechet_distance_features(real, fake)
    if n >= KID_MIN_N:
        out["kid"], out["kid_std"] = kernel_inception_distance(real, fake, kid_subsets, kid_subset_size, seed)
    if n > PR_K:
        out.update(precision_recall(real, fake, PR_K))
    if n > DC_K:
        out.update(density_coverage(real, fake, DC_K))
    return out


def scores_with_floor(fa: np.ndarray, fb: np.ndarray, ff: np.ndarray, opts: dict) -> dict:
    """{metric: {"value": fake vs A, "floor": B vs A}} for every feature metric."""
    val = compare(fa, ff, opts["kid_subsets"], opts["kid_subset_size"], opts["seed"])
    flo = compare(fa, fb, opts["kid_subsets"], opts["kid_subset_size"], opts["seed"])
    out = {k: {"value": val[k], "floor": flo[k]} for k in val if k != "kid_std"}
    out["kid"].update(std=val["kid_std"], floor_std=flo["kid_std"])
    return out


def _diversity(real_pix: np.ndarray, fake_pix: np.ndarray, pairs: int, seed: int) -> dict:
    from xraygan.metrics.diversity import mean_pairwise_ssim

    if min(len(real_pix), len(fake_pix)) < 2 or pairs <= 0:
        return {"value": None, "floor": None}
    f, r = mean_pairwise_ssim(fake_pix, pairs, seed), mean_pairwise_ssim(real_pix, pairs, seed)
    return {"value": f["mean"], "floor": r["mean"], "std": f["std"], "floor_std": r["std"], "pairs": pairs, "method": f["method"]}


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


def provenance(extractor: Extractor) -> dict:
    """Library versions and the extractor's identity, recorded in every result."""
    import scipy
    import torch
    import torchvision

    from xraygan import __version__

    return {
        "features": extractor.describe(),
        "versions": {"xraygan": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "numpy": np.__version__, "scipy": scipy.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def stable_n(extractor: Extractor) -> int:
    """The n below which feature-space scores are warned about (FD needs n well above d)."""
    return max(2 * extractor.dim, 500)


def resolve_extractor(features: str | Extractor, device: str, inception_weights, encoder_path, seed: int) -> Extractor:
    if isinstance(features, Extractor):
        return features
    from xraygan.utils.runtime import resolve_device

    return get_extractor(features, resolve_device(device), inception_weights, encoder_path, seed)


def cache_dir_option(cache: str | Path | bool | None) -> Path | None:
    """``None``/``True`` -> default cache folder, ``False`` -> no cache, else the given folder."""
    if cache is False:
        return None
    return default_cache_dir() if cache in (None, True) else Path(cache)


def feats(pix: np.ndarray, ex: Extractor, size: int, cache: Path | None) -> np.ndarray:
    return cached_features(pix, ex, size, cache)


def memorisation(fake_pix, train_pix, held_pix, ex: Extractor, size: int, cache: Path | None, png: Path | None, seed: int, max_heldout: int) -> dict:
    """Nearest-training-image scores in pixel and feature space; writes the closest-pairs PNG."""
    from xraygan.metrics.memorisation import memorisation_scores, save_closest_pairs

    if len(held_pix) > max_heldout:
        held_pix = held_pix[np.sort(np.random.default_rng(seed).permutation(len(held_pix))[:max_heldout])]
    if len(held_pix) < 2 or len(train_pix) < 2:
        raise XrayganError(f"memorisation needs at least 2 training and 2 held-out real images, got {len(train_pix)} and {len(held_pix)}")
    unit = lambda p: to_unit(p).reshape(len(p), -1)  # noqa: E731
    pixel = memorisation_scores(unit(fake_pix), unit(train_pix), unit(held_pix))
    f_fake, f_train, f_held = feats(fake_pix, ex, size, None), feats(train_pix, ex, size, cache), feats(held_pix, ex, size, cache)
    if ex.standardise:
        mu, sd = f_train.mean(0), f_train.std(0) + 1e-12
        f_fake, f_train, f_held = ((f - mu) / sd for f in (f_fake, f_train, f_held))
    feat = memorisation_scores(f_fake, f_train, f_held)
    d, idx = pixel.pop("_fake_nn")
    feat.pop("_fake_nn")
    out = {"pixel": pixel, "feature": feat, "closest_pairs_png": None}
    if png is not None:
        out["closest_pairs_png"] = str(save_closest_pairs(png, fake_pix, train_pix, d, idx))
    return out


def evaluate_sets(real, fake, *, train=None, heldout=None, features: str | Extractor = "xray", n: int = 2000, seed: int = 0,
                  ssim_pairs: int = 2000, kid_subsets: int = 100, kid_subset_size: int = 1000, device: str = "auto",
                  inception_weights=None, encoder_path=None, cache: str | Path | bool | None = None,
                  pairs_png: str | Path | None = None, per_class: bool = True, patients: np.ndarray | None = None,
                  bootstrap: int = BOOTSTRAP) -> dict:
    """Evaluate image sets (``xraygan.data.sources.ImageSet``-like: ``pixels`` uint8 (N,H,W) at one
    size, ``labels``, ``classes``) and return the result dict; see :func:`evaluate` for the options.

    ``fake.labels`` index ``real.classes``. ``train``/``heldout`` enable memorisation.
    ``patients`` (aligned with ``real``) adds a patient-bootstrap 95% interval (``ci95``, ``bootstrap``
    resamples) to every per-class entry.
    """
    t0 = time.time()
    size = int(real.pixels.shape[-1])
    if fake.pixels.shape[1:] != real.pixels.shape[1:]:
        raise XrayganError(f"synthetic images are {fake.pixels.shape[1:]} but real are {real.pixels.shape[1:]}; resize both to one size first")
    ex = resolve_extractor(features, device, inception_weights, encoder_path, seed)
    cache_dir = cache_dir_option(cache)
    opts = {"seed": seed, "kid_subsets": kid_subsets, "kid_subset_size": kid_subset_size, "ssim_pairs": ssim_pairs, "n_requested": n}
    s = draw_sample(real.labels, fake.labels, n, seed)
    warnings = []
    if s.n < stable_n(ex):
        warnings.append(f"n={s.n} is small for {ex.dim}-d features: Frechet distance and precision/recall are unstable below about n={stable_n(ex)}; use more images (KID is unbiased)")
    real_idx = np.concatenate([s.a, s.b])
    rf = feats(real.pixels[real_idx], ex, size, cache_dir)
    ff = feats(fake.pixels[s.fake], ex, size, None)
    if ex.standardise:  # features on very different scales (radiomics): z-score by the real sample
        mu, sd = rf.mean(0), rf.std(0) + 1e-12
        rf, ff = (rf - mu) / sd, (ff - mu) / sd
    fa, fb = rf[:s.n], rf[s.n:]
    res = {"n": s.n, "resolution": size, **provenance(ex), "options": opts, "warnings": warnings}
    res["overall"] = scores_with_floor(fa, fb, ff, opts)
    res["overall"]["ssim"] = _diversity(real.pixels[s.a], fake.pixels[s.fake], ssim_pairs, seed)
    res["per_class"] = {}
    pos = {int(i): k for k, i in enumerate(real_idx)}
    fpos = {int(i): k for k, i in enumerate(s.fake)}
    for ci, name in enumerate(real.classes if per_class else []):
        c = class_sample(s, real.labels, fake.labels, ci, seed)
        if c.n < 2:
            warnings.append(f"class {name}: only {c.n} image(s) per side; per-class scores skipped")
            continue
        if c.n < MIN_STABLE_CLASS_N:
            warnings.append(f"class {name}: only {c.n} real images per side; its per-class scores are unstable (see their 95% intervals)")
        pick = lambda idx, p, f: f[[p[int(i)] for i in idx]]  # noqa: E731
        entry = {"n": c.n, **scores_with_floor(pick(c.a, pos, rf), pick(c.b, pos, rf), pick(c.fake, fpos, ff), opts)}
        if patients is not None and bootstrap > 0:
            entry["n_patients"] = int(len(set(patients[c.a])))
            entry["ci95"] = bootstrap_ci(pick(c.a, pos, rf), pick(c.fake, fpos, ff), patients[c.a], bootstrap, seed + ci)
        entry["ssim"] = _diversity(real.pixels[c.a], fake.pixels[c.fake], ssim_pairs, seed)
        res["per_class"][name] = entry
    xray = ex if ex.name == "xray" else _try_xray(device, encoder_path)
    if xray is not None and heldout is not None and len(heldout.pixels) >= 2:
        # the shipped encoder was trained on training-split patients: read held-out real images for the floor
        res["class_consistency"] = class_consistency(xray, heldout.pixels, heldout.labels, fake.pixels[s.fake], fake.labels[s.fake], real.classes, size)
        res["class_consistency_floor_set"] = "held-out real images"
    elif xray is not None:
        res["class_consistency"] = class_consistency(xray, real.pixels[s.a], real.labels[s.a], fake.pixels[s.fake], fake.labels[s.fake],
                                                     real.classes, size, (fa, ff) if xray is ex else None)
        res["class_consistency_floor_set"] = "real half A"
    if train is not None and heldout is not None:
        res["memorisation"] = memorisation(fake.pixels[s.fake], train.pixels, heldout.pixels, ex, size, cache_dir, pairs_png, seed, max(s.n, 2))
    res["seconds"] = round(time.time() - t0, 2)
    for w in warnings:
        log.warning("%s", w)
    return res


def _try_xray(device: str, encoder_path=None) -> Extractor | None:
    """The xray encoder for class consistency when another extractor gives the features."""
    try:
        return resolve_extractor("xray", device, None, encoder_path, 0)
    except XrayganError as e:
        log.info("class consistency skipped: %s", e)
        return None


@dataclass
class Images:
    """Minimal image set: ``pixels`` uint8 (N, H, W), ``labels`` int64 (N,) indexing ``classes``."""

    pixels: np.ndarray
    labels: np.ndarray
    classes: list[str]


def _resize_pixels(pix: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W) -> uint8 (N, size, size) with the one resizer (``resize_images``)."""
    if pix.shape[1:] == (size, size):
        return pix
    out = [to_uint8_mul_add(to_tensor(pix[i:i + 512], size)[:, 0]).numpy() for i in range(0, len(pix), 512)]
    return np.concatenate(out)


def _open(path: str | Path, what: str, split=None) -> Images:
    from xraygan.data.sources import MixedSizesError, open_image_set

    try:
        s = open_image_set(path, split=split)
    except MixedSizesError:
        s = open_image_set(path, size=256, split=split)  # mixed sizes: bring to one size first
        log.warning("%s %s: images of different sizes were resized to 256 px first", what, path)
    if len(s.pixels) == 0:
        raise XrayganError(f"{what} {path}: no images; give a prepared dataset or a folder of class sub-folders with PNGs")
    return Images(np.asarray(s.pixels), np.asarray(s.labels, np.int64), list(s.classes))


def align_classes(fake: Images, classes: list[str], warnings: list[str]) -> Images:
    """Re-index ``fake`` labels onto ``classes`` by name (case-insensitive); unmatched -> -1."""
    lower = [c.lower() for c in classes]
    mapped = [lower.index(c.lower()) if c.lower() in lower else -1 for c in fake.classes]
    if -1 in mapped:
        warnings.append(f"synthetic class folder(s) {[c for c, m in zip(fake.classes, mapped) if m < 0]} match no real class "
                        f"({', '.join(classes)}); those images count only in the overall scores")
    lab = np.asarray(mapped, np.int64)[fake.labels] if len(fake.classes) else fake.labels
    return Images(fake.pixels, lab, classes)


def _is_prepared(path) -> bool:
    return path is not None and (Path(path) / "dataset.json").is_file()


def memorisation_sets(real: str | Path, real_set: Images, train: str | Path | None, size: int) -> tuple[Images | None, Images | None, str | None]:
    """(train, held-out, description): ``--train`` against the real images not in it, or the real
    prepared dataset's train split against its other splits; (None, None, None) when neither applies."""
    if train is not None:
        tr = _open(train, "--train", split="train" if _is_prepared(train) else None)
        tr = Images(_resize_pixels(tr.pixels, size), tr.labels, tr.classes)
        seen = {p.tobytes() for p in tr.pixels}
        keep = np.array([p.tobytes() not in seen for p in real_set.pixels])
        return tr, Images(real_set.pixels[keep], real_set.labels[keep], real_set.classes), f"{train} vs real images not in it"
    if _is_prepared(real):
        from xraygan.data.dataset import PreparedDataset

        ds = PreparedDataset.open(real)
        tr_idx, ho_idx = ds.indices(split="train"), ds.indices(split=["val", "test"])
        if len(tr_idx) >= 2 and len(ho_idx) >= 2:
            pick = lambda idx: Images(real_set.pixels[idx], real_set.labels[idx], real_set.classes)  # noqa: E731
            return pick(tr_idx), pick(ho_idx), f"{real} split train vs val+test"
    return None, None, None


def evaluate(real: str | Path, fake: str | Path | None = None, *, train: str | Path | None = None,
             run: str | Path | None = None, checkpoint: str = "best", size: int | None = None,
             out: str | Path | None = None, report_split: bool = True, **options) -> dict:
    """Evaluate synthetic X-rays against real ones; returns the result dict (also written to ``out``).

    ``real``/``fake``/``train``: prepared datasets or folders with one sub-folder per class. With
    ``run`` instead of ``fake``, ``n`` images are sampled from the run's (EMA) generator at
    ``checkpoint`` and the result is also stored in ``RUN/eval/``. ``size``: evaluation resolution
    (default: the real images' size; the synthetic images are resized to it with the same resizer).
    Other options go to :func:`evaluate_sets` (``features``, ``n``, ``seed``, ``ssim_pairs``,
    ``kid_subsets``, ``kid_subset_size``, ``device``, ``inception_weights``, ``cache``, ``per_class``).

    A ``run`` scored against a prepared dataset is reported on held-out patients only
    (``report_split``, default on): per class the test split, or val + test when the test split
    has fewer than 200 images of the class (``report_splits`` in the result), with fresh latents
    (:data:`REPORT_SEED_OFFSET`, never those of checkpoint
    selection), per-class n and patient-bootstrap 95% intervals (``ci95``).
    """
    if (fake is None) == (run is None):
        raise UsageError("give either --fake DIR (synthetic images) or a RUN folder to sample from, not both")
    if out is not None:  # never write into the image sets being measured (RUN/eval/ is the run's own place)
        from xraygan.utils.fs import refuse_overlap

        refuse_overlap(out, [real, fake, train], "--out")
    warnings: list[str] = []
    real_set = _open(real, "--real")
    eval_size = int(size or real_set.pixels.shape[-1])
    resized = {}
    if real_set.pixels.shape[-1] != eval_size:
        resized["real"] = [int(real_set.pixels.shape[-1]), eval_size]
        real_set = Images(_resize_pixels(real_set.pixels, eval_size), real_set.labels, real_set.classes)
    if run is not None:
        fake_set, run_info = sample_run(run, checkpoint, real_set, options.get("n", 2000), options.get("seed", 0), options.get("device", "auto"))
    else:
        fake_set, run_info = _open(fake, "--fake"), None
    if fake_set.pixels.shape[-1] != eval_size:
        resized["fake"] = [int(fake_set.pixels.shape[-1]), eval_size]
        warnings.append(f"synthetic images are {fake_set.pixels.shape[-1]} px; resized to {eval_size} px with the same resizer as the real ones")
        fake_set = Images(_resize_pixels(fake_set.pixels, eval_size), fake_set.labels, fake_set.classes)
    fake_set = align_classes(fake_set, real_set.classes, warnings)
    tr, ho, memo_desc = memorisation_sets(real, real_set, train, eval_size)
    png = _pairs_path(out, run, run_info)
    report_splits = None
    if run is not None and _is_prepared(real) and report_split:
        # a run is reported on held-out patients only: the test split (val + test for a small class)
        real_set, pats, report_splits = report_real_set(real, real_set)
        options.setdefault("patients", pats)
        for name, used in report_splits.items():
            if used != "test":
                warnings.append(f"class {name}: fewer than {MIN_REPORT_CLASS} test images; reported on val + test")
    res = evaluate_sets(real_set, fake_set, train=tr, heldout=ho, pairs_png=png if tr is not None else None, **options)
    res["report_splits"] = report_splits
    for w in warnings:
        log.warning("%s", w)
    res["warnings"] = warnings + res["warnings"]
    res.update(real=str(real), fake=str(fake) if fake is not None else None, run=run_info, resized=resized, memorisation_sets=memo_desc)
    if fake is not None:
        res["generated_from"] = generated_from(fake)
    return _store(res, out, run, run_info)


def generated_from(fake: str | Path) -> dict | None:
    """``{"path", "checkpoint", "step"}`` of the run that generated ``fake`` (the ``run`` and
    ``checkpoint`` columns of the ``manifest.csv`` that ``generate`` writes); ``None`` when the
    folder has no such manifest or names no single run. ``step`` is read from the checkpoint
    (``None`` when it is gone)."""
    import csv

    try:
        with open(Path(fake) / "manifest.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    runs = {r.get("run") or "" for r in rows}
    if len(runs) != 1 or not next(iter(runs)):
        return None
    ckpts = {r.get("checkpoint") or "" for r in rows}
    ckpt = next(iter(ckpts)) if len(ckpts) == 1 else ""
    step = None
    if ckpt and Path(ckpt).is_file():
        try:
            from xraygan.training.checkpoint import load_checkpoint

            step = int(load_checkpoint(ckpt)["step"])
        except Exception as e:  # noqa: BLE001 -- a damaged or foreign checkpoint only loses the step
            log.debug("%s: no step (%s)", ckpt, e)
    return {"path": next(iter(runs)), "checkpoint": ckpt, "step": step}


def _record_in_run(res: dict, source: dict) -> Path | None:
    """Also store an evaluation of a generated set in the run that generated it (``RUN/eval/``,
    atomically), so ``xraygan report RUN`` shows it; only into an existing xraygan run folder.
    Never fails the evaluation: a run that is gone or is not a run is a warning."""
    from xraygan.training.rundir import RunDir
    from xraygan.utils.fs import atomic_write_json

    rd = RunDir(source["path"])
    try:
        if not rd.root.is_dir():
            raise XrayganError(f"{rd.root}: no such folder")
        rd.read_config()  # raises when the folder is not an xraygan run
        step = source.get("step")
        name = (f"step_{step:08d}_" if isinstance(step, int) else "") + f"{res['features']['name']}_generated.json"
        path = rd.root / "eval" / name
        path.parent.mkdir(exist_ok=True)
        atomic_write_json(path, res)
        return path
    except (OSError, XrayganError) as e:
        msg = f"not recorded in the generating run {rd.root}: {e}"
        log.warning("%s", msg)
        res["warnings"].append(msg)
        return None


def _pairs_path(out, run, run_info) -> Path | None:
    if out is not None:
        return Path(out).with_suffix(".pairs.png")
    if run is not None:
        return Path(run) / "eval" / f"step_{run_info['step']:08d}.pairs.png"
    return None


def _store(res: dict, out, run, run_info) -> dict:
    from xraygan.utils.fs import atomic_write_json

    if run is not None:
        path = Path(run) / "eval" / f"step_{run_info['step']:08d}_{res['features']['name']}.json"
        atomic_write_json(path, res)
        res["stored"] = [str(path)]
    source = res.get("generated_from") if run is None else None
    if source:
        path = _record_in_run(res, source)
        if path is not None:
            res.setdefault("stored", []).append(str(path))
    if out is not None:
        atomic_write_json(out, res)
        res.setdefault("stored", []).append(str(out))
    return res


# --- sampling a run (``evaluate RUN``; the --eval-every hook of metrics.training_hook uses these too) ---
def labels_like(names: list[str], real: Images, n: int) -> list[int] | None:
    """Per-image sampler label indices with the real class shares (None: a single-label sampler)."""
    if len(names) <= 1:
        return None
    lower = [c.lower() for c in real.classes]
    counts = np.array([(real.labels == lower.index(c.lower())).sum() if c.lower() in lower else 0 for c in names], float)
    if counts.sum() == 0:
        return [i % len(names) for i in range(n)]
    per = np.floor(n * counts / counts.sum()).astype(int)
    per[np.argmax(counts)] += n - per.sum()
    return [i for i, k in enumerate(per) for _ in range(k)]


def to_uint8_pixels(x) -> np.ndarray:
    """(n, 1, S, S) float in [-1, 1] -> uint8 (n, S, S)."""
    return to_uint8(x[:, 0]).numpy()


def sampler_images(sampler, real: Images, n: int, seed: int) -> Images:
    """``n`` images from a :class:`xraygan.training.sampler.Sampler` as uint8, labelled by the sampler's names."""
    names = list(sampler.label_names)
    labels = labels_like(names, real, n)
    x = sampler.sample(n, labels, seed=seed)  # (n, 1, S, S) in [-1, 1]
    pix = to_uint8_pixels(x)
    lab = np.asarray(labels if labels is not None else [0] * n, np.int64)
    return Images(pix, lab, names)


SELECTION_SEED_OFFSET = 5_000_000  # latents that choose best.pt during training
REPORT_SEED_OFFSET = 7_000_000  # latents of `evaluate RUN` (fresh: never used by selection)


def sample_run(run: str | Path, checkpoint: str, real: Images, n: int, seed: int, device: str) -> tuple[Images, dict]:
    """Sample ``n`` images from ``run``'s EMA generator at ``checkpoint`` (class shares as in ``real``)."""
    from xraygan.run import Run

    if not (Path(run) / "config.yaml").is_file():
        raise XrayganError(f"{run}: not a run folder (no config.yaml); give a folder written by `xraygan train`, or use --fake DIR")
    sampler = Run(run).sampler(checkpoint, device=device)
    # synthetic seeds far from generate's defaults, so evaluation never reuses a shown grid
    imgs = sampler_images(sampler, real, n, seed + REPORT_SEED_OFFSET)
    return imgs, {"path": str(run), "checkpoint": sampler.checkpoint, "step": int(sampler.step)}
