"""Exponential moving average of the generator's weights.

Karras et al. 2018 (PGGAN, section A.1) and Yazici et al. 2019, "The Unusual Effectiveness of
Averaging in GAN Training" (ICLR). The decay warms up as ``min(beta, (1 + t) / (10 + t))`` (the
classic ``num_updates`` schedule) so short runs are not dominated by the initial weights.

BatchNorm: averaging G's weights while copying G's running statistics gives washed-out images (see
the engineering guide). :func:`refresh_batchnorm` recomputes an EMA generator's statistics from a
few batches of its own outputs in train mode; the trainer calls it before every sample grid and
checkpoint, so the stored EMA generator is self-consistent in eval mode.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn


def make_ema(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` to hold the average."""
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    return ema


def ema_decay(beta: float, step: int) -> float:
    """Decay at update number ``step`` (0-based), with warm-up."""
    return min(beta, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` for every parameter (buffers are not averaged)."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach().to(pe.dtype), 1.0 - decay)


def has_batchnorm(model: nn.Module) -> bool:
    """True when ``model`` contains BatchNorm layers (whose statistics need refreshing)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def refresh_batchnorm(model: nn.Module, forward: Callable[[torch.Generator], None], seed: int, batches: int = 8) -> None:
    """Recompute BatchNorm running statistics as the plain average over ``batches`` forward passes.

    ``forward(gen)`` runs the model on one batch of fresh inputs drawn from ``gen`` (seeded with
    ``seed``, so the result is deterministic and consumes no training randomness). The model is left
    in eval mode.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        model.eval()
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = plain mean over the batches
    model.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        forward(gen)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()
