"""The model-agnostic GAN training loop behind ``xraygan train`` (see :mod:`.families`).

One readable loop: sample a real batch with the data generator, let the family do one training
step with the noise generator, update the EMA generator, then log, draw a sample grid, checkpoint
and run hooks on their schedules. Stops at ``--steps`` total steps, after ``--max-time`` seconds, or
on SIGTERM / Ctrl-C (first Ctrl-C finishes the current step and checkpoints; a second one aborts).

Exact resume: every random number comes from two CPU ``torch.Generator`` objects (data order;
latents and augmentation) whose states, with the global RNG states, go into each checkpoint, so
4 steps + resume to 8 gives bitwise the same weights as 8 steps on CPU.

Multi-process data parallelism: started under ``torchrun`` (``WORLD_SIZE`` > 1) the loop averages
gradients across processes and only rank 0 writes (see :mod:`.distributed`).

Hooks: ``train(config, callbacks=[...])`` calls ``cb(ctx)`` after every step with a
:class:`LoopContext` (step, family, EMA generator, run folder, ``ctx.sampler()``,
``ctx.save_checkpoint(path)``); a callback may return a dict that is merged into that step's
``metrics.jsonl`` record (the record is written when either the logger or a callback has something).
With ``eval_every > 0`` the trainer also builds the evaluation hook
``xraygan.metrics.training_hook:make_eval_hook(config, run_dir) -> callback`` (owned by the
evaluation code; it decides when to act from ``ctx.step`` and may write ``checkpoints/best.pt``).
"""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from xraygan.augment.diffaug import DEFAULT_POLICY
from xraygan.data.dataset import PreparedDataset, resize_images
from xraygan.errors import XrayganError
from xraygan.training.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from xraygan.training.config import TrainConfig
from xraygan.training.distributed import DistInfo, init_distributed, max_rank, share_module, shutdown
from xraygan.training.ema import ema_decay, make_ema, refresh_batchnorm, update_ema
from xraygan.training.families import GANFamily, get_family
from xraygan.training.rundir import RunDir, plot_losses, prune_checkpoints, truncate_metrics, write_run_config
from xraygan.training.tracking import Tracker
from xraygan.utils.runtime import resolve_device, seed_everything

log = logging.getLogger(__name__)

DIFFAUG_AUTO_BELOW = 1000  # DiffAugment is on by default below this many training images
GRID_COLUMNS = 8
Callback = Callable[["LoopContext"], Optional[dict]]


@dataclass
class TrainData:
    """Training pixels in memory: uint8 (N, 1, H, W) and int64 labels (N,), on the device."""

    pixels: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    n_classes: int  # 0 = unconditional
    size: int

    def batch(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch drawn uniformly with replacement: images (n, 1, S, S) in [-1, 1], labels (n,)."""
        idx = torch.randint(len(self.pixels), (n,), generator=gen).to(self.pixels.device)
        x = self.pixels[idx].float() / 127.5 - 1.0
        return resize_images(x, self.size), self.labels[idx]


def load_train_data(cfg: TrainConfig, device: torch.device) -> TrainData:
    """Open the prepared dataset, select split(s) and label, and load the pixels into memory."""
    ds = PreparedDataset.open(cfg.data)
    size = int(cfg.size or ds.size)
    if size > ds.size:
        raise XrayganError(f"--size {size} is above the prepared size {ds.size} of {cfg.data}; prepare the data at {size} px or lower --size")
    bad = [s for s in cfg.split if s not in ("train", "val", "test")]
    if bad:
        raise XrayganError(f"--split {','.join(bad)}: choose from train, val, test")
    idx = ds.indices(split=list(cfg.split), label=cfg.label)
    if len(idx) == 0:
        raise XrayganError(f"{cfg.data}: no images in split(s) {','.join(cfg.split)}" + (f" with label {cfg.label}" if cfg.label else ""))
    pixels = torch.from_numpy(np.ascontiguousarray(ds.pixels()[idx])).unsqueeze(1)
    if cfg.conditional:
        classes, n_classes = ds.classes, len(ds.classes)
        labels = torch.from_numpy(ds.labels[idx])
    else:
        classes = [ds.classes[ds.label_index(cfg.label)]] if cfg.label is not None else ds.classes
        n_classes, labels = 0, torch.zeros(len(idx), dtype=torch.int64)
    return TrainData(pixels.to(device), labels.to(device), classes, n_classes, size)


@dataclass
class LoopContext:
    """What callbacks see after each step."""

    cfg: TrainConfig
    run: RunDir
    family: GANFamily
    ema: Optional[torch.nn.Module]
    data: TrainData
    step: int = 0
    images_seen: int = 0
    elapsed: float = 0.0
    gens: dict[str, torch.Generator] = field(default_factory=dict)
    last_losses: dict[str, float] = field(default_factory=dict)
    tracker: Optional[Tracker] = None
    dist: DistInfo = field(default_factory=DistInfo)

    @property
    def generator(self) -> torch.nn.Module:
        """The generator used for sampling: the EMA copy (statistics refreshed) or G."""
        return self.ema if self.ema is not None else self.family.G

    def refresh_ema(self) -> None:
        """Recompute the EMA generator's BatchNorm statistics from its own outputs (see ema.py)."""
        if self.ema is None:
            return
        fam, n = self.family, self.data.n_classes

        def forward(gen: torch.Generator) -> None:
            b = fam.batch_size(self.step)
            z = fam.latent(b, gen)
            y = torch.randint(max(n, 1), (b,), generator=gen).to(fam.device)
            fam.sample(self.ema, z, y)

        refresh_batchnorm(self.ema, forward, seed=self.cfg.seed + 9173)

    def state(self) -> dict[str, Any]:
        """The checkpoint dict (see checkpoint.py)."""
        fam = self.family
        return {"model": self.cfg.model, "step": self.step, "images_seen": self.images_seen,
                "elapsed": self.elapsed, "config": self.cfg.to_dict(), "classes": self.data.classes,
                "n_classes": self.data.n_classes,
                "modules": {k: m.state_dict() for k, m in fam.modules().items()},
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "optimizers": {k: o.state_dict() for k, o in fam.optimizers().items()},
                "family_state": fam.extra_state(), "rng": capture_rng(self.gens)}

    def save_checkpoint(self, path: Path | None = None) -> Path:
        """Write latest.pt (or ``path``) with the EMA statistics refreshed first."""
        self.refresh_ema()
        return save_checkpoint(path or self.run.latest, self.state())

    def sampler(self):
        """A :class:`xraygan.generate.Sampler` over the current (EMA) generator."""
        from xraygan.generate import Sampler

        self.refresh_ema()
        return Sampler(self.family, self.generator, self.data.classes, self.data.n_classes, self.run.root, "in-training", self.step)


def resume_config(run: str | Path, **overrides: Any) -> TrainConfig:
    """The TrainConfig of an existing run with ``overrides`` (e.g. steps, max_time) applied."""
    info = RunDir(run).read_config()
    cfg = TrainConfig.from_dict(info["options"])
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    cfg.out = str(run)
    return cfg


def _restore(ctx: LoopContext, ckpt: dict[str, Any]) -> None:
    fam = ctx.family
    if ckpt["model"] != ctx.cfg.model:
        raise XrayganError(f"checkpoint is for --model {ckpt['model']}, the run config says {ctx.cfg.model}")
    for k, m in fam.modules().items():
        m.load_state_dict(ckpt["modules"][k])
    for k, o in fam.optimizers().items():
        o.load_state_dict(ckpt["optimizers"][k])
    if ctx.ema is not None and ckpt.get("ema") is not None:
        ctx.ema.load_state_dict(ckpt["ema"])
    fam.load_extra_state(ckpt.get("family_state") or {})
    restore_rng(ckpt["rng"], ctx.gens)
    ctx.step, ctx.images_seen, ctx.elapsed = int(ckpt["step"]), int(ckpt["images_seen"]), float(ckpt["elapsed"])


def _check_tensorboard(cfg: TrainConfig, run: RunDir) -> None:
    if cfg.tensorboard:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            from xraygan.training.tracking import tensorboard_writer

            tensorboard_writer(run.root)  # raises the clear error naming the extra, before anything is written


def _setup(cfg: TrainConfig, resume: bool) -> LoopContext:
    cfg.validate()
    if cfg.threads > 0:
        torch.set_num_threads(int(cfg.threads))
    dist, device = init_distributed(resolve_device(cfg.device))
    seed_everything(cfg.seed)
    cfg.data = str(Path(cfg.data).resolve())  # the saved config must find the data from any folder
    data = load_train_data(cfg, device)
    cfg.size = data.size
    if cfg.diffaug == "auto":
        cfg.diffaug = ",".join(DEFAULT_POLICY) if len(data.pixels) < DIFFAUG_AUTO_BELOW else "none"
    family = get_family(cfg.model)(cfg, data.n_classes, device)
    family.prepare_training()
    cfg.model_options = family.resolved_options()
    run = RunDir(cfg.out)
    _check_tensorboard(cfg, run)
    if not resume and dist.is_main:
        run.create(cfg.force)
        write_run_config(run, cfg.to_dict(), {"model": cfg.model, "classes": data.classes, "n_classes": data.n_classes,
                                               "n_train_images": len(data.pixels), "data": cfg.data})
    offset = 1_000_003 * dist.rank  # each process its own data and latents; rank 0 as a single process
    gens = {"data": torch.Generator().manual_seed(cfg.seed + offset), "noise": torch.Generator().manual_seed(cfg.seed + 1 + offset)}
    ema = make_ema(family.G) if cfg.ema > 0 else None
    ctx = LoopContext(cfg, run, family, ema, data, gens=gens, dist=dist)
    if resume:
        if not run.latest.is_file():
            raise XrayganError(f"{run.root} has no checkpoints/latest.pt to resume from; start it again with --force")
        _restore(ctx, load_checkpoint(run.latest, map_location=device))
        if not dist.is_main:
            for i, g in enumerate(gens.values()):
                g.manual_seed(cfg.seed + i + offset + 7919 * ctx.step)
        if dist.is_main:
            truncate_metrics(run, ctx.step)
            info = run.read_config()
            write_run_config(run, cfg.to_dict(), {k: v for k, v in info.items() if k not in ("format", "format_version", "xraygan_version", "options")})
    if dist.enabled:
        for m in family.modules().values():
            share_module(m, dist.world)
    return ctx


class _StopFlag:
    """SIGTERM / first Ctrl-C set the flag (the step finishes and a checkpoint is written)."""

    def __init__(self) -> None:
        self.reason: Optional[str] = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def write_sample_grid(ctx: LoopContext, path: Path) -> None:
    """Fixed-latent grid: one row per class (4 rows when unconditional), 8 columns."""
    from xraygan.generate import save_grid

    rows = ctx.data.n_classes or 4
    gen = torch.Generator().manual_seed(ctx.cfg.seed + 4242)  # the same latents at every step
    fam = ctx.family
    z = fam.latent(rows * GRID_COLUMNS, gen)
    y = torch.arange(rows).repeat_interleave(GRID_COLUMNS).to(fam.device) if ctx.data.n_classes else torch.zeros(rows * GRID_COLUMNS, dtype=torch.long, device=fam.device)
    ctx.refresh_ema()
    g = ctx.generator
    was_training = g.training
    g.eval()
    with torch.no_grad():
        imgs = fam.sample(g, z, y).float().cpu()
    g.train(was_training)
    canvas = save_grid(imgs, path, ncol=GRID_COLUMNS)
    if ctx.tracker is not None:
        ctx.tracker.image(ctx.step, "samples", canvas)


def _checkpoint(ctx: LoopContext) -> None:
    ctx.save_checkpoint(ctx.run.latest)
    if ctx.step % ctx.cfg.ckpt_every == 0:
        import shutil

        shutil.copyfile(ctx.run.latest, ctx.run.step_checkpoint(ctx.step))
        prune_checkpoints(ctx.run, ctx.cfg.keep_ckpts)
    plot_losses(ctx.run)


def _eval_hook(cfg: TrainConfig, run: RunDir) -> Callback:
    try:
        from xraygan.metrics.training_hook import make_eval_hook  # owned by the evaluation code
    except ImportError:
        raise XrayganError("--eval-every needs xraygan's evaluation module (xraygan.metrics.training_hook), which is not installed") from None
    return make_eval_hook(cfg, run.root)


class _Meter:
    """Training img/s between log records: time in sampling, checkpoints and evaluation is left out."""

    def __init__(self) -> None:
        self.seconds, self.images = 0.0, 0

    def add(self, images: int, seconds: float) -> None:
        self.images += images
        self.seconds += seconds

    def rate(self) -> float:
        r = self.images / max(self.seconds, 1e-9)
        self.seconds, self.images = 0.0, 0
        return r


def _record(ctx: LoopContext, losses: dict[str, float], meter: _Meter, callbacks: list[Callback], bar: Any) -> None:
    """Write this step's metrics record (logger schedule and/or callbacks) and update the bar."""
    record: dict[str, Any] = {}
    if ctx.step % ctx.cfg.log_every == 0 or ctx.step == ctx.cfg.steps:
        record = {"images": ctx.images_seen, "time": round(ctx.elapsed, 3), "img_per_s": round(meter.rate(), 2), **losses}
        bar.set_postfix({"img/s": f"{record['img_per_s']:.0f}", **{k: f"{v:.3f}" for k, v in losses.items() if k.startswith("loss")}})
    if not ctx.dist.is_main:
        return
    for cb in callbacks:
        record.update(cb(ctx) or {})
    if record:
        ctx.tracker.log(ctx.step, record)
    bar.update(1)


def _finish(ctx: LoopContext) -> None:
    """Final checkpoint and grid unless this step already wrote them."""
    if not ctx.dist.is_main:
        return
    if ctx.step % ctx.cfg.ckpt_every != 0:
        _checkpoint(ctx)
    if ctx.step % ctx.cfg.sample_every != 0:
        write_sample_grid(ctx, ctx.run.step_sample(ctx.step))


def train(config: TrainConfig | dict, resume: bool = False, callbacks: list[Callback] | None = None) -> Path:
    """Train a GAN as ``config`` says and return the run folder (see the module docstring).

    With ``resume=True``, ``config.out`` is an existing run continued from ``checkpoints/latest.pt``
    (build the config with :func:`resume_config`).
    """
    from tqdm import tqdm

    cfg = TrainConfig.from_dict(config) if isinstance(config, dict) else config
    ctx = _setup(cfg, resume)
    callbacks = list(callbacks or []) + ([_eval_hook(cfg, ctx.run)] if cfg.eval_every > 0 and ctx.dist.is_main else [])
    fam, data = ctx.family, ctx.data
    if ctx.step >= cfg.steps:
        log.info("%s is already at step %d (--steps %d); nothing to do", ctx.run.root, ctx.step, cfg.steps)
        return ctx.run.root
    log.info("training %s on %d images (%s), %d px, %s, from step %d to %d", cfg.model, len(data.pixels),
             ", ".join(data.classes) if data.n_classes else (cfg.label or "all classes"), data.size, fam.device, ctx.step, cfg.steps)
    start, elapsed0, meter = time.monotonic(), ctx.elapsed, _Meter()
    t_ckpt = start
    main = ctx.dist.is_main
    bar = tqdm(total=cfg.steps, initial=ctx.step, unit="step", dynamic_ncols=True, disable=None if main else True, leave=False)
    ctx.tracker = Tracker(ctx.run.root, tensorboard=cfg.tensorboard and main)
    with _StopFlag() as stop, ctx.tracker:
        while ctx.step < cfg.steps:
            t_step = time.monotonic()
            b = fam.batch_size(ctx.step)
            real, labels = data.batch(b, ctx.gens["data"])
            losses = fam.train_step(real, labels, ctx.step, ctx.gens["noise"])
            if ctx.ema is not None:
                update_ema(ctx.ema, fam.G, ema_decay(cfg.ema, ctx.step))
            ctx.step, ctx.images_seen = ctx.step + 1, ctx.images_seen + b * ctx.dist.world
            meter.add(b * ctx.dist.world, time.monotonic() - t_step)
            ctx.elapsed, ctx.last_losses = elapsed0 + time.monotonic() - start, losses
            _record(ctx, losses, meter, callbacks, bar)
            if main and ctx.step % cfg.sample_every == 0:
                write_sample_grid(ctx, ctx.run.step_sample(ctx.step))
            if main and (ctx.step % cfg.ckpt_every == 0 or (cfg.ckpt_minutes and time.monotonic() - t_ckpt >= 60 * cfg.ckpt_minutes)):
                _checkpoint(ctx)
                t_ckpt = time.monotonic()
            # one collective per step decides for every process: 2 = diverged (anywhere), 1 = stop, 0 = go on
            diverged = not all(math.isfinite(v) for v in losses.values())
            out_of_time = cfg.max_time is not None and time.monotonic() - start >= cfg.max_time
            verdict = max_rank(2 if diverged else int(bool(stop.reason) or out_of_time), ctx.dist, fam.device)
            if verdict == 2:
                bar.close()
                if main:
                    _checkpoint(ctx)
                raise XrayganError(f"training diverged at step {ctx.step} (losses {losses}); lower --lr-g/--lr-d or try --loss hinge")
            if verdict == 1:
                log.info("stopping at step %d (%s)", ctx.step, stop.reason or f"--max-time {cfg.max_time:g}s")
                break
        bar.close()
        _finish(ctx)
    if main:
        from xraygan.report.model_card import write_model_card

        write_model_card(ctx.run.root)
    shutdown(ctx.dist)
    log.info("run %s at step %d of %d (%.0f s); checkpoint %s", ctx.run.root, ctx.step, cfg.steps, ctx.elapsed, ctx.run.latest)
    return ctx.run.root
