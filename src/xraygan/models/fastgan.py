"""FastGAN networks for grayscale X-rays, 16 to 256 pixels (``--model fastgan``).

After Liu, Zhu, Song & Elgammal 2021, "Towards Faster and Stabilized GAN Training for
High-fidelity Few-shot Image Synthesis" (ICLR), reimplemented from the paper at small scale:

- Generator: a 4x4 stem from the latent (a transposed 4x4 convolution), then one up-sampling block
  per resolution (nearest-neighbour x2, 3x3 convolution, BatchNorm, gated linear unit), and
  **skip-layer excitation** (SLE, section 3.1): a low-resolution feature map gates the channels of a
  high-resolution one, ``y = x_high * sigmoid(conv1x1(lrelu(conv4x4(avgpool_4x4(x_low)))))``.
  The paper excites 128 px from 8 px (a ratio of 16); here every resolution r >= 16 is excited
  from ``max(4, r // 16)``, so small images get SLE too.
- Discriminator: residual down-sampling blocks (a strided 4x4 + 3x3 convolution path averaged with
  an average-pool + 1x1 path, BatchNorm, LeakyReLU 0.2, spectral normalisation) to 4x4, and small
  **decoders** for the self-supervised reconstruction loss (section 3.2): from D's 8x8 feature map
  one decoder redraws the whole (augmented) real image; from one random quadrant of a
  higher-resolution feature map another redraws that quadrant of the image. Both draw at half the
  image side (8 to 64 px; the paper draws 128 px from 1024 px images), which keeps the decoders at
  about a third of D's cost. The paper uses a
  perceptual (LPIPS) distance; here it is L1 on pixels, so nothing needs extra weights.
- Class conditioning: a learned label embedding concatenated to the latent (scale N(0, 1) like
  z), and a projection head in D (Miyato & Koyama 2018, "cGANs with Projection Discriminator"):
  ``D(x, y) = w^T phi(x) + embed(y)^T phi(x)``. A conditional D can add a per-class minibatch
  standard deviation map before its last convolution (:class:`~xraygan.models.dcgan.ClassMinibatchStd`).

Channels at resolution r for a target size S: ``min(8 * width, width * S / (2 r))`` with at least
``width`` (as the DCGAN of :mod:`xraygan.models.dcgan`). The GLU doubles every convolution's
outputs and the 3x3 convolutions run at the output resolution, so at equal ``--width`` a step costs
about 3.5x the DCGAN's (32 px, batch 64, one thread: 1.5 vs 0.43 CPU-s); at half the width about
the same (0.47 CPU-s; docs/benchmarks.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from xraygan.models.dcgan import ClassMinibatchStd, channels, dcgan_init

SIZES = (16, 32, 64, 128, 256)
REC_MAX = 64  # the reconstructions are drawn at half the image side, between 8 and REC_MAX pixels


def check_size(size: int) -> int:
    """``log2(size)``; FastGAN takes powers of two from 16 to 256 pixels."""
    if size not in SIZES:
        from xraygan.errors import XrayganError

        raise XrayganError(f"--size {size}: --model fastgan supports {', '.join(map(str, SIZES))} pixels")
    return int(math.log2(size))


def sle_source(res: int) -> int:
    """The resolution whose features excite resolution ``res`` (0: none)."""
    return max(4, res // 16) if res >= 16 else 0


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square resize: area averaging down, bilinear up."""
    if x.shape[-1] == size:
        return x
    if x.shape[-1] > size:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def quadrant(x: torch.Tensor, part: int) -> torch.Tensor:
    """Quadrant ``part`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of a (B, C, H, W) map."""
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    r, c = divmod(int(part), 2)
    return x[..., r * h:(r + 1) * h, c * w:(c + 1) * w]


class UpBlock(nn.Module):
    """Nearest x2, 3x3 conv to 2 * cout channels, BatchNorm, GLU -> cout channels."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 2 * cout, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.bn(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))), dim=1)


class SkipLayerExcitation(nn.Module):
    """SLE (Liu et al. 2021, figure 3): channel gates of a high-resolution map from a low-resolution one."""

    def __init__(self, c_low: int, c_high: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Conv2d(c_low, c_high, 4, 1, 0, bias=False),
                                  nn.LeakyReLU(0.1), nn.Conv2d(c_high, c_high, 1, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return high * self.gate(low)  # (B, C_high, H, W) * (B, C_high, 1, 1)


class FastGANGenerator(nn.Module):
    """(z (B, nz), labels (B,) or None) -> image (B, 1, S, S) in [-1, 1]; ``n_classes = 0``: unconditional."""

    def __init__(self, size: int = 64, latent_dim: int = 128, width: int = 64, n_classes: int = 0, embed_dim: int = 32) -> None:
        super().__init__()
        self.n_layers = check_size(size)
        self.size, self.latent_dim, self.n_classes = size, latent_dim, n_classes
        ch = lambda r: channels(r, size, width)  # noqa: E731
        self.embed = nn.Embedding(n_classes, embed_dim) if n_classes else None
        nin = latent_dim + (embed_dim if n_classes else 0)
        self.stem = nn.Sequential(nn.ConvTranspose2d(nin, 2 * ch(4), 4, 1, 0, bias=False), nn.BatchNorm2d(2 * ch(4)), nn.GLU(dim=1))
        self.res = [2 ** i for i in range(3, self.n_layers + 1)]  # 8 .. S
        self.ups = nn.ModuleDict({str(r): UpBlock(ch(r // 2), ch(r)) for r in self.res})
        self.sle = nn.ModuleDict({str(r): SkipLayerExcitation(ch(sle_source(r)), ch(r)) for r in self.res if sle_source(r)})
        self.to_img = nn.Sequential(nn.Conv2d(ch(size), 1, 3, 1, 1), nn.Tanh())
        dcgan_init(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 1.0)  # the scale of z

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional generator needs labels")
            z = torch.cat([z, self.embed(labels).to(z.dtype)], dim=1)  # (B, nz + e)
        h = self.stem(z[:, :, None, None])  # (B, C4, 4, 4)
        feats = {4: h}
        for r in self.res:
            h = self.ups[str(r)](h)  # (B, C_r, r, r)
            if str(r) in self.sle:
                h = self.sle[str(r)](feats[sle_source(r)], h)
            feats[r] = h
        return self.to_img(h)  # (B, 1, S, S)


class DownBlock(nn.Module):
    """FastGAN's residual down-sampling block: (strided 4x4 conv, BN, LReLU, 3x3 conv, BN, LReLU)
    averaged with (2x2 average pool, 1x1 conv, BN, LReLU); every conv spectrally normalised."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.main = nn.Sequential(spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1, bias=False)), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2),
                                  spectral_norm(nn.Conv2d(cout, cout, 3, 1, 1, bias=False)), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))
        self.direct = nn.Sequential(nn.AvgPool2d(2), spectral_norm(nn.Conv2d(cin, cout, 1, 1, 0, bias=False)),
                                    nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.direct(x)) / 2


class Decoder(nn.Module):
    """A small decoder of D: feature map (B, C, r, r) -> image (B, 1, R, R) by ``log2(R / r)`` up-blocks."""

    def __init__(self, cin: int, res: int, out_res: int, width: int) -> None:
        super().__init__()
        blocks, c = [], cin
        while res < out_res:
            blocks.append(UpBlock(c, width))
            c, res = width, res * 2
        self.body = nn.Sequential(*blocks, nn.Conv2d(c, 1, 3, 1, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FastGANDiscriminator(nn.Module):
    """(x (B, 1, S, S), labels) -> logits (B,); with ``part`` given also the reconstructions.

    ``forward(x, labels, part=q)`` returns ``(logits, {"whole": (B, 1, R, R), "part": (B, 1, R, R)})``:
    the whole image redrawn from the 8x8 features and quadrant ``q`` redrawn from the quadrant of
    the 16x16 features (8x8 at 16 px); :meth:`reconstruction_loss` compares them with the input.
    """

    def __init__(self, size: int = 64, width: int = 64, n_classes: int = 0, mbstd: bool = False, decoder_width: int = 0) -> None:
        super().__init__()
        n = check_size(size)
        self.size, self.n_classes, self.mbstd = size, n_classes, bool(mbstd)
        ch = lambda r: channels(r, size, width)  # noqa: E731
        self.stem = nn.Sequential(spectral_norm(nn.Conv2d(1, ch(size // 2), 4, 2, 1)), nn.LeakyReLU(0.2))
        self.res = [2 ** i for i in range(n - 1, 2, -1)]  # S/2 .. 8: each block halves it
        self.downs = nn.ModuleDict({str(r): DownBlock(ch(r), ch(r // 2)) for r in self.res})
        self.minibatch_std = ClassMinibatchStd() if self.mbstd else None
        self.final = nn.Sequential(spectral_norm(nn.Conv2d(ch(4) + int(self.mbstd), ch(4), 4, 1, 0)), nn.LeakyReLU(0.2))
        self.head = spectral_norm(nn.Linear(ch(4), 1))
        self.embed = spectral_norm(nn.Embedding(n_classes, ch(4))) if n_classes else None
        self.rec_size = max(8, min(size // 2, REC_MAX))
        self.part_res = 16 if size >= 32 else 8
        dw = decoder_width or max(8, width // 2)
        self.dec_whole = Decoder(ch(8), 8, self.rec_size, dw)
        self.dec_part = Decoder(ch(self.part_res), self.part_res // 2, self.rec_size, dw)
        dcgan_init(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, part: int | None = None):
        feats = {}
        h = self.stem(x)  # (B, C, S/2, S/2)
        feats[self.size // 2] = h
        for r in self.res:
            h = self.downs[str(r)](h)
            feats[r // 2] = h
        if self.minibatch_std is not None:
            h = self.minibatch_std(h, labels if self.n_classes else None)
        phi = self.final(h).flatten(1)  # (B, C4)
        out = self.head(phi).flatten()  # (B,)
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional discriminator needs labels")
            out = out + (self.embed(labels) * phi).sum(dim=1)  # projection term
        if part is None:
            return out
        rec = {"whole": self.dec_whole(feats[8]), "part": self.dec_part(quadrant(feats[self.part_res], part))}
        return out, rec

    def reconstruction_loss(self, x: torch.Tensor, rec: dict[str, torch.Tensor], part: int) -> torch.Tensor:
        """Mean L1 between the decoders' images and the input they saw (whole, and quadrant ``part``)."""
        whole = F.l1_loss(rec["whole"].float(), resize(x, self.rec_size).float())
        piece = F.l1_loss(rec["part"].float(), resize(quadrant(x, part), self.rec_size).float())
        return whole + piece
