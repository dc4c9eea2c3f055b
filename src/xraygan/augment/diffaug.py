"""Differentiable augmentation for data-efficient GAN training, adapted to grayscale X-rays.

Zhao, Liu, Lin, Zhu & Han 2020, "Differentiable Augmentation for Data-Efficient GAN Training"
(NeurIPS). The same random transform is applied to real and generated images before D, in both the
D and the G step, and it is differentiable so G's gradients pass through it.

X-ray adaptations: one channel; ``color`` is brightness and contrast only (no saturation); there is
no flip (it would move the heart to the wrong side). Every op is a pure function
``op(x, generator) -> x`` on (B, 1, H, W) tensors in [-1, 1]; random numbers come from the given
CPU ``torch.Generator`` only, so training stays reproducible and resumable.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from xraygan.errors import XrayganError

AugmentOp = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _rand(shape: tuple[int, ...], gen: torch.Generator, x: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn on the CPU generator, moved to ``x``'s device and dtype."""
    return torch.rand(shape, generator=gen).to(device=x.device, dtype=x.dtype)


def brightness(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Add a per-image offset in [-0.5, 0.5) (the paper's brightness range)."""
    return x + (_rand((x.shape[0], 1, 1, 1), gen, x) - 0.5)


def contrast(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Scale each image's deviation from its mean by a factor in [0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand((x.shape[0], 1, 1, 1), gen, x) + 0.5) + mean


def color(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Brightness then contrast (the paper's ``color`` without saturation, for grayscale)."""
    return contrast(brightness(x, gen), gen)


def translation(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in x and y, filling with zeros (mid-gray)."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (b, 1, 1), generator=gen).to(x.device)
    tx = torch.randint(-sw, sw + 1, (b, 1, 1), generator=gen).to(x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = torch.clamp(gy[None] + ty + 1, 0, h + 1)  # (B, H, W) indices into the padded image
    gx = torch.clamp(gx[None] + tx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])  # (B, 1, H+2, W+2), border is 0
    flat = padded[:, 0].reshape(b, -1)
    idx = (gy * (w + 2) + gx).reshape(b, -1)
    return flat.gather(1, idx).reshape(b, 1, h, w)


def cutout(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero (mid-gray) one square of ``ratio`` times the image size at a random place per image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h, (b, 1, 1), generator=gen).to(x.device)  # square centres
    cx = torch.randint(0, w, (b, 1, 1), generator=gen).to(x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    dy, dx = gy[None] - cy + ch // 2, gx[None] - cx + cw // 2  # (B, H, W) offsets into the square
    inside = (dy >= 0) & (dy < ch) & (dx >= 0) & (dx < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


OPS: dict[str, AugmentOp] = {"color": color, "brightness": brightness, "contrast": contrast,
                             "translation": translation, "cutout": cutout}
# color is left out of the default: on the shipped sample (32 px, 400 steps) it cut the spread of
# generated images to 0.10 (pixel std across images; real 0.26) against 0.21 for translation,cutout
DEFAULT_POLICY = ("translation", "cutout")


# `--diffaug auto`: DiffAugment counters D overfitting a small dataset over a long run (the paper's
# runs are tens of thousands of steps). In short runs at 32 px it does the opposite: on the shared
# chest X-rays (benchmarks/conditional_collapse.py, recall per class in random-CNN features vs the
# real-vs-real floor 0.89/0.85) translation,cutout cut NORMAL recall from 0.30 to 0.01 after 420 steps
# of the conditional DCGAN, from 0.35 to 0.01 for the NORMAL-only model (916 images), and from 0.52
# to 0.04 with today's defaults (per-class minibatch std, balanced batches) after ~500 steps; and
# translation alone, in the CPU default (benchmarks/quality_per_minute.py --size 32), 0.82 -> 0.60
# after 4 CPU-minutes. At 64 px translation alone is the better model from the first 5 CPU-minutes
# on: after 30 minutes FD 0.35 instead of 3.31 (X-ray encoder) and 0.06 / 0.05 (random CNN), NORMAL
# recall 0.58 / 0.45 instead of 0.12 / 0.28, copies 1.6% instead of 5.7% (docs/benchmarks.md). So
# auto is translation,cutout for small datasets in long runs, translation from 64 px, else none.
AUTO_MAX_IMAGES = 1000  # auto: translation,cutout below this many training images ...
AUTO_MIN_STEPS = 10000  # ... when the run plans at least this many steps
AUTO_TRANSLATION_SIZE = 64  # auto: translation alone from this training size on


def auto_policy(n_images: int, steps: int, size: int, translation: bool = True) -> str:
    """The policy ``--diffaug auto`` stands for: ``translation,cutout`` for fewer than
    :data:`AUTO_MAX_IMAGES` training images in a run of at least :data:`AUTO_MIN_STEPS` steps,
    else ``translation`` at a training ``size`` of at least :data:`AUTO_TRANSLATION_SIZE` px when
    ``translation`` (the family's ``auto_translation``: only where it was measured, the DCGAN), else ``none``."""
    if n_images < AUTO_MAX_IMAGES and steps >= AUTO_MIN_STEPS:
        return ",".join(DEFAULT_POLICY)
    return "translation" if translation and size >= AUTO_TRANSLATION_SIZE else "none"


def parse_policy(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"translation,cutout,color"`` -> names; ``none``/empty -> (); unknown names are an error."""
    if spec is None:
        return ()
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if names in (["none"], ["off"]):
        return ()
    if names in (["default"], ["on"]):
        return DEFAULT_POLICY
    bad = [n for n in names if n not in OPS]
    if bad:
        raise XrayganError(f"--diffaug: unknown op(s) {', '.join(bad)}; choose from {', '.join(OPS)} or none")
    return tuple(names)


def diff_augment(x: torch.Tensor, policy: Sequence[str], gen: torch.Generator) -> torch.Tensor:
    """Apply the ops of ``policy`` in order (the same call must be made for real and fake batches)."""
    for name in policy:
        x = OPS[name](x, gen)
    return x
