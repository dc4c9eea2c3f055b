"""Losses and regularisers for StyleGAN2 and PGGAN, as small pure functions named after the papers.

- Non-saturating logistic loss: Goodfellow et al. 2014, as used by StyleGAN (Karras et al. 2019).
- R1 gradient penalty on reals: Mescheder et al. 2018, "Which Training Methods for GANs do actually
  Converge?"; applied lazily every k steps and scaled by k (StyleGAN2, section 3.1). Default gamma
  from the StyleGAN2-ADA heuristic gamma = 0.0002 * resolution**2 / batch (Karras et al. 2020).
- Path-length regularisation: StyleGAN2 section 3.2.
- WGAN-GP: Gulrajani et al. 2017, with PGGAN's drift term eps * E[D(x)**2] (Karras et al. 2018, A.1).
- Feature matching: Salimans et al. 2016, "Improved Techniques for Training GANs", section 3.1.
- Mode seeking: Mao et al. 2019, "Mode Seeking Generative Adversarial Networks for Diverse Image
  Synthesis" (MSGAN), equation 3, for conditional generators that collapse within a class.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F


def r1_gamma_heuristic(resolution: int, batch: int) -> float:
    """StyleGAN2-ADA's default R1 weight: 0.0002 * resolution**2 / batch."""
    return 0.0002 * resolution**2 / batch


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's logistic loss: softplus(D(fake)) + softplus(-D(real)), averaged."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """G's non-saturating loss: softplus(-D(G(z))), averaged."""
    return F.softplus(-fake_logits).mean()


def d_r1_penalty(real_logits: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """E[||grad_x D(x)||^2] over real images (``real_img`` must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_img, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def d_r1_loss(real_logits: torch.Tensor, real_img: torch.Tensor, gamma: float, interval: int = 1) -> torch.Tensor:
    """Lazy R1 term added to D's loss every ``interval`` steps: gamma / 2 * penalty * interval."""
    return d_r1_penalty(real_logits, real_img) * (gamma / 2) * interval


def g_path_length_penalty(fake_img: torch.Tensor, ws: torch.Tensor, mean_path_length: torch.Tensor,
                          generator: Optional[torch.Generator] = None, decay: float = 0.01
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """StyleGAN2 path-length penalty. Returns (penalty, updated running mean of path lengths).

    ``ws`` (N, num_ws, w_dim) must be part of the graph that produced ``fake_img`` (N, C, H, W).
    """
    dev = generator.device if generator is not None else fake_img.device
    noise = torch.randn(fake_img.shape, generator=generator, device=dev).to(fake_img)
    noise = noise / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
    (grad,) = torch.autograd.grad((fake_img * noise).sum(), ws, create_graph=True)
    lengths = grad.float().pow(2).sum(2).mean(1).sqrt()                # (N,)
    new_mean = mean_path_length + decay * (lengths.detach().mean() - mean_path_length)
    return (lengths - new_mean).pow(2).mean(), new_mean.detach()


def d_wgan_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, drift: float = 0.001) -> torch.Tensor:
    """WGAN critic loss E[D(fake)] - E[D(real)] plus PGGAN's drift term drift * E[D(real)^2]."""
    return fake_logits.mean() - real_logits.mean() + drift * real_logits.float().pow(2).mean()


def g_wgan_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """WGAN generator loss -E[D(G(z))]."""
    return -fake_logits.mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     generator: Optional[torch.Generator] = None, target: float = 1.0) -> torch.Tensor:
    """WGAN-GP: E[(||grad D(x_hat)|| - target)^2 / target^2] at random interpolates of real and fake."""
    dev = generator.device if generator is not None else real.device
    eps = torch.rand(len(real), 1, 1, 1, generator=generator, device=dev).to(real.device)
    x_hat = torch.lerp(real.detach().float(), fake.detach().float(), eps).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norm = grad.float().flatten(1).norm(dim=1)
    return ((norm - target).pow(2) / target**2).mean()


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the mean D features of a real and a fake batch (reals detached).

    Features are (N, F); averaging over F (not summing) keeps a weight meaningful across widths.
    """
    return (real_features.detach().float().mean(0) - fake_features.float().mean(0)).pow(2).mean()


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor, labels: Optional[torch.Tensor], eps: float = 1e-5) -> Optional[torch.Tensor]:
    """MSGAN's mode-seeking term, 1 / (mean |G(z1, c) - G(z2, c)| / mean |z1 - z2| + eps), to minimise.

    Pairs are disjoint pairs of the batch that share a label (neighbours in label order; any
    neighbours without labels); the means run over all pairs' pixels and latent entries, as in the
    paper. It grows without bound as images of different latents of one class become alike.
    None when the batch holds no such pair.
    """
    n = fake.shape[0]
    order = torch.arange(n, device=fake.device) if labels is None else torch.argsort(labels, stable=True)
    a, b = order[0:n - 1:2], order[1:n:2]
    if labels is not None:
        same = labels[a] == labels[b]
        a, b = a[same], b[same]
    if len(a) == 0:
        return None
    ratio = (fake[a] - fake[b]).abs().float().mean() / (z[a] - z[b]).abs().float().mean()
    return 1.0 / (ratio + eps)


MODE_SEEKING_WEIGHT_SIZE = 64  # from this training size an unset mode-seeking weight is 2, below it 1


def default_mode_seeking(size: int, conditional: bool) -> float:
    """The weight of :func:`mode_seeking_loss` when ``--model-option mode_seeking`` is unset.

    0 for an unconditional model (nothing to pull apart within a label). When conditional, 2 from
    :data:`MODE_SEEKING_WEIGHT_SIZE` px and 1 below, as measured (``benchmarks/quality_per_minute.py``,
    shared chest X-rays, docs/benchmarks.md): at 64 px after 30 CPU-minutes, weight 2 raised the lowest
    per-class recall over three seeds from 0.55 to 0.71 (random-CNN features); at 32 px after 4
    CPU-minutes the two weights tied on recall (0.79/0.78 vs 0.74/0.81 on two seeds) and weight 1 kept
    the lower FD, so it stays there.
    """
    if not conditional:
        return 0.0
    return 2.0 if size >= MODE_SEEKING_WEIGHT_SIZE else 1.0
