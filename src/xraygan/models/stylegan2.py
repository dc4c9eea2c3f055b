"""StyleGAN2 generator and discriminator for one-channel images, in plain PyTorch.

Reimplemented from Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"
(CVPR): mapping network with a low learning rate, modulated/demodulated 3x3 convolutions, noise
inputs, skip-architecture generator (toRGB outputs summed across resolutions) and residual
discriminator with a minibatch standard-deviation layer. Conditioning follows StyleGAN2-ADA
(Karras et al. 2020, NeurIPS): a label embedding concatenated with z in the mapping network; the
discriminator is a projection discriminator (Miyato & Koyama 2018, "cGANs with Projection
Discriminator"). Truncation pulls w toward the running mean of w, kept per class when conditional.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import nn

from xraygan.models.layers import (EqualConv2d, EqualLinear, ModulatedConv2d,
                                   NoiseInjection, PixelNorm, ProjectionHead4, ResolutionLadder, binomial_kernel, downsample2x,
                                   lrelu, upsample2x)


@dataclass(frozen=True)
class StyleGAN2Config(ResolutionLadder):
    """Architecture of a StyleGAN2 pair. Channels at resolution r: min(channel_base // r, channel_max).

    The paper's config F is ``z_dim=w_dim=512, channel_base=32768, channel_max=512``; the defaults
    here are narrower so that 64-256 px models train on a CPU or a single small GPU.
    """

    size: int = 64
    img_channels: int = 1
    num_classes: int = 0            # 0 = unconditional
    z_dim: int = 256
    w_dim: int = 256
    mapping_layers: int = 8
    channel_base: int = 8192
    channel_max: int = 256
    mbstd_group: int = 4

    @property
    def num_ws(self) -> int:
        """Number of w vectors the synthesis network consumes (one per modulated conv + the last toRGB)."""
        return 2 * int(math.log2(self.size)) - 2

    def to_dict(self) -> dict:
        return asdict(self)


class MappingNetwork(nn.Module):
    """z (+ label embedding) -> w through an MLP; tracks the mean w (per class) for truncation."""

    def __init__(self, cfg: StyleGAN2Config, lr_mul: float = 0.01, w_avg_beta: float = 0.995) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm = PixelNorm()
        in_dim = cfg.z_dim
        if cfg.num_classes:
            self.embed = EqualLinear(cfg.num_classes, cfg.w_dim)
            in_dim += cfg.w_dim
        dims = [in_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.layers = nn.ModuleList(EqualLinear(a, b, lr_mul=lr_mul, activation=True)
                                    for a, b in zip(dims[:-1], dims[1:]))
        self.w_avg_beta = w_avg_beta
        self.register_buffer("w_avg", torch.zeros(max(cfg.num_classes, 1), cfg.w_dim))

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, truncation: float = 1.0,
                update_w_avg: bool = False) -> torch.Tensor:
        """(N, z_dim) [+ (N,) int labels] -> (N, w_dim)."""
        x = self.norm(z)
        if self.cfg.num_classes:
            if labels is None:
                raise ValueError("this generator is conditional: pass labels")
            onehot = nn.functional.one_hot(labels.long(), self.cfg.num_classes).to(z.dtype)
            x = torch.cat([x, self.norm(self.embed(onehot))], dim=1)
        for layer in self.layers:
            x = layer(x)
        idx = labels.long() if self.cfg.num_classes else torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        if update_w_avg:
            self._update_w_avg(x.detach().float(), idx)
        if truncation != 1.0:
            avg = self.w_avg[idx].to(x.dtype)
            x = avg + truncation * (x - avg)
        return x

    @torch.no_grad()
    def _update_w_avg(self, w: torch.Tensor, idx: torch.Tensor) -> None:
        k = self.w_avg.shape[0]
        sums = torch.zeros_like(self.w_avg).index_add_(0, idx, w)
        counts = torch.bincount(idx, minlength=k).to(w.dtype)
        present = counts > 0
        means = sums[present] / counts[present, None]
        self.w_avg[present] = torch.lerp(means, self.w_avg[present], self.w_avg_beta)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + noise + bias + leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim, upsample=upsample)
        self.noise = NoiseInjection(resolution)
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        x = self.noise(self.conv(x, w), noise_mode, generator)
        return lrelu(x + self.bias[None, :, None, None].to(x.dtype))


class ToRGB(nn.Module):
    """Modulated 1x1 conv without demodulation, producing image channels."""

    def __init__(self, in_ch: int, img_channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, img_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None].to(x.dtype)


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> image (N, C, size, size), skip architecture."""

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.cfg = cfg
        c4 = cfg.channels(4)
        self.const = nn.Parameter(torch.randn(1, c4, 4, 4))
        self.conv4 = SynthesisLayer(c4, c4, cfg.w_dim, 4)
        self.rgb4 = ToRGB(c4, cfg.img_channels, cfg.w_dim)
        self.blocks = nn.ModuleList()
        self.rgbs = nn.ModuleList()
        res, ch = 8, c4
        while res <= cfg.size:
            out = cfg.channels(res)
            self.blocks.append(nn.ModuleList([SynthesisLayer(ch, out, cfg.w_dim, res, upsample=True),
                                              SynthesisLayer(out, out, cfg.w_dim, res)]))
            self.rgbs.append(ToRGB(out, cfg.img_channels, cfg.w_dim))
            res, ch = res * 2, out
        self.register_buffer("kernel", binomial_kernel(), persistent=False)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random",
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        x = self.const.expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        x = self.conv4(x, ws[:, 0], noise_mode, generator)
        img = self.rgb4(x, ws[:, 1])
        i = 1
        for (up, conv), rgb in zip(self.blocks, self.rgbs):
            x = up(x, ws[:, i], noise_mode, generator)
            x = conv(x, ws[:, i + 1], noise_mode, generator)
            img = upsample2x(img, self.kernel) + rgb(x, ws[:, i + 2])
            i += 2
        return img


class StyleGAN2Generator(nn.Module):
    """Mapping + synthesis. ``forward(z, labels)`` -> (N, C, size, size), roughly in [-1, 1] (not clamped)."""

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    def make_ws(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, truncation: float = 1.0,
                mixing_prob: float = 0.0, generator: Optional[torch.Generator] = None,
                update_w_avg: bool = False) -> torch.Tensor:
        """Map z to per-layer styles (N, num_ws, w_dim), with style mixing regularisation.

        With probability ``mixing_prob`` per sample, layers from a random crossover point on use
        the w of a second latent drawn from ``generator``.
        """
        n = self.cfg.num_ws
        w = self.mapping(z, labels, truncation, update_w_avg)
        ws = w[:, None].repeat(1, n, 1)
        if mixing_prob > 0:
            dev = generator.device if generator is not None else z.device
            z2 = torch.randn(z.shape, generator=generator, device=dev).to(z)
            w2 = self.mapping(z2, labels, truncation, False)
            cut = torch.randint(1, n, (len(z),), generator=generator, device=dev).to(z.device)
            mix = torch.rand(len(z), generator=generator, device=dev).to(z.device) < mixing_prob
            cut = torch.where(mix, cut, torch.full_like(cut, n))
            use2 = torch.arange(n, device=z.device)[None, :] >= cut[:, None]   # (N, num_ws)
            ws = torch.where(use2[:, :, None], w2[:, None], ws)
        return ws

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, truncation: float = 1.0,
                noise_mode: str = "random", generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return self.synthesis(self.make_ws(z, labels, truncation), noise_mode, generator)


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs with a 2x anti-aliased downsample, plus a 1x1 skip; sum / sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3, activation=True)
        self.conv1 = EqualConv2d(in_ch, out_ch, 3, activation=True)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False)
        self.register_buffer("kernel", binomial_kernel(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(downsample2x(x, self.kernel))
        x = self.conv1(downsample2x(self.conv0(x), self.kernel))
        return (x + y) * (1 / math.sqrt(2))


class StyleGAN2Discriminator(ProjectionHead4, nn.Module):
    """Residual discriminator; ``forward(x, labels)`` -> logits (N,). Projection head when conditional."""

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.from_rgb = EqualConv2d(cfg.img_channels, cfg.channels(cfg.size), 1, activation=True)
        blocks, res = [], cfg.size
        while res > 4:
            blocks.append(DiscriminatorBlock(cfg.channels(res), cfg.channels(res // 2)))
            res //= 2
        self.blocks = nn.Sequential(*blocks)
        self.build_head(cfg.channels(4), cfg.num_classes, cfg.mbstd_group)

    @property
    def feature_dim(self) -> int:
        return self.cfg.channels(4)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None,
                return_features: bool = False):
        """Logits (N,); with ``return_features`` also the penultimate features (N, feature_dim)."""
        h = self.blocks(self.from_rgb(x))
        return self.head(h, labels, self.cfg.num_classes, return_features)
