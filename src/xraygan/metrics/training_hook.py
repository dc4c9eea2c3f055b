"""Evaluation glue for trained runs: sampling a run for ``xraygan evaluate RUN`` and the
``xraygan train --eval-every K`` hook that watches for collapse and keeps ``checkpoints/best.pt``.

The trainer (:mod:`xraygan.training.loop`) is handed :func:`make_eval_hook` (by
:func:`xraygan.workflow.train`) and calls the returned callback with its loop context after every step; the callback acts every K steps.

What the hook reads (honest selection, issue 12):

- real images: only those of the splits the run trains on (``cfg.split``, default ``train``; and
  ``--label`` when given): never a validation or test image;
- synthetic images: latents from ``seed + SELECTION_SEED_OFFSET``, a stream of its own, so the
  images that choose ``best.pt`` are never the ones :func:`sample_run` scores for a report
  (``seed + REPORT_SEED_OFFSET``).

Every evaluation writes to ``metrics.jsonl`` (and TensorBoard), and prints one progress line: the
pooled Frechet distance (``fd_xray``) beside its floor, and per class (``pc_<metric>_<class>``
beside ``pc_<metric>_<class>_floor``) precision, recall, density, coverage, FD and intra-class
diversity (``pixel_std``, the mean per-pixel standard deviation across the class's images). The
floor of each is the same metric for a second, disjoint set of real training images of the class
at the same n. A class whose recall is below half its floor is warned about (``collapse``).

Selection criterion (``select_score``, lower is better)::

    select_score = (FD / FD_floor) / max(r_min, 0.05),   r_min = min over classes of min(1, recall_c / recall_floor_c)

i.e. the pooled FD in units of its real-vs-real floor, divided by the worst class's recall
relative to real data. A snapshot that keeps every class as diverse as real data (r_min = 1) is
judged by its FD alone; one whose worst class lost half its recall must have half the FD to win;
a collapsed class (r_min ~ 0) multiplies the score by up to 20. ``best.pt`` is the snapshot with
the lowest ``select_score`` (``select_best`` in the record).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from xraygan.errors import XrayganError
from xraygan.metrics.registry import METRICS
from xraygan.metrics.evaluate import (REPORT_SEED_OFFSET, SELECTION_SEED_OFFSET, Images, _resize_pixels, draw_sample,  # noqa: F401
                                      labels_like, sample_run, sampler_images, to_uint8_pixels)

log = logging.getLogger(__name__)
SELECT = METRICS["select_score"]  # lower is better (the registry says so; best.pt keeps the best)
MIN_RECALL_RATIO = 0.05  # the floor of r_min in the selection score


def selection_score(fd: float, fd_floor: float, r_min: float) -> float:
    """The documented selection criterion (module docstring); its direction is ``METRICS["select_score"]``."""
    import math

    if not math.isfinite(fd):
        return float("inf")
    q = fd / max(fd_floor, 1e-12)
    r = r_min if math.isfinite(r_min) else 1.0
    return float(q / max(r, MIN_RECALL_RATIO))


class EvalHook:
    """Every ``every`` steps: pooled FD and per-class collapse scores of the EMA generator against
    real training images; keeps best.pt at the lowest :func:`selection_score`.

    ``real`` must hold only images the run trains on (:func:`make_eval_hook` selects them). The
    returned record has ``fd_xray`` (plus ``fd_xray_floor`` and ``fd_xray_n`` the first time),
    ``select_score``, ``select_best``, ``fd_xray_best`` (the FD of the snapshot in best.pt),
    ``min_recall_ratio``, the per-class ``pc_*`` keys and ``collapse`` (classes below half their
    recall floor).
    """

    def __init__(self, real: Images, every: int, n: int = 2000, seed: int = 0, device: str = "auto",
                 best_so_far: float = float("inf"), features: str = "xray", cache: Path | None = None,
                 fd_best: float | None = None, splits: tuple[str, ...] = ("train",)):
        """``cache``: feature cache folder for the real images (None: no cache), as ``xraygan evaluate``'s."""
        from xraygan.metrics.evaluate import resolve_extractor
        from xraygan.metrics.features import cached_features
        from xraygan.metrics.frechet import feature_stats, frechet_distance
        if every < 1:
            raise XrayganError(f"--eval-every {every}: must be positive")
        self.every, self.seed, self.real, self.splits = every, seed, real, tuple(splits)
        self.extractor = resolve_extractor(features, device, None, None, seed)
        s = draw_sample(real.labels, real.labels, n, seed)
        self.n, self.sample = s.n, s
        size = real.pixels.shape[-1]
        self.fa = cached_features(real.pixels[s.a], self.extractor, size, cache)
        self.fb = cached_features(real.pixels[s.b], self.extractor, size, cache)
        self.stats = feature_stats(self.fa)
        self.floor = frechet_distance(*self.stats, *feature_stats(self.fb))
        self.best, self.fd_best = best_so_far, fd_best
        self._floor_logged = False

    def fake_images(self, sampler) -> Images:
        """The selection sample: ``n`` images with the real class shares, from the selection latents."""
        imgs = sampler_images(sampler, self.real, self.n, self.seed + SELECTION_SEED_OFFSET)
        return Images(_resize_pixels(imgs.pixels, self.real.pixels.shape[-1]), imgs.labels, imgs.classes)

    def groups(self, fake: Images) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """class -> (positions in half A, positions in half B, positions in the fake sample); one
        group ``all`` for an unconditional sampler."""
        la, lb = self.real.labels[self.sample.a], self.real.labels[self.sample.b]
        if len(fake.classes) <= 1:
            return {fake.classes[0] if fake.classes else "all": (np.arange(len(la)), np.arange(len(lb)), np.arange(len(fake.labels)))}
        out = {}
        lower = [c.lower() for c in self.real.classes]
        rng = np.random.default_rng(self.seed + 11)
        for fi, name in enumerate(fake.classes):
            if name.lower() not in lower:
                continue
            ci = lower.index(name.lower())
            a, b, f = np.flatnonzero(la == ci), np.flatnonzero(lb == ci), np.flatnonzero(fake.labels == fi)
            m = min(len(a), len(b), len(f))
            if m < 2:
                continue
            from xraygan.metrics.per_class import random_subset

            out[name] = (random_subset(a, m, rng), random_subset(b, m, rng), random_subset(f, m, rng))
        return out

    def evaluate(self, sampler) -> dict:
        """Scores of one snapshot (see the class docstring)."""
        from xraygan.metrics.features import to_tensor
        from xraygan.metrics.frechet import feature_stats, frechet_distance
        from xraygan.metrics.per_class import class_scores, collapse_warnings, flat_record, min_recall_ratio

        fake = self.fake_images(sampler)
        ff = self.extractor.features(to_tensor(fake.pixels))
        fd = frechet_distance(*self.stats, *feature_stats(ff))
        pa = self.real.pixels[self.sample.a]
        per_class = {}
        for name, (a, b, f) in self.groups(fake).items():
            per_class[name] = class_scores(self.fa[a], ff[f], self.fb[b], fake.pixels[f], pa[a])
        r_min = min_recall_ratio(per_class)
        score = selection_score(fd, self.floor, r_min)
        rec = {"fd_xray": fd, "select_score": round(score, 5), "min_recall_ratio": round(r_min, 4), **flat_record(per_class)}
        return {"record": rec, "per_class": per_class, "warnings": collapse_warnings(per_class), "score": score}

    def fd(self, sampler) -> float:
        """Pooled FD of the selection sample of ``sampler`` against the real training images."""
        from xraygan.metrics.features import to_tensor
        from xraygan.metrics.frechet import feature_stats, frechet_distance

        fake = self.fake_images(sampler)
        return frechet_distance(*self.stats, *feature_stats(self.extractor.features(to_tensor(fake.pixels))))

    def __call__(self, ctx) -> dict | None:
        if ctx.step % self.every != 0:
            return None
        ev = self.evaluate(ctx.sampler())
        out = dict(ev["record"])
        if SELECT.improves(ev["score"], self.best):
            self.best, self.fd_best = ev["score"], out["fd_xray"]
            ctx.save_checkpoint(ctx.run.best)
            out["best_step"] = ctx.step
        out["select_best"] = round(self.best, 5)
        out["fd_xray_best"] = self.fd_best
        out["collapse"] = [w.split()[1] for w in ev["warnings"]]
        if not self._floor_logged:
            out["fd_xray_floor"], out["fd_xray_n"] = self.floor, self.n
            out["eval_splits"] = list(self.splits)
            self._floor_logged = True
        log.info("%s", progress_line(ctx.step, out["fd_xray"], self.floor, ev["per_class"], "best -> best.pt" if "best_step" in out else ""))
        for w in ev["warnings"]:
            log.warning("step %d: %s", ctx.step, w)
        return out


def progress_line(step: int, fd: float, floor: float, per_class: dict, note: str = "") -> str:
    """``step S: FD x (floor f) | CLASS P v/f R v/f D v/f C v/f std v/f | ...``."""
    parts = [f"step {step}: FD {fd:.4g} (floor {floor:.3g})"]
    for name, e in per_class.items():
        cells = []
        for key, m in (("P", "precision"), ("R", "recall"), ("D", "density"), ("C", "coverage"), ("std", "pixel_std")):
            v, f = e.get(m, {}).get("value"), e.get(m, {}).get("floor")
            if v is not None:
                cells.append(f"{key} {v:.2f}/{f:.2f}" if f is not None else f"{key} {v:.2f}")
        parts.append(f"{name} " + " ".join(cells))
    return " | ".join(parts) + (f" ({note})" if note else "")


def make_eval_hook(cfg, run_dir: str | Path, n: int = 2000) -> EvalHook:
    """The ``--eval-every`` callback for a :class:`xraygan.training.config.TrainConfig` run.

    Only images of the run's training split(s) (``cfg.split``) and label are read.
    """
    from xraygan.data.dataset import PreparedDataset
    from xraygan.training.rundir import RunDir, read_metrics

    ds = PreparedDataset.open(cfg.data)
    splits = tuple(cfg.split or ("train",))
    idx = ds.indices(split=list(splits), label=cfg.label)
    if len(idx) < 4:
        raise XrayganError(f"--eval-every needs at least 4 images in split(s) {','.join(splits)}, found {len(idx)}")
    size = int(cfg.size or ds.size)
    real = Images(_resize_pixels(np.asarray(ds.pixels()[idx]), size), ds.labels[idx], ds.classes)
    recs = [r for r in read_metrics(RunDir(run_dir)) if r.get("select_score") is not None]
    best_rec = min(recs, key=lambda r: float(r["select_score"]), default=None)
    from xraygan.metrics.features import default_cache_dir

    return EvalHook(real, cfg.eval_every, n=n, seed=cfg.seed, device=cfg.device,
                    best_so_far=float(best_rec["select_score"]) if best_rec else float("inf"),
                    fd_best=float(best_rec["fd_xray"]) if best_rec else None, cache=default_cache_dir(), splits=splits)
