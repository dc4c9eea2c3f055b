"""GAN losses as small pure functions on discriminator logits.

- Non-saturating BCE (Goodfellow et al. 2014, "Generative Adversarial Nets", section 3) with
  one-sided label smoothing of the real targets (Salimans et al. 2016, "Improved Techniques for
  Training GANs", section 3.4): only real labels are softened, to ``smooth`` (e.g. 0.9).
- Hinge (Lim & Ye 2017, "Geometric GAN"; Miyato et al. 2018), used with spectral normalisation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def d_bce_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """D's BCE loss: real targets ``smooth`` (one-sided smoothing), fake targets 0."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, smooth))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def g_bce_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """G's non-saturating loss: -log sigmoid(D(G(z)))."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def d_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's hinge loss: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_hinge_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """G's hinge loss: -E[D(G(z))]."""
    return -fake_logits.mean()


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Dispatch on ``kind`` (``bce`` or ``hinge``); ``smooth`` only applies to bce."""
    if kind == "bce":
        return d_bce_loss(real_logits, fake_logits, smooth)
    if kind == "hinge":
        return d_hinge_loss(real_logits, fake_logits)
    raise ValueError(f"unknown loss {kind!r}")


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """Dispatch on ``kind`` (``bce`` or ``hinge``)."""
    if kind == "bce":
        return g_bce_loss(fake_logits)
    if kind == "hinge":
        return g_hinge_loss(fake_logits)
    raise ValueError(f"unknown loss {kind!r}")
