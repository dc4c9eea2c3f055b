"""``evaluate``: how real, how diverse and how novel synthetic X-rays are, each beside its floor.

Every score of the synthetic set against real set A is printed beside the *floor*: the same
metric between two disjoint halves A and B of the real data at the same n (Frechet distance,
KID, precision/recall, density/coverage), or the same statistic within the real set (SSIM
diversity, class consistency). Per-class results use the class subsets of the same samples.
The metrics live in :mod:`~xraygan.metrics.frechet`, :mod:`~xraygan.metrics.prdc`,
:mod:`~xraygan.metrics.diversity` and :mod:`~xraygan.metrics.memorisation`; the image sets in
:mod:`~xraygan.metrics.image_sets`, the scores beside their floors in
:mod:`~xraygan.metrics.scores` and where results go in :mod:`~xraygan.metrics.eval_store` (all
their names are importable from here too).

Speed (docs/benchmarks.md): every image goes through the feature extractor once. The real images
of the halves, of memorisation's training and held-out sets are one pool of distinct images whose
features are cached (:class:`~xraygan.metrics.features.RealFeatures`); the synthetic features
serve FD/KID/PRDC, memorisation and class consistency (the encoder's head reads the features);
the distances among the real sets that memorisation needs are cached beside the features. The
result's ``timings`` gives the seconds of every stage.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from xraygan.errors import UsageError, XrayganError
from xraygan.metrics.eval_store import (EVAL_FORMAT, EVAL_FORMAT_VERSION, _pairs_path, check_out, _record_in_run, _store,  # noqa: F401
                                        check_evaluation, generated_from, package_version, provenance)
from xraygan.metrics.features import Extractor, RealFeatures, cached_features, default_cache_dir, get_extractor
from xraygan.metrics.image_sets import (MIN_REPORT_CLASS, REPORT_SEED_OFFSET, SELECTION_SEED_OFFSET, Images, Sample,  # noqa: F401
                                        _is_prepared, _open, _resize_pixels, align_classes, class_sample, draw_sample,
                                        labels_like, memorisation_sets, report_real_set, sample_run, sampler_images,
                                        to_uint8_pixels)
from xraygan.metrics.scores import (BOOTSTRAP, DC_K, MIN_STABLE_CLASS_N, PR_K, _diversity, bootstrap_ci,  # noqa: F401
                                    class_consistency, compare, head_mapping, heldout_subset, memorisation, scores_with_floor)

log = logging.getLogger(__name__)


class Stages:
    """Wall seconds per stage of an evaluation (``timings`` in the result; a stage entered again
    adds up), with a progress bar over the distinct stages."""

    def __init__(self, total: int):
        from xraygan.utils.progress import bar

        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # process CPU seconds (all threads): the work, whatever the machine's load
        self.bar = bar(total=total, desc="evaluate", unit="stage")

    @contextmanager
    def __call__(self, name: str):
        self.bar.set_postfix_str(name)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            if name not in self.seconds:
                self.bar.update(1)
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)
            self.cpu[name] = round(self.cpu.get(name, 0.0) + time.process_time() - c0, 3)

    def close(self) -> dict[str, float]:
        self.bar.close()
        return self.seconds


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
    memo = train is not None and heldout is not None
    if memo and (len(heldout.pixels) < 2 or len(train.pixels) < 2):
        raise XrayganError(f"memorisation needs at least 2 training and 2 held-out real images, got {len(train.pixels)} and {len(heldout.pixels)}")
    st = Stages(5 + memo)
    with st("extractor"):
        ex = resolve_extractor(features, device, inception_weights, encoder_path, seed)
        xray = ex if ex.name == "xray" else _try_xray(device, encoder_path)
    cache_dir = cache_dir_option(cache)
    opts = {"seed": seed, "kid_subsets": kid_subsets, "kid_subset_size": kid_subset_size, "ssim_pairs": ssim_pairs, "n_requested": n}
    s = draw_sample(real.labels, fake.labels, n, seed)
    warnings = []
    if s.n < stable_n(ex):
        warnings.append(f"n={s.n} is small for {ex.dim}-d features: Frechet distance and precision/recall are unstable below about n={stable_n(ex)}; use more images (KID is unbiased)")
    real_idx = np.concatenate([s.a, s.b])
    with st("features"):
        fs = _features(ex, real.pixels[real_idx], fake.pixels[s.fake], train if memo else None,
                       heldout if xray is ex or memo else None, size, cache_dir)
    rf, ff = fs["real"], fs["fake"]
    if ex.standardise:  # features on very different scales (radiomics): z-score by the real sample
        mu, sd = rf.mean(0), rf.std(0) + 1e-12
        rf, ff = (rf - mu) / sd, (ff - mu) / sd
    fa, fb = rf[:s.n], rf[s.n:]
    res = {"format": EVAL_FORMAT, "format_version": EVAL_FORMAT_VERSION, "n": s.n, "resolution": size, **provenance(ex), "options": opts, "warnings": warnings}
    with st("scores"):
        res["overall"] = scores_with_floor(fa, fb, ff, opts)
    with st("ssim"):
        res["overall"]["ssim"] = _diversity(real.pixels[s.a], fake.pixels[s.fake], ssim_pairs, seed)
    res["per_class"] = _per_class(st, real, fake, s, rf, ff, real_idx, opts, patients, bootstrap, warnings) if per_class else {}
    with st("class_consistency"):
        _consistency(res, xray, ex, real, fake, s, heldout, size, fs, (fa, ff))
    if memo:
        with st("memorisation"):
            sub = heldout_subset(len(heldout.pixels), max(s.n, 2), seed)
            res["memorisation"] = memorisation(fake.pixels[s.fake], train.pixels, heldout.pixels[sub], ex, size, cache_dir, pairs_png,
                                               (fs["fake"], fs["train"], fs["heldout"][sub]))
    res["timings"] = st.close()
    res["timings_cpu"] = st.cpu
    res["seconds"] = round(time.time() - t0, 2)
    for w in warnings:
        log.warning("%s", w)
    return res


def _features(ex: Extractor, real_pix, fake_pix, train, heldout, size: int, cache_dir: Path | None) -> dict:
    """One feature pass over every image: the real halves, ``train`` and ``heldout`` (when given)
    as one cached pool of distinct images, and the synthetic sample (not cached)."""
    parts = [real_pix] + [x.pixels for x in (train, heldout) if x is not None]
    pool = RealFeatures(parts, ex, size, cache_dir)
    out = {"real": pool.part(0), "fake": cached_features(fake_pix, ex, size, None)}
    names = [k for k, x in (("train", train), ("heldout", heldout)) if x is not None]
    out.update({k: pool.part(i + 1) for i, k in enumerate(names)})
    return out


def _per_class(st: Stages, real, fake, s, rf, ff, real_idx, opts: dict, patients, bootstrap: int, warnings: list[str]) -> dict:
    """The per-class entries: the class parts of the same samples, their scores, intervals and SSIM."""
    seed, out = opts["seed"], {}
    pos = {int(i): k for k, i in enumerate(real_idx)}
    fpos = {int(i): k for k, i in enumerate(s.fake)}
    for ci, name in enumerate(real.classes):
        c = class_sample(s, real.labels, fake.labels, ci, seed)
        if c.n < 2:
            warnings.append(f"class {name}: only {c.n} image(s) per side; per-class scores skipped")
            continue
        if c.n < MIN_STABLE_CLASS_N:
            warnings.append(f"class {name}: only {c.n} real images per side; its per-class scores are unstable (see their 95% intervals)")
        pick = lambda idx, p, f: f[[p[int(i)] for i in idx]]  # noqa: E731
        with st("scores"):
            entry = {"n": c.n, **scores_with_floor(pick(c.a, pos, rf), pick(c.b, pos, rf), pick(c.fake, fpos, ff), opts)}
            if patients is not None and bootstrap > 0:
                entry["n_patients"] = int(len(set(patients[c.a])))
                entry["ci95"] = bootstrap_ci(pick(c.a, pos, rf), pick(c.fake, fpos, ff), patients[c.a], bootstrap, seed + ci,
                                             fd=entry["fd"]["value"])
        with st("ssim"):
            entry["ssim"] = _diversity(real.pixels[c.a], fake.pixels[c.fake], opts["ssim_pairs"], seed)
        out[name] = entry
    return out


def _consistency(res: dict, xray: Extractor | None, ex: Extractor, real, fake, s, heldout, size: int, fs: dict, fa_ff) -> None:
    """Class consistency (the encoder head's reading): on held-out real images when there are, else real half A."""
    if xray is None:
        return
    fake_pix, fake_lab = fake.pixels[s.fake], fake.labels[s.fake]
    if heldout is not None and len(heldout.pixels) >= 2:
        # the shipped encoder was trained on training-split patients: read held-out real images for the floor
        known = (fs["heldout"], fs["fake"]) if xray is ex else None
        res["class_consistency"] = class_consistency(xray, heldout.pixels, heldout.labels, fake_pix, fake_lab, real.classes, size, known)
        res["class_consistency_floor_set"] = "held-out real images"
    else:
        res["class_consistency"] = class_consistency(xray, real.pixels[s.a], real.labels[s.a], fake_pix, fake_lab,
                                                     real.classes, size, fa_ff if xray is ex else None)
        res["class_consistency_floor_set"] = "real half A"


def _try_xray(device: str, encoder_path=None) -> Extractor | None:
    """The xray encoder for class consistency when another extractor gives the features."""
    try:
        return resolve_extractor("xray", device, None, encoder_path, 0)
    except XrayganError as e:
        log.info("class consistency skipped: %s", e)
        return None



def evaluate(real: str | Path, fake: str | Path | None = None, *, train: str | Path | None = None,
             run: str | Path | None = None, checkpoint: str = "best", size: int | None = None,
             out: str | Path | None = None, report_split: bool = True, force: bool = False, **options) -> dict:
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

    An existing ``out`` (or ``OUT.pairs.png``) is refused unless ``force``, and even then unless
    xraygan evaluate wrote it (:func:`xraygan.metrics.eval_store.check_out`).
    """
    if (fake is None) == (run is None):
        raise UsageError("give either --fake DIR (synthetic images) or a RUN folder to sample from, not both")
    if out is not None:  # never write into the image sets being measured (RUN/eval/ is the run's own place)
        from xraygan.utils.fs import refuse_overlap

        refuse_overlap(out, [real, fake, train], "--out")
        check_out(out, force)
    warnings: list[str] = []
    t_open = time.perf_counter()
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
    if size is None and fake_set.pixels.shape[-1] < eval_size:  # compare at the generator's size: never upsample its images
        fake_size = int(fake_set.pixels.shape[-1])
        resized["real"] = [int(real_set.pixels.shape[-1]), fake_size]
        warnings.append(f"real images are {real_set.pixels.shape[-1]} px, synthetic {fake_size} px; the real ones were resized "
                        f"to {fake_size} px (give --size to choose the evaluation size)")
        real_set = Images(_resize_pixels(real_set.pixels, fake_size), real_set.labels, real_set.classes)
        eval_size = fake_size
    if fake_set.pixels.shape[-1] != eval_size:
        resized["fake"] = [int(fake_set.pixels.shape[-1]), eval_size]
        warnings.append(f"synthetic images are {fake_set.pixels.shape[-1]} px; resized to {eval_size} px with the same resizer as the real ones")
        fake_set = Images(_resize_pixels(fake_set.pixels, eval_size), fake_set.labels, fake_set.classes)
    fake_set = align_classes(fake_set, real_set.classes, warnings)
    tr, ho, memo_desc = memorisation_sets(real, real_set, train, eval_size)
    t_open = time.perf_counter() - t_open  # decoding and resizing (sampling too, for a RUN)
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
    res["timings"] = {"open": round(t_open, 3), **res["timings"]}
    for w in warnings:
        log.warning("%s", w)
    res["warnings"] = warnings + res["warnings"]
    res.update(real=str(real), fake=str(fake) if fake is not None else None, run=run_info, resized=resized, memorisation_sets=memo_desc)
    if fake is not None:
        res["generated_from"] = generated_from(fake)
    return _store(res, out, run, run_info)
