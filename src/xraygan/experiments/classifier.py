"""Training and scoring one classifier of the experiment (Adam, Kingma & Ba 2015; cross-entropy).

Images arrive as float tensors (n, 1, S, S) in [-1, 1], already at ``input_size`` (resized with
:func:`xraygan.data.dataset.resize_images`, the same resizer for real and synthetic images).
The ``real+classic`` arm adds the classic, X-ray-safe augmentation (:func:`classic_augment`):
small rotation, shift, brightness/contrast; never a flip. All randomness (initialisation, batch
order, augmentation) comes from ``seed``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xraygan.models.classifiers import build_classifier


@dataclass(frozen=True)
class ClassifierConfig:
    """How one classifier is trained; every field lands in results.json."""

    classifier: str = "small"
    input_size: int = 64
    epochs: int = 10
    steps: int | None = None  # total optimiser steps; when set it replaces ``epochs``
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    imagenet_weights: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def classic_augment(x: torch.Tensor, gen: torch.Generator, max_rot_deg: float = 10.0, max_shift: float = 0.06,
                    contrast: float = 0.2, brightness: float = 0.1) -> torch.Tensor:
    """Random small rotation, shift, contrast and brightness per image; no flip. (B,1,H,W) -> same."""
    b = x.shape[0]
    u = torch.rand(b, 5, generator=gen, device=gen.device).to(x.device) * 2 - 1  # uniform in [-1, 1]
    ang = u[:, 0] * math.radians(max_rot_deg)
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.stack([torch.stack([cos, -sin, u[:, 1] * max_shift * 2], 1),
                         torch.stack([sin, cos, u[:, 2] * max_shift * 2], 1)], 1)  # (B, 2, 3); grid units span 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # pad with the image minimum (-1 = black), like the dark border of a radiograph
    out = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * (1 + contrast * u[:, 3, None, None, None]) + mean + brightness * u[:, 4, None, None, None]
    return out.clamp(-1, 1)


def steps_per_epoch(n: int, batch: int) -> int:
    """Optimiser steps in one epoch of ``n`` images (the ragged last batch dropped; at least 1)."""
    return max(1, n // max(1, min(batch, n)))


def train_classifier(x: torch.Tensor, y: torch.Tensor, cfg: ClassifierConfig, seed: int, device: torch.device | str = "cpu",
                     augment: bool = False, num_classes: int = 2) -> nn.Module:
    """Train a fresh ``cfg.classifier`` on ``x`` (n,1,S,S) and labels ``y`` (n,); returns it in eval mode."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_classifier(cfg.classifier, num_classes, cfg.imagenet_weights).to(device)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(x)
    batch = min(cfg.batch, n)
    per_epoch = steps_per_epoch(n, cfg.batch)  # drop the ragged last batch (BatchNorm dislikes batches of 1)
    total = cfg.steps if cfg.steps else cfg.epochs * per_epoch
    model.train()
    step = 0
    while step < total:
        order = torch.randperm(n, generator=gen)
        for b in range(per_epoch):
            if step >= total:
                break
            idx = order[b * batch:(b + 1) * batch]
            xb, yb = x[idx].to(device), y[idx].to(device)
            if augment:
                xb = classic_augment(xb, gen)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return model.eval()


@torch.no_grad()
def predict_scores(model: nn.Module, x: torch.Tensor, device: torch.device | str = "cpu", batch: int = 256) -> np.ndarray:
    """Probability of the positive class (index 1) for each image of ``x`` (n,1,S,S)."""
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch].to(device))
        out.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu())
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


@torch.no_grad()
def predict_probs(model: nn.Module, x: torch.Tensor, device: torch.device | str = "cpu", batch: int = 256) -> np.ndarray:
    """Class probabilities (n, classes) for each image of ``x`` (n,1,S,S); the multi-class experiment's scores."""
    model.eval()
    out = [torch.softmax(model(x[i:i + batch].to(device)).float(), dim=1).cpu() for i in range(0, len(x), batch)]
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros((0, 0))
