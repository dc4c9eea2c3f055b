"""Progressively grown generator and discriminator (PGGAN) for one-channel images.

Reimplemented from Karras et al. 2018, "Progressive Growing of GANs for Improved Quality,
Stability, and Variation" (ICLR): training starts at 4x4 and adds a resolution block at a time;
a new block fades in linearly with ``alpha`` from 0 to 1 (section 2, figure 2); pixelwise feature
normalisation in G (4.2); minibatch standard deviation before D's last block (3); equalised
learning rate everywhere (4.1). Conditioning: the label's one-hot embedding is concatenated with z
in G and a projection head in D (Miyato & Koyama 2018).

``stage`` s means resolution 4 * 2**s; both networks take ``(stage, alpha)`` and work at that
resolution. Nearest-neighbour upsampling in G and average pooling in D, as in the paper.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from xraygan.models.layers import EqualConv2d, EqualLinear, PixelNorm, ProjectionHead4, ResolutionLadder


@dataclass(frozen=True)
class PGGANConfig(ResolutionLadder):
    """Architecture of a PGGAN pair. Channels at resolution r: min(channel_base // r, channel_max).

    The paper uses ``z_dim=512, channel_base=8192, channel_max=512``; the defaults are narrower.
    """

    size: int = 64
    img_channels: int = 1
    num_classes: int = 0
    z_dim: int = 256
    channel_base: int = 4096
    channel_max: int = 256
    mbstd_group: int = 4

    @property
    def num_stages(self) -> int:
        """Number of resolutions, 4 .. size (stage index runs 0 .. num_stages - 1)."""
        return int(math.log2(self.size)) - 1

    def to_dict(self) -> dict:
        return asdict(self)


def _check_stage(cfg: PGGANConfig, stage: Optional[int], alpha: float) -> int:
    stage = cfg.num_stages - 1 if stage is None else int(stage)
    if not 0 <= stage < cfg.num_stages:
        raise ValueError(f"stage must be in 0..{cfg.num_stages - 1}, got {stage}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return stage


class PGGANGenerator(nn.Module):
    """``forward(z, labels, stage, alpha)`` -> (N, C, 4*2**stage, same), unclamped, roughly [-1, 1]."""

    def __init__(self, cfg: PGGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm = PixelNorm()
        c4 = cfg.channels(4)
        in_dim = cfg.z_dim + (cfg.num_classes if cfg.num_classes else 0)
        self.fc = EqualLinear(in_dim, c4 * 16, activation=True)
        self.conv4 = EqualConv2d(c4, c4, 3, activation=True)
        self.blocks = nn.ModuleList()
        self.to_rgb = nn.ModuleList([EqualConv2d(c4, cfg.img_channels, 1)])
        ch = c4
        for s in range(1, cfg.num_stages):
            out = cfg.channels(4 * 2**s)
            self.blocks.append(nn.ModuleList([EqualConv2d(ch, out, 3, activation=True),
                                              EqualConv2d(out, out, 3, activation=True)]))
            self.to_rgb.append(EqualConv2d(out, cfg.img_channels, 1))
            ch = out

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None,
                stage: Optional[int] = None, alpha: float = 1.0) -> torch.Tensor:
        stage = _check_stage(self.cfg, stage, alpha)
        x = self.norm(z)
        if self.cfg.num_classes:
            if labels is None:
                raise ValueError("this generator is conditional: pass labels")
            x = torch.cat([x, F.one_hot(labels.long(), self.cfg.num_classes).to(z.dtype)], dim=1)
        x = self.norm(self.fc(x).reshape(z.shape[0], -1, 4, 4))
        x = self.norm(self.conv4(x))
        prev = x
        for s in range(1, stage + 1):
            prev = x
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            for conv in self.blocks[s - 1]:
                x = self.norm(conv(x))
        img = self.to_rgb[stage](x)
        if stage > 0 and alpha < 1.0:
            low = F.interpolate(self.to_rgb[stage - 1](prev), scale_factor=2, mode="nearest")
            img = torch.lerp(low, img, alpha)
        return img


class PGGANDiscriminator(ProjectionHead4, nn.Module):
    """``forward(x, labels, stage, alpha)`` -> logits (N,) for images at resolution 4*2**stage."""

    def __init__(self, cfg: PGGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.from_rgb = nn.ModuleList(EqualConv2d(cfg.img_channels, cfg.channels(4 * 2**s), 1, activation=True)
                                      for s in range(cfg.num_stages))
        self.blocks = nn.ModuleList()      # blocks[s - 1] maps resolution 4*2**s to half of it
        for s in range(1, cfg.num_stages):
            r = 4 * 2**s
            self.blocks.append(nn.Sequential(EqualConv2d(cfg.channels(r), cfg.channels(r), 3, activation=True),
                                             EqualConv2d(cfg.channels(r), cfg.channels(r // 2), 3, activation=True),
                                             nn.AvgPool2d(2)))
        self.build_head(cfg.channels(4), cfg.num_classes, cfg.mbstd_group)

    @property
    def feature_dim(self) -> int:
        return self.cfg.channels(4)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None, stage: Optional[int] = None,
                alpha: float = 1.0, return_features: bool = False):
        """Logits (N,); with ``return_features`` also the penultimate features (N, feature_dim)."""
        stage = _check_stage(self.cfg, stage, alpha)
        expect = 4 * 2**stage
        if x.shape[-1] != expect or x.shape[-2] != expect:
            raise ValueError(f"stage {stage} expects {expect}x{expect} images, got {tuple(x.shape[-2:])}")
        h = self.from_rgb[stage](x)
        if stage > 0:
            h = self.blocks[stage - 1](h)
            if alpha < 1.0:
                low = self.from_rgb[stage - 1](F.avg_pool2d(x, 2))
                h = torch.lerp(low, h, alpha)
            for s in range(stage - 1, 0, -1):
                h = self.blocks[s - 1](h)
        return self.head(h, labels, self.cfg.num_classes, return_features)


def real_at_stage(x: torch.Tensor, stage: int, alpha: float) -> torch.Tensor:
    """Real images (N, C, size, size) shown to D at ``stage``: average-pooled to 4*2**stage and, while a
    block fades in, blended with the half-resolution version upsampled back (PGGAN section 2)."""
    res = 4 * 2**stage
    factor = x.shape[-1] // res
    y = F.avg_pool2d(x, factor) if factor > 1 else x
    if stage > 0 and alpha < 1.0:
        low = F.interpolate(F.avg_pool2d(y, 2), scale_factor=2, mode="nearest")
        y = torch.lerp(low, y, alpha)
    return y
