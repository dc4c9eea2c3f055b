"""DCGAN generators and discriminators for grayscale X-rays, 8 to 256 pixels.

Two variants:

- :class:`TutorialGenerator` / :class:`TutorialDiscriminator` (``--model dcgan-tutorial``): the
  architecture of the PyTorch DCGAN tutorial (Radford, Metz & Chintala 2016, "Unsupervised
  Representation Learning with Deep Convolutional GANs", ICLR): transposed 4x4 convolutions with
  BatchNorm+ReLU in G, strided 4x4 convolutions with BatchNorm+LeakyReLU(0.2) in D, N(0, 0.02)
  initialisation, a 100-d latent. It is kept as the reference for benchmarks; the only changes are
  that depth follows the image size (the tutorial is fixed at 64 px) and D returns logits (the loss
  applies the sigmoid, which is numerically safer and equivalent).
- :class:`Generator` / :class:`Discriminator` (``--model dcgan``): the same DCGAN backbone, made
  conditional. G concatenates a learned label embedding to the latent (Mirza & Osindero 2014,
  "Conditional GANs") and starts with a linear layer to 4x4; D ends in a projection head (Miyato &
  Koyama 2018, "cGANs with Projection Discriminator", ICLR):
  ``D(x, y) = w^T phi(x) + embed(y)^T phi(x)``. D keeps the tutorial's BatchNorm by default, or
  uses spectral normalisation instead (``--model-option d_norm=sn``; Miyato et al. 2018, "Spectral
  Normalization for GANs", ICLR). Measured on the shipped sample (32 px, 400 steps, DiffAugment
  on), the spectrally normalised D stayed near chance (D loss 1.38) and G nearly collapsed, so
  BatchNorm is the default.

Channels at resolution r for a target size S: ``min(8 * width, width * S / (2 r))``, i.e. the
tutorial's 512-256-128-64 at 64 px, with at least ``width`` channels.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

SIZES = (8, 16, 32, 64, 128, 256)


def check_size(size: int) -> int:
    """Return ``log2(size)``; sizes must be powers of two from 8 to 256."""
    if size not in SIZES:
        from xraygan.errors import XrayganError

        raise XrayganError(f"--size {size}: DCGAN supports {', '.join(map(str, SIZES))} pixels")
    return int(math.log2(size))


def channels(res: int, size: int, width: int) -> int:
    """Feature maps at resolution ``res`` of a network for ``size`` pixels."""
    return max(width, min(8 * width, width * size // (2 * res)))


def dcgan_init(module: nn.Module) -> None:
    """The tutorial's initialisation: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02), bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(w, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


class TutorialGenerator(nn.Module):
    """The DCGAN tutorial generator: z (B, nz) -> image (B, 1, S, S) in [-1, 1]."""

    def __init__(self, size: int = 64, latent_dim: int = 100, width: int = 64) -> None:
        super().__init__()
        n = check_size(size)
        self.size, self.latent_dim = size, latent_dim
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, channels(4, size, width), 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(channels(4, size, width)), nn.ReLU(True)]
        res = 4
        for _ in range(n - 3):
            layers += _up(channels(res, size, width), channels(res * 2, size, width))
            res *= 2
        layers += [nn.ConvTranspose2d(channels(res, size, width), 1, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z[:, :, None, None])  # (B, 1, S, S)


class TutorialDiscriminator(nn.Module):
    """The DCGAN tutorial discriminator: image (B, 1, S, S) -> logit (B,)."""

    def __init__(self, size: int = 64, width: int = 64) -> None:
        super().__init__()
        n = check_size(size)
        res = size // 2
        layers: list[nn.Module] = [nn.Conv2d(1, channels(res, size, width), 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for _ in range(n - 3):
            cin, cout = channels(res, size, width), channels(res // 2, size, width)
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True)]
            res //= 2
        layers += [nn.Conv2d(channels(res, size, width), 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, return_features: bool = False):
        """Logits (B,); with ``return_features`` also the last hidden layer's features (B, F)."""
        h = self.net[:-1](x)  # (B, F, 4, 4)
        out = self.net[-1](h).flatten()  # (B,)
        return (out, h.flatten(1)) if return_features else out


class Generator(nn.Module):
    """Conditional DCGAN generator: (z (B, nz), labels (B,)) -> image (B, 1, S, S) in [-1, 1].

    ``n_classes = 0`` makes it unconditional (labels are ignored).
    """

    def __init__(self, size: int = 64, latent_dim: int = 128, width: int = 64, n_classes: int = 0,
                 embed_dim: int = 32) -> None:
        super().__init__()
        n = check_size(size)
        self.size, self.latent_dim, self.n_classes = size, latent_dim, n_classes
        self.embed = nn.Embedding(n_classes, embed_dim) if n_classes else None
        c0 = channels(4, size, width)
        self.stem = nn.Sequential(nn.Linear(latent_dim + (embed_dim if n_classes else 0), c0 * 16, bias=False))
        self.stem_bn = nn.Sequential(nn.BatchNorm2d(c0), nn.ReLU(True))
        layers: list[nn.Module] = []
        res = 4
        for _ in range(n - 3):
            layers += _up(channels(res, size, width), channels(res * 2, size, width))
            res *= 2
        layers += [nn.ConvTranspose2d(channels(res, size, width), 1, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.c0 = c0
        dcgan_init(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 1.0)  # same scale as the latent

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional generator needs labels")
            z = torch.cat([z, self.embed(labels)], dim=1)  # (B, nz + e)
        h = self.stem(z).view(z.shape[0], self.c0, 4, 4)  # (B, C0, 4, 4)
        return self.body(self.stem_bn(h))  # (B, 1, S, S)


class Discriminator(nn.Module):
    """DCGAN discriminator with a projection head: (x, labels) -> logit (B,).

    ``norm="bn"`` (default): the tutorial's BatchNorm after every strided conv but the first;
    ``norm="sn"``: spectral normalisation of every layer and no BatchNorm (SNGAN style).
    """

    def __init__(self, size: int = 64, width: int = 64, n_classes: int = 0, norm: str = "bn") -> None:
        super().__init__()
        n = check_size(size)
        if norm not in ("bn", "sn"):
            raise ValueError(f"norm must be bn or sn, not {norm!r}")
        self.n_classes = n_classes
        sn = spectral_norm if norm == "sn" else (lambda m: m)

        def block(cin: int, cout: int, k: int, s: int, p: int, bn: bool) -> list[nn.Module]:
            layers = [sn(nn.Conv2d(cin, cout, k, s, p, bias=not bn))]
            return layers + ([nn.BatchNorm2d(cout)] if bn else []) + [nn.LeakyReLU(0.2, True)]

        res = size // 2
        layers = block(1, channels(res, size, width), 4, 2, 1, False)
        for _ in range(n - 3):
            layers += block(channels(res, size, width), channels(res // 2, size, width), 4, 2, 1, norm == "bn")
            res //= 2
        feat = channels(res, size, width)
        layers += block(feat, feat, 4, 1, 0, False)  # (B, F, 1, 1)
        self.features = nn.Sequential(*layers)
        self.head = sn(nn.Linear(feat, 1))
        self.embed = sn(nn.Embedding(n_classes, feat)) if n_classes else None
        dcgan_init(self)
        if self.embed is not None and norm == "bn":
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, return_features: bool = False):
        """Logits (B,); with ``return_features`` also the penultimate features phi (B, F)."""
        phi = self.features(x).flatten(1)  # (B, F)
        out = self.head(phi).flatten()  # (B,)
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional discriminator needs labels")
            out = out + (self.embed(labels) * phi).sum(dim=1)  # projection term
        return (out, phi) if return_features else out
