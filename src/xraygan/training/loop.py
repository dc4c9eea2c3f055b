"""The model-agnostic GAN training loop behind ``xraygan train`` (see :mod:`.families`).

One readable loop: sample a real batch with the data generator, let the family do one training
step with the noise generator, update the EMA generator, then log, draw a sample grid, checkpoint
and run hooks on their schedules. Stops at ``--steps`` total steps, after ``--max-time`` seconds, or
on SIGTERM / Ctrl-C (first Ctrl-C finishes the current step and checkpoints, then :func:`train` raises
:class:`TrainingInterrupted`, a ``KeyboardInterrupt``, or on SIGTERM :class:`TrainingTerminated`, so
callers stop too; a second Ctrl-C aborts at once).

Exact resume: every random number comes from two CPU ``torch.Generator`` objects (data order;
latents and augmentation) whose states, with the global RNG states, go into each checkpoint, so
4 steps + resume to 8 gives bitwise the same weights as 8 steps on CPU.

Multi-process data parallelism: started under ``torchrun`` (``WORLD_SIZE`` > 1) the loop averages
gradients across processes and only rank 0 writes (see :mod:`.distributed`).

Divergence (:mod:`.rollback`): a non-finite loss, |loss| > ``LOSS_LIMIT`` for ``LOSS_LIMIT_STEPS`` steps in a row, or a
non-finite weight, EMA weight or optimizer state (checked before every sample grid, checkpoint and
evaluation) rolls every process back to the last finite state (its last checkpoint, kept in memory,
or the start of this invocation) with the learning rates halved, logged and recorded in
``metrics.jsonl`` (``rollback``, ``diverged_at``, ``reason``, ``lr_scale``, ``lr_g``, ``lr_d``);
after ``--max-rollbacks`` rollbacks it raises :class:`~xraygan.errors.TrainingDiverged`. No
checkpoint is ever written from a non-finite state, so ``latest.pt`` stays the last finite one.
The lowered learning rates live in the optimizer states, so a resumed run keeps them.

Why it stopped: each invocation ends by adding to the last step's record in ``metrics.jsonl`` ``stopped``
(``done``, ``max_time``, ``interrupted`` or ``diverged``), ``stop_detail``, ``steps_planned``,
``elapsed`` and ``rollbacks`` (see :func:`_record_stop`); a run killed outright has none.

Hooks: ``train(config, callbacks=[...])`` calls ``cb(ctx)`` after every step with a
:class:`LoopContext` (step, family, EMA generator, run folder, ``ctx.sampler()``,
``ctx.save_checkpoint(path)``); a callback may return a dict that is merged into that step's
``metrics.jsonl`` record (the record is written when either the logger or a callback has something).
With ``eval_every > 0`` the trainer also builds the evaluation callback with the ``eval_hook``
factory it is given, ``eval_hook(config, run_dir) -> callback`` (the evaluation code's
``xraygan.metrics.training_hook:make_eval_hook``; it decides when to act from ``ctx.step`` and may
write ``checkpoints/best.pt``), and at the end calls ``on_finish(run_dir)`` (the model card). This
module imports neither: :func:`xraygan.workflow.train` (``xraygan.train``, the ``train`` command)
passes them in, so training sits below generation, metrics and report (see ``docs/architecture.md``).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from xraygan.augment.diffaug import auto_policy
from xraygan.data.dataset import PreparedDataset, resize_images
from xraygan.errors import TrainingDiverged, XrayganError
from xraygan.training.checkpoint import capture_rng, first_nonfinite, load_checkpoint, save_checkpoint
from xraygan.training.config import TrainConfig, options_from_run_config
from xraygan.training.distributed import DistInfo, init_distributed, max_all, share_module, shutdown, sync_batchnorm
from xraygan.training.ema import ema_decay, make_ema, refresh_batchnorm, update_ema
from xraygan.training.families import GANFamily, get_family
from xraygan.training.family_common import speed_line
from xraygan.training.rollback import _loss_divergence, _remember_good, _restore, _rollback, _weights_divergence
from xraygan.training.rundir import (RunDir, plot_losses, prune_checkpoints, run_lock, save_step_checkpoint, truncate_metrics,
                                     write_run_config)
from xraygan.training.sampler import Sampler, save_grid
from xraygan.training.tracking import Tracker
from xraygan.utils.locks import Terminated
from xraygan.utils.pixels import to_signed
from xraygan.utils.runtime import resolve_device, seed_everything

log = logging.getLogger(__name__)

GRID_COLUMNS = 8
Callback = Callable[["LoopContext"], Optional[dict]]
EvalHookFactory = Callable[[TrainConfig, Path], Callback]  # (config, run folder) -> the --eval-every callback


@dataclass
class TrainData:
    """Training pixels in memory: uint8 (N, 1, H, W) and int64 labels (N,), on the device."""

    pixels: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    n_classes: int  # 0 = unconditional
    size: int
    balanced: bool = False  # conditional only: every class equally often in a batch (the family decides)

    def batch(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch drawn uniformly with replacement (or class-balanced: a uniform class, then a uniform
        image of it): images (n, 1, S, S) in [-1, 1], labels (n,)."""
        if self.balanced and self.n_classes > 1:
            members = getattr(self, "_members", None)
            if members is None:
                lab = self.labels.cpu()
                members = self._members = [torch.nonzero(lab == c).flatten() for c in range(self.n_classes)]
            present = [m for m in members if len(m)]
            cls = torch.randint(len(present), (n,), generator=gen)
            pos = torch.rand(n, generator=gen)
            idx = torch.stack([present[int(c)][min(int(p * len(present[int(c)])), len(present[int(c)]) - 1)] for c, p in zip(cls, pos)])
            idx = idx.to(self.pixels.device)
        else:
            idx = torch.randint(len(self.pixels), (n,), generator=gen).to(self.pixels.device)
        x = to_signed(self.pixels[idx])
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
    rollbacks: int = 0  # divergences rolled back in this invocation
    lr_scale: float = 1.0  # learning rates relative to the run's, after rollbacks in this invocation
    good: Optional[tuple[dict[str, Any], float]] = None  # (CPU copy of the last finite state, its lr_scale)
    ema_fresh_at: Optional[int] = None  # step at which the EMA statistics were last refreshed

    @property
    def generator(self) -> torch.nn.Module:
        """The generator used for sampling: the EMA copy (statistics refreshed) or G."""
        return self.ema if self.ema is not None else self.family.G

    def refresh_ema(self) -> None:
        """Recompute the EMA generator's BatchNorm statistics from its own outputs (see ema.py);
        deterministic, so done once per step (the loop resets ``ema_fresh_at`` when the EMA changes)."""
        if self.ema is None or self.ema_fresh_at == self.step:
            return
        fam, n = self.family, self.data.n_classes

        def forward(gen: torch.Generator) -> None:
            b = fam.batch_size(self.step)
            z = fam.latent(b, gen)
            # the labels of training's fake batches (class shares of the data), so BatchNorm statistics match training's
            y = fam.fake_labels_like(self.data.labels, b, gen).to(fam.device)
            fam.sample(self.ema, z, y)

        refresh_batchnorm(self.ema, forward, seed=self.cfg.seed + 9173)
        self.ema_fresh_at = self.step

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

    def training_state_nonfinite(self) -> Optional[str]:
        """Name of the first network weight, buffer, EMA weight or optimizer state holding NaN/inf, or None."""
        fam = self.family
        return first_nonfinite({"modules": {k: m.state_dict() for k, m in fam.modules().items()},
                                "ema": self.ema.state_dict() if self.ema is not None else None,
                                "optimizers": {k: o.state_dict() for k, o in fam.optimizers().items()}})

    def save_checkpoint(self, path: Path | None = None) -> Path:
        """Write latest.pt (or ``path``) with the EMA statistics refreshed first; a state with a
        non-finite weight is refused (:class:`XrayganError`) and the previous file kept."""
        self.refresh_ema()
        return save_checkpoint(path or self.run.latest, self.state())

    def sampler(self):
        """A :class:`xraygan.training.sampler.Sampler` over the current (EMA) generator."""
        self.refresh_ema()
        return Sampler(self.family, self.generator, self.data.classes, self.data.n_classes, self.run.root, "in-training", self.step)


def resume_config(run: str | Path, **overrides: Any) -> TrainConfig:
    """The TrainConfig of an existing run with ``overrides`` (e.g. steps, max_time) applied."""
    info = RunDir(run).read_config()
    cfg = TrainConfig.from_dict(options_from_run_config(info))
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    cfg.out = str(run)
    return cfg


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
    family_cls = get_family(cfg.model)
    if cfg.diffaug == "auto":
        cfg.diffaug = auto_policy(len(data.pixels), cfg.steps, cfg.size, family_cls.auto_translation)
    family = family_cls(cfg, data.n_classes, device)
    family.prepare_training()
    data.balanced = bool(getattr(family, "balanced_batches", False))
    cfg.model_options = family.resolved_options()
    run = RunDir(cfg.out)
    _check_tensorboard(cfg, run)
    if not resume and dist.is_main:
        run.create(cfg.force, inputs=[cfg.data])
        write_run_config(run, cfg.to_dict(), {"model": cfg.model, "classes": data.classes, "n_classes": data.n_classes,
                                               "n_train_images": len(data.pixels), "data": cfg.data})
    offset = 1_000_003 * dist.rank  # each process its own data and latents; rank 0 as a single process
    gens = {"data": torch.Generator().manual_seed(cfg.seed + offset), "noise": torch.Generator().manual_seed(cfg.seed + 1 + offset)}
    ema = make_ema(family.G) if cfg.ema > 0 else None
    ctx = LoopContext(cfg, run, family, ema, data, gens=gens, dist=dist)
    if resume:
        if not run.latest.is_file():
            raise XrayganError(f"{run.root} has no checkpoints/latest.pt to resume from; start it again with --force")
        _check_resumed_data(run, cfg, data)
        _restore(ctx, load_checkpoint(run.latest, map_location=device))
        if not dist.is_main:
            for i, g in enumerate(gens.values()):
                g.manual_seed(cfg.seed + i + offset + 7919 * ctx.step)
        if dist.is_main:
            truncate_metrics(run, ctx.step)
            info = run.read_config()
            extra = {k: v for k, v in info.items() if k not in ("format", "format_version", "xraygan_version", "options")}
            if "data" in extra:
                extra["data"] = cfg.data  # where the data is now (given again after it moved: see the train command)
            write_run_config(run, cfg.to_dict(), extra)
    if dist.enabled:  # after make_ema: the EMA copy keeps plain BatchNorm (rank 0 alone runs it)
        for m in family.modules().values():
            sync_batchnorm(m)
            share_module(m, dist.world)
    return ctx


def _check_resumed_data(run: RunDir, cfg: TrainConfig, data: TrainData) -> None:
    """Refuse to continue ``run`` on prepared data whose classes are not the ones it trained on (the
    data was prepared again under it); warn when only its number of training images changed."""
    info = run.read_config()
    recorded = info.get("classes")
    if isinstance(recorded, list) and [str(c) for c in recorded] != list(data.classes):
        gone = [str(c) for c in recorded if str(c) not in data.classes]
        new = [c for c in data.classes if c not in [str(r) for r in recorded]]
        what = (f"; missing now: {', '.join(gone)}" if gone else "") + (f"; new: {', '.join(new)}" if new else "")
        raise XrayganError(f"cannot resume {run.root}: it trained on the classes {', '.join(map(str, recorded))}, but its prepared "
                           f"data {cfg.data} now holds {', '.join(data.classes)}{what or ' (another order)'}; the data was "
                           f"prepared again since. Train a new run on it (`xraygan train {cfg.data} --out NEW_RUN`), or "
                           f"prepare the run's data again where it was")
    n = info.get("n_train_images")
    if isinstance(n, int) and n != len(data.pixels):
        log.warning("%s: its prepared data %s now has %d training images, the run started on %d (the data was prepared "
                    "again); continuing on the current images", run.root, cfg.data, len(data.pixels), n)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C (SIGINT) after finishing its step and writing its checkpoint.

    Raised by :func:`train` once the run is saved, so callers stop too (the command exits 130)."""

    exit_status = 130

    def __init__(self, run: Path, step: int, steps: int, signal_name: str = "SIGINT") -> None:
        self.run, self.step, self.steps, self.signal_name = Path(run), step, steps, signal_name
        super().__init__(f"interrupted by {signal_name} at step {step} of {steps}; the checkpoint {self.run / 'checkpoints' / 'latest.pt'} "
                         f"is written: continue with `xraygan train --resume {self.run}`")

    def __str__(self) -> str:
        return str(self.args[0])


class TrainingTerminated(Terminated):
    """Training stopped on SIGTERM after finishing its step and writing its checkpoint (the command exits 143)."""

    exit_status = 143

    def __init__(self, run: Path, step: int, steps: int, signal_name: str = "SIGTERM") -> None:
        self.run, self.step, self.steps, self.signal_name = Path(run), step, steps, signal_name
        super().__init__(f"stopped by {signal_name} at step {step} of {steps}; the checkpoint {self.run / 'checkpoints' / 'latest.pt'} "
                         f"is written: continue with `xraygan train --resume {self.run}`")


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
        save_step_checkpoint(ctx.run, ctx.step)  # atomic: never a half-written step_*.pt
        prune_checkpoints(ctx.run, ctx.cfg.keep_ckpts)
    plot_losses(ctx.run)


def _eval_hook(cfg: TrainConfig, run: RunDir, factory: EvalHookFactory | None) -> Callback:
    if factory is None:
        raise XrayganError("--eval-every needs an evaluation hook: train with xraygan.train (xraygan.workflow.train), which passes "
                           "xraygan.metrics.training_hook.make_eval_hook, or pass eval_hook= to xraygan.training.loop.train")
    return factory(cfg, run.root)


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


STOP_REASONS = ("done", "max_time", "interrupted", "diverged")  # the ``stopped`` value of the last record


def _record_stop(ctx: LoopContext, reason: str, detail: str) -> None:
    """Record why this invocation of training ended in ``metrics.jsonl`` (read by the report), merged
    into the last step's record (or as that step's record when it was not logged): ``stopped`` (one
    of :data:`STOP_REASONS`), ``stop_detail``, ``steps_planned``, ``elapsed`` (seconds of training
    over all invocations) and ``rollbacks`` (in this invocation)."""
    ctx.tracker.annotate(ctx.step, {"stopped": reason, "stop_detail": detail, "steps_planned": ctx.cfg.steps,
                               "elapsed": round(ctx.elapsed, 3), "rollbacks": ctx.rollbacks})


def _finish(ctx: LoopContext) -> None:
    """Final checkpoint and grid unless this step already wrote them."""
    if not ctx.dist.is_main:
        return
    if ctx.step % ctx.cfg.ckpt_every != 0:
        _checkpoint(ctx)
    if ctx.step % ctx.cfg.sample_every != 0:
        write_sample_grid(ctx, ctx.run.step_sample(ctx.step))


def train(config: TrainConfig | dict, resume: bool = False, callbacks: list[Callback] | None = None,
          eval_hook: EvalHookFactory | None = None, on_finish: Callable[[Path], Any] | None = None) -> Path:
    """Train a GAN as ``config`` says and return the run folder (see the module docstring).

    ``eval_hook`` builds the ``--eval-every`` callback and ``on_finish`` runs on the run folder at
    the end (rank 0); :func:`xraygan.workflow.train` passes the evaluation hook and the model card.

    With ``resume=True``, ``config.out`` is an existing run continued from ``checkpoints/latest.pt``
    (build the config with :func:`resume_config`). The run folder is locked for the whole call (one
    writer per run: a second ``train``/``--resume``/``--force`` on it is refused, see
    :func:`xraygan.training.rundir.run_lock`); under torchrun only rank 0 writes and locks.

    Stopped by Ctrl-C or SIGTERM before ``config.steps``, it finishes the step, writes the checkpoint
    (and ``on_finish``), then raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) or
    :class:`TrainingTerminated` (an :class:`~xraygan.errors.XrayganError`) naming the run and step.
    """
    import os

    cfg = TrainConfig.from_dict(config) if isinstance(config, dict) else config
    if not cfg.out or int(os.environ.get("RANK", "0")) != 0:
        return _train_locked(cfg, resume, callbacks, eval_hook, on_finish)
    with run_lock(cfg.out, inputs=[] if resume else [cfg.data]):
        return _train_locked(cfg, resume, callbacks, eval_hook, on_finish)


def _fused(fam: GANFamily) -> bool:
    """Whether the family's optimizers run PyTorch's fused implementation."""
    return all(bool(o.defaults.get("fused")) for o in fam.optimizers().values())


def _train_locked(config: TrainConfig | dict, resume: bool = False, callbacks: list[Callback] | None = None,
                  eval_hook: EvalHookFactory | None = None, on_finish: Callable[[Path], Any] | None = None) -> Path:
    """The body of :func:`train`, run while holding the run folder's lock."""
    from xraygan.utils.progress import bar as progress_bar

    cfg = TrainConfig.from_dict(config) if isinstance(config, dict) else config
    ctx = _setup(cfg, resume)
    callbacks = list(callbacks or []) + ([_eval_hook(cfg, ctx.run, eval_hook)] if cfg.eval_every > 0 and ctx.dist.is_main else [])
    fam, data = ctx.family, ctx.data
    if ctx.step >= cfg.steps:
        log.info("%s is already at step %d (--steps %d); nothing to do", ctx.run.root, ctx.step, cfg.steps)
        return ctx.run.root
    log.info("training %s on %d images (%s), %d px, %s, from step %d to %d", cfg.model, len(data.pixels),
             ", ".join(data.classes) if data.n_classes else (cfg.label or "all classes"), data.size, fam.device, ctx.step, cfg.steps)
    if ctx.dist.is_main:
        log.info("%s", speed_line(cfg.model, fam.speed["precision"], fam.speed["channels_last"], _fused(fam), fam.device))
    start, elapsed0, meter = time.monotonic(), ctx.elapsed, _Meter()
    t_ckpt = start
    main = ctx.dist.is_main
    bar = progress_bar(total=cfg.steps, initial=ctx.step, unit="step", disable=not main)  # off when quiet, piped or not rank 0
    ctx.tracker = Tracker(ctx.run.root, tensorboard=cfg.tensorboard and main)
    with _StopFlag() as stop, ctx.tracker:
        _remember_good(ctx)  # the state to roll back to until the first checkpoint of this invocation
        streak = 0  # steps in a row with |loss| > LOSS_LIMIT
        while ctx.step < cfg.steps:
            t_step = time.monotonic()
            b = fam.batch_size(ctx.step)
            real, labels = data.batch(b, ctx.gens["data"])
            losses = fam.train_step(real, labels, ctx.step, ctx.gens["noise"])
            if ctx.ema is not None:
                update_ema(ctx.ema, fam.G, ema_decay(cfg.ema, ctx.step))
            ctx.ema_fresh_at = None
            ctx.step, ctx.images_seen = ctx.step + 1, ctx.images_seen + b * ctx.dist.world
            meter.add(b * ctx.dist.world, time.monotonic() - t_step)
            ctx.elapsed, ctx.last_losses = elapsed0 + time.monotonic() - start, losses
            # divergence this process sees: in the losses, and in the weights wherever something is written from them
            reason, streak = _loss_divergence(losses, streak)
            scheduled = (ctx.step % cfg.ckpt_every == 0 or ctx.step % cfg.sample_every == 0 or ctx.step >= cfg.steps
                         or bool(cfg.eval_every and ctx.step % cfg.eval_every == 0))  # the same steps on every process
            checked = reason is None and scheduled
            if checked:
                reason = _weights_divergence(ctx)
            if reason is None:
                _record(ctx, losses, meter, callbacks, bar)  # metrics and callbacks (rank 0) see finite states only
            # one collective per step decides for every process: diverged (anywhere), stop, rank 0's timed checkpoint
            out_of_time = cfg.max_time is not None and time.monotonic() - start >= cfg.max_time
            timed = main and bool(cfg.ckpt_minutes) and time.monotonic() - t_ckpt >= 60 * cfg.ckpt_minutes
            diverged, stopping, timed = max_all([reason is not None, bool(stop.reason) or out_of_time, timed], ctx.dist, fam.device)
            if not diverged and not checked and (stopping or timed):  # an unscheduled checkpoint follows: check first
                reason = _weights_divergence(ctx)
                diverged = max_all([reason is not None], ctx.dist, fam.device)[0]
            ckpt_now = ctx.step % cfg.ckpt_every == 0 or bool(timed)
            if diverged:
                try:
                    _rollback(ctx, reason or "diverged in another process", ctx.step)
                except TrainingDiverged:
                    bar.close()
                    if main:
                        _record_stop(ctx, "diverged", f"diverged at step {ctx.step} ({reason or 'in another process'}) after {ctx.rollbacks} rollback(s)")
                    raise
                streak = 0
                bar.n = ctx.step
                bar.refresh()
                continue
            if main and ctx.step % cfg.sample_every == 0:
                write_sample_grid(ctx, ctx.run.step_sample(ctx.step))
            if ckpt_now:
                if main:
                    _checkpoint(ctx)
                    t_ckpt = time.monotonic()
                _remember_good(ctx)
            if stopping:
                log.info("stopping at step %d (%s)", ctx.step, stop.reason or f"--max-time {cfg.max_time:g}s")
                break
        bar.close()
        if main:
            if ctx.step >= cfg.steps:
                _record_stop(ctx, "done", f"reached --steps {cfg.steps}")
            elif stop.reason:
                _record_stop(ctx, "interrupted", f"{stop.reason} received")
            else:
                _record_stop(ctx, "max_time", f"--max-time {cfg.max_time:g} s reached")
        _finish(ctx)
    if main and on_finish is not None:
        on_finish(ctx.run.root)
    shutdown(ctx.dist)
    log.info("run %s at step %d of %d (%.0f s); checkpoint %s", ctx.run.root, ctx.step, cfg.steps, ctx.elapsed, ctx.run.latest)
    if stop.reason and ctx.step < cfg.steps:  # saved; now the caller stops too (exit 130 on Ctrl-C, 143 on SIGTERM)
        raise (TrainingInterrupted if stop.reason == "SIGINT" else TrainingTerminated)(ctx.run.root, ctx.step, cfg.steps, stop.reason)
    return ctx.run.root
