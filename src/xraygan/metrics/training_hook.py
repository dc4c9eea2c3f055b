"""Evaluation glue for trained runs: sampling a run for ``xraygan evaluate RUN`` and the
``xraygan train --eval-every K`` hook that logs the Frechet distance (``xray`` features) of the EMA
generator to ``metrics.jsonl`` and keeps ``checkpoints/best.pt`` at the lowest one.

The trainer (:mod:`xraygan.training.loop`) imports :func:`make_eval_hook` and calls the returned
callback with its loop context after every step; the callback acts every K steps.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from xraygan.errors import XrayganError
from xraygan.metrics.evaluate import Images, _resize_pixels, draw_sample

log = logging.getLogger(__name__)


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


def sampler_images(sampler, real: Images, n: int, seed: int) -> Images:
    """``n`` images from a :class:`xraygan.generate.Sampler` as uint8, labelled by the sampler's names."""
    names = list(sampler.label_names)
    labels = labels_like(names, real, n)
    x = sampler.sample(n, labels, seed=seed)  # (n, 1, S, S) in [-1, 1]
    pix = ((x[:, 0] + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    lab = np.asarray(labels if labels is not None else [0] * n, np.int64)
    return Images(pix, lab, names)


def sample_run(run: str | Path, checkpoint: str, real: Images, n: int, seed: int, device: str) -> tuple[Images, dict]:
    """Sample ``n`` images from ``run``'s EMA generator at ``checkpoint`` (class shares as in ``real``)."""
    from xraygan.generate import load_generator

    if not (Path(run) / "config.yaml").is_file():
        raise XrayganError(f"{run}: not a run folder (no config.yaml); give a folder written by `xraygan train`, or use --fake DIR")
    sampler = load_generator(run, checkpoint, device=device)
    # synthetic seeds far from generate's defaults, so evaluation never reuses a shown grid
    imgs = sampler_images(sampler, real, n, seed + 7_000_000)
    return imgs, {"path": str(run), "checkpoint": sampler.checkpoint, "step": int(sampler.step)}


class EvalHook:
    """Every ``every`` steps: FD of ``n`` EMA samples against fixed real features; keeps best.pt.

    Returns ``{"fd_xray": ..., "fd_xray_best": ...}`` for the step's metrics record (plus
    ``fd_xray_floor``, the FD between two disjoint real halves at the same n, the first time).
    """

    def __init__(self, real: Images, every: int, n: int = 2000, seed: int = 0, device: str = "auto",
                 best_so_far: float = float("inf"), features: str = "xray", cache: Path | None = None):
        """``cache``: feature cache folder for the real images (None: no cache), as ``xraygan evaluate``'s."""
        from xraygan.metrics.evaluate import resolve_extractor
        from xraygan.metrics.features import cached_features
        from xraygan.metrics.frechet import feature_stats, frechet_distance

        if every < 1:
            raise XrayganError(f"--eval-every {every}: must be positive")
        self.every, self.seed, self.real = every, seed, real
        self.extractor = resolve_extractor(features, device, None, None, seed)
        s = draw_sample(real.labels, real.labels, n, seed)
        self.n = s.n
        size = real.pixels.shape[-1]
        fa = cached_features(real.pixels[s.a], self.extractor, size, cache)
        fb = cached_features(real.pixels[s.b], self.extractor, size, cache)
        self.stats = feature_stats(fa)
        self.floor = frechet_distance(*self.stats, *feature_stats(fb))
        self.best = best_so_far
        self._floor_logged = False

    def fd(self, sampler) -> float:
        """FD of ``n`` samples of ``sampler`` (a :class:`xraygan.generate.Sampler`) against the real set."""
        from xraygan.metrics.features import to_tensor
        from xraygan.metrics.frechet import feature_stats, frechet_distance

        imgs = sampler_images(sampler, self.real, self.n, self.seed + 7_000_000)
        pix = _resize_pixels(imgs.pixels, self.real.pixels.shape[-1])
        return frechet_distance(*self.stats, *feature_stats(self.extractor.features(to_tensor(pix))))

    def __call__(self, ctx) -> dict | None:
        if ctx.step % self.every != 0:
            return None
        value = self.fd(ctx.sampler())
        out = {"fd_xray": value}
        if value < self.best:
            self.best = value
            ctx.save_checkpoint(ctx.run.best)
            log.info("step %d: FD (xray) %.4g, new best -> %s", ctx.step, value, ctx.run.best)
        out["fd_xray_best"] = self.best
        if not self._floor_logged:
            out["fd_xray_floor"], out["fd_xray_n"] = self.floor, self.n
            self._floor_logged = True
        return out


def make_eval_hook(cfg, run_dir: str | Path, n: int = 2000) -> EvalHook:
    """The ``--eval-every`` callback for a :class:`xraygan.training.config.TrainConfig` run."""
    from xraygan.data.dataset import PreparedDataset
    from xraygan.training.rundir import RunDir, read_metrics

    ds = PreparedDataset.open(cfg.data)
    idx = ds.indices(label=cfg.label) if cfg.label is not None else np.arange(len(ds))
    size = int(cfg.size or ds.size)
    real = Images(_resize_pixels(np.asarray(ds.pixels()[idx]), size), ds.labels[idx], ds.classes)
    best = min((float(r["fd_xray"]) for r in read_metrics(RunDir(run_dir)) if r.get("fd_xray") is not None), default=float("inf"))
    from xraygan.metrics.features import default_cache_dir

    return EvalHook(real, cfg.eval_every, n=n, seed=cfg.seed, device=cfg.device, best_so_far=best,
                    cache=default_cache_dir())
