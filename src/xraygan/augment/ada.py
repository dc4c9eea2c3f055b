"""Adaptive discriminator augmentation (ADA) with an X-ray-safe pipeline.

Reimplemented from Karras et al. 2020, "Training Generative Adversarial Networks with Limited
Data" (NeurIPS): every image shown to D (real and fake, also in G's step) passes through the same
differentiable pipeline; each transform is applied independently with probability p. p is tuned
by a controller from the overfitting heuristic r_t = E[sign(D(x_real))]: above the target
(default 0.6) p grows, below it p shrinks, at a speed such that p could go from 0 to 1 in
``speed_kimg`` thousand images (section 3 and appendix C).

Only transforms that keep an X-ray plausible are used: integer translation (up to 1/8 of the
side), isotropic and anisotropic scaling (log2-normal, std 0.2), small rotation (uniform, up to
``max_rotate`` degrees), brightness (additive, std 0.2), contrast (log2-normal, std 0.5, around
the image mean) and cutout (a square of half the side filled with 0). No flips: they move the heart
to the wrong side. Geometric transforms are composed into one matrix and applied with a single
``grid_sample`` with reflection padding. All random numbers come from a ``torch.Generator``, and
the same count is drawn whatever p is, so a seeded run is reproducible and resumable.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AdaSpec:
    """Strengths of the X-ray-safe transforms (0 disables one)."""

    translate: float = 0.125        # max shift as a fraction of the side (rounded to whole pixels)
    scale_std: float = 0.2          # isotropic scale: 2 ** N(0, scale_std)
    aniso_std: float = 0.2          # anisotropic scale: x * 2**N(0, s), y / 2**N(0, s)
    max_rotate: float = 10.0        # degrees, uniform in [-max_rotate, max_rotate]
    brightness_std: float = 0.2     # added to [-1, 1] pixels
    contrast_std: float = 0.5       # 2 ** N(0, contrast_std) around the image mean
    cutout: float = 0.5             # side of the cut-out square as a fraction of the image side

    def to_dict(self) -> dict:
        return asdict(self)


def _draw(shape: tuple[int, ...], kind: str, generator: Optional[torch.Generator]) -> torch.Tensor:
    dev = generator.device if generator is not None else torch.device("cpu")
    fn = torch.rand if kind == "uniform" else torch.randn
    return fn(shape, generator=generator, device=dev)


def _geometric(x: torch.Tensor, p: float, spec: AdaSpec, g: Optional[torch.Generator]) -> torch.Tensor:
    n, _, h, w = x.shape
    u = _draw((4, n), "uniform", g)          # which transforms fire
    r = _draw((4, n), "normal", g)           # their strengths
    t = _draw((3, n), "uniform", g)          # translation x, y and rotation
    fire = (u < p).float()
    tx = torch.round((t[0] * 2 - 1) * spec.translate * w) * 2 / w * fire[0]   # whole pixels, normalised
    ty = torch.round((t[1] * 2 - 1) * spec.translate * h) * 2 / h * fire[0]
    s = torch.exp2(r[0] * spec.scale_std * fire[1])
    a = torch.exp2(r[1] * spec.aniso_std * fire[2])
    theta = (t[2] * 2 - 1) * math.radians(spec.max_rotate) * fire[3]
    sx, sy = s * a, s / a
    cos, sin = torch.cos(theta), torch.sin(theta)
    mat = torch.stack([torch.stack([cos * sx, -sin * sy, tx], 1),
                       torch.stack([sin * sx, cos * sy, ty], 1)], 1)        # (N, 2, 3)
    moved = fire.amax(0) > 0
    if not bool(moved.any()):
        return x
    mat = mat.to(device=x.device, dtype=torch.float32)
    grid = F.affine_grid(mat, [n, x.shape[1], h, w], align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return torch.where(moved.to(x.device)[:, None, None, None], out.to(x.dtype), x)


def _color(x: torch.Tensor, p: float, spec: AdaSpec, g: Optional[torch.Generator]) -> torch.Tensor:
    n = x.shape[0]
    u = _draw((2, n), "uniform", g)
    r = _draw((2, n), "normal", g)
    fire = (u < p).float()
    b = (r[0] * spec.brightness_std * fire[0]).to(x)[:, None, None, None]
    c = torch.exp2(r[1] * spec.contrast_std * fire[1]).to(x)[:, None, None, None]
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    changed = (fire.amax(0) > 0).to(x.device)[:, None, None, None]
    return torch.where(changed, (x - mean) * c + mean + b, x)   # untouched images stay bit-exact


def _cutout(x: torch.Tensor, p: float, spec: AdaSpec, g: Optional[torch.Generator]) -> torch.Tensor:
    n, _, h, w = x.shape
    u = _draw((3, n), "uniform", g)
    fire = (u[0] < p).to(x.device)
    cy, cx = u[1].to(x.device)[:, None], u[2].to(x.device)[:, None]
    ys = (torch.arange(h, device=x.device)[None] + 0.5) / h
    xs = (torch.arange(w, device=x.device)[None] + 0.5) / w
    inside = ((ys - cy).abs() < spec.cutout / 2)[:, :, None] & ((xs - cx).abs() < spec.cutout / 2)[:, None, :]
    mask = inside & fire[:, None, None]
    return x * (~mask)[:, None].to(x.dtype)


def augment(x: torch.Tensor, p: float, generator: Optional[torch.Generator] = None,
            spec: AdaSpec = AdaSpec()) -> torch.Tensor:
    """Apply the X-ray-safe ADA pipeline to (N, C, H, W) images in [-1, 1]; differentiable in ``x``.

    With ``p == 0`` the images come back unchanged (random numbers are still drawn, so the
    generator advances the same way whatever p is).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"augmentation probability must be in [0, 1], got {p}")
    x = _geometric(x, p, spec, generator)
    x = _color(x, p, spec, generator)
    return _cutout(x, p, spec, generator)


class AdaController:
    """Adjusts p every ``interval`` D steps from r_t = E[sign(D(real))] (ADA, section 3).

    ``p += sign(r_t - target) * images / (speed_kimg * 1000)``, clipped to [0, max_p], where
    ``images`` is the number of reals the statistic was accumulated over.
    """

    def __init__(self, target: float = 0.6, p: float = 0.0, interval: int = 4, speed_kimg: float = 100.0,
                 max_p: float = 1.0) -> None:
        self.target = float(target)
        self.p = float(p)
        self.interval = int(interval)
        self.speed_kimg = float(speed_kimg)
        self.max_p = float(max_p)
        self.rt = 0.0
        self._sum = 0.0
        self._count = 0
        self._steps = 0

    def update(self, real_logits: torch.Tensor,
               reduce: Optional[Callable[[list[float]], list[float]]] = None) -> float:
        """Accumulate sign(D(real)) for one step; adjust p when ``interval`` steps have passed. Returns p.

        ``reduce`` (data-parallel training: a sum over processes) turns this process's
        [sum of signs, count] into the global batch's, every step, so p, r_t and the accumulators are
        the same on every process and equal to one process's at the same global batch.
        """
        stats = [float(torch.sign(real_logits.detach().float()).sum()), float(real_logits.numel())]
        if reduce is not None:
            stats = reduce(stats)
        self._sum += stats[0]
        self._count += int(round(stats[1]))
        self._steps += 1
        if self._steps % self.interval == 0 and self._count:
            self.rt = self._sum / self._count
            step = math.copysign(1.0, self.rt - self.target) if self.rt != self.target else 0.0
            self.p = min(max(self.p + step * self._count / (self.speed_kimg * 1000), 0.0), self.max_p)
            self._sum, self._count = 0.0, 0
        return self.p

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (plain floats and ints; safe for weights_only loading)."""
        return {"p": self.p, "rt": self.rt, "target": self.target, "interval": self.interval,
                "speed_kimg": self.speed_kimg, "max_p": self.max_p,
                "sum": self._sum, "count": self._count, "steps": self._steps}

    def load_state_dict(self, state: dict) -> None:
        self.p, self.rt = float(state["p"]), float(state["rt"])
        self.target, self.interval = float(state["target"]), int(state["interval"])
        self.speed_kimg, self.max_p = float(state["speed_kimg"]), float(state["max_p"])
        self._sum, self._count, self._steps = float(state["sum"]), int(state["count"]), int(state["steps"])
