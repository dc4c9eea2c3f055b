"""Divergence and rollback for the training loop (:mod:`xraygan.training.loop`).

A non-finite loss, |loss| > ``LOSS_LIMIT`` for ``LOSS_LIMIT_STEPS`` steps in a row, or a non-finite
weight, EMA weight or optimizer state rolls every process back to the last finite state (kept in
memory by :func:`_remember_good`) with the learning rates multiplied by ``ROLLBACK_LR_FACTOR``;
after ``--max-rollbacks`` rollbacks :func:`_rollback` raises :class:`~xraygan.errors.TrainingDiverged`.
:func:`_restore` loads a checkpoint dict into a loop context (resume and rollback).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional

import torch

from xraygan.errors import TrainingDiverged, XrayganError
from xraygan.training.checkpoint import restore_rng
from xraygan.training.rundir import truncate_metrics

LoopContext = Any  # xraygan.training.loop.LoopContext (not imported: the loop imports this module)

log = logging.getLogger("xraygan.training.loop")

LOSS_LIMIT = 1e6  # |loss| above this ...
LOSS_LIMIT_STEPS = 50  # ... for this many steps in a row counts as divergence (as does a NaN/inf loss or weight)
ROLLBACK_LR_FACTOR = 0.5  # learning rates are multiplied by this at each rollback


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
    ctx.ema_fresh_at = None


def _loss_divergence(losses: dict[str, Any], streak: int) -> tuple[Optional[str], int]:
    """(why the losses say training diverged or None, updated count of steps in a row with |loss| > LOSS_LIMIT)."""
    numbers = {k: float(v) for k, v in losses.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    bad = next((k for k, v in numbers.items() if not math.isfinite(v)), None)
    if bad is not None:
        return f"{bad} = {numbers[bad]}", streak
    big = [k for k, v in numbers.items() if k.startswith("loss") and abs(v) > LOSS_LIMIT]
    streak = streak + 1 if big else 0
    if streak >= LOSS_LIMIT_STEPS:
        return f"|{big[0]}| > {LOSS_LIMIT:g} for {streak} steps in a row, now {numbers[big[0]]:.3g}", streak
    return None, streak


def _weights_divergence(ctx: LoopContext) -> Optional[str]:
    """Why this process's weights, EMA weights (statistics refreshed on rank 0) or optimizer states say
    training diverged, or None when all are finite."""
    if ctx.dist.is_main:
        ctx.refresh_ema()
    bad = ctx.training_state_nonfinite()
    return f"{bad} holds NaN or inf" if bad else None


def _cpu_copy(obj: Any) -> Any:
    """A deep copy of a checkpoint dict with every tensor copied to the CPU (nothing shared)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


def _remember_good(ctx: LoopContext) -> None:
    """Keep (in memory, on every process) the state just checked finite, to roll back to."""
    ctx.good = (_cpu_copy(ctx.state()), ctx.lr_scale)


def _learning_rates(ctx: LoopContext) -> dict[str, float]:
    return {f"lr_{k.lower()}": float(o.param_groups[0]["lr"]) for k, o in ctx.family.optimizers().items()}


def _rollback(ctx: LoopContext, reason: str, at_step: int) -> None:
    """Restore the last finite state with the learning rates lowered, or raise :class:`TrainingDiverged`
    (after writing that state as latest.pt if the run has no checkpoint yet) when no rollback is left."""
    cfg, fam, main = ctx.cfg, ctx.family, ctx.dist.is_main
    state, scale = ctx.good  # the learning rates in ``state`` are the run's times ``scale``
    good_step, current = int(state["step"]), ctx.lr_scale
    _restore(ctx, _cpu_copy(state))  # a copy: optimizers keep the tensors they are given
    ctx.lr_scale = scale
    if ctx.rollbacks >= cfg.max_rollbacks:
        if main and not ctx.run.latest.is_file():
            ctx.save_checkpoint(ctx.run.latest)  # the run keeps a finite checkpoint to inspect or resume
        msg = f"training diverged at step {at_step} ({reason})"
        if ctx.rollbacks:
            msg += f" again after {ctx.rollbacks} rollback(s) with learning rates lowered to x{current:g}"
        msg += (f"; {ctx.run.latest} keeps the last finite state (step {good_step}). Lower --lr-g/--lr-d, try --loss hinge, "
                f"or allow more rollbacks than --max-rollbacks {cfg.max_rollbacks}")
        raise TrainingDiverged(msg)
    ctx.rollbacks += 1
    ctx.lr_scale = current * ROLLBACK_LR_FACTOR
    for o in fam.optimizers().values():
        for group in o.param_groups:
            group["lr"] = group["lr"] * ctx.lr_scale / scale
    lrs = _learning_rates(ctx)
    log.warning("training diverged at step %d (%s): rolled back to step %d with learning rates x%g (%s); rollback %d of at most %d",
                at_step, reason, good_step, ctx.lr_scale, ", ".join(f"{k} {v:.3g}" for k, v in lrs.items()), ctx.rollbacks, cfg.max_rollbacks)
    if main:
        truncate_metrics(ctx.run, good_step)  # the records of the abandoned steps go
        ctx.tracker.log(good_step, {"rollback": ctx.rollbacks, "diverged_at": at_step, "reason": reason, "lr_scale": ctx.lr_scale, **lrs})
