"""Pieces shared by the StyleGAN2 and PGGAN families: paper defaults for the optimizer, network
widths derived from ``--width``, and the extra generator losses of the pneumonia-classifier
project we learn from (``feature_matching`` and ``perceptual`` model options).

- Feature matching: Salimans et al. 2016, section 3.1 (see :func:`gan_losses.feature_matching_loss`).
- Perceptual batch statistics: see :mod:`xraygan.training.perceptual`.
- Lazy regularisation changes Adam's lr and betas by c = k / (k + 1) (StyleGAN2, appendix B).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from xraygan.errors import XrayganError
from xraygan.training.config import TrainConfig
from xraygan.training.family_options import option, parse_res_map_text
from xraygan.training.gan_losses import feature_matching_loss


def user_or_paper(cfg: TrainConfig, name: str, paper: float) -> float:
    """``cfg.<name>`` when the user gave it (not None), else the paper's value."""
    value = getattr(cfg, name)
    return float(paper if value is None else value)


def adam(params, cfg: TrainConfig, which: str, reg_interval: int = 0) -> torch.optim.Adam:
    """Adam with ``--lr-g``/``--lr-d``, ``--beta1``/``--beta2`` (resolved to the family's paper values
    by :class:`~xraygan.training.families.GANFamily` when not given).

    ``reg_interval`` k > 0 applies the lazy-regularisation correction c = k / (k + 1).
    """
    lr = float(getattr(cfg, f"lr_{which}"))
    b1, b2 = float(cfg.beta1), float(cfg.beta2)
    c = reg_interval / (reg_interval + 1) if reg_interval > 0 else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(b1**c, b2**c), eps=1e-8)


def widths(cfg: TrainConfig, channel_base: Optional[int], channel_max: Optional[int]) -> tuple[int, int]:
    """(channel_base, channel_max) so that the highest resolution has ``--width`` channels,
    doubling at each lower resolution up to 8 x width (capped at 512), unless given explicitly."""
    base = int(channel_base) if channel_base else int(cfg.width) * int(cfg.size)
    top = int(channel_max) if channel_max else min(8 * int(cfg.width), 512)
    if base < 1 or top < 1:
        raise XrayganError(f"--model {cfg.model}: channel_base and channel_max must be positive")
    return base, top


def parse_res_map(value: object, what: str) -> dict[int, int]:
    """Parse ``"256:16,512:8"`` (or a mapping ``{256: 16}``) into {256: 16, 512: 8}; a clear error naming ``what``."""
    if value in (None, "", 0):
        return {}
    try:
        return parse_res_map_text(value)
    except ValueError as e:
        raise XrayganError(f"model option {what}={value!r}: {e}") from None


@dataclasses.dataclass
class ExtraLossOptions:
    """Model options of the extra generator losses, shared by every family's options."""

    feature_matching: float = option(0.0, float, "weight of the feature-matching loss on D's penultimate features (0 = off)", lo=0.0)
    perceptual: float = option(0.0, float, "weight of the VGG16 batch-statistics loss (0 = off; needs vgg_weights)", lo=0.0)
    vgg_weights: str = option("", str, "local torchvision vgg16 state dict for perceptual (nothing is downloaded)")


class ExtraGLosses:
    """Feature matching and VGG16 perceptual statistics added to G's loss (weights 0 = off).

    The VGG16 weights are read by :meth:`load` (called when training starts), not when a family is
    built, so generating from a run never needs them.
    """

    def __init__(self, options: ExtraLossOptions, device: torch.device) -> None:
        if options.feature_matching < 0 or options.perceptual < 0:
            raise XrayganError("model options feature_matching and perceptual must be >= 0 (0 = off)")
        self.fm, self.pw = float(options.feature_matching), float(options.perceptual)
        if self.pw > 0 and not options.vgg_weights:
            raise XrayganError("model option perceptual > 0 needs vgg_weights=FILE (a torchvision vgg16 state dict "
                               "saved on a machine with internet access; nothing is downloaded)")
        self.vgg_weights, self.device, self.vgg = options.vgg_weights, device, None

    def load(self) -> None:
        """Read the VGG16 weights if the perceptual loss is on (a missing file is a clear error)."""
        if self.pw > 0 and self.vgg is None:
            from xraygan.training.perceptual import VGGFeatureStats

            self.vgg = VGGFeatureStats(self.vgg_weights).to(self.device)

    def __call__(self, real: torch.Tensor, fake: torch.Tensor, real_feat: Optional[torch.Tensor],
                 fake_feat: Optional[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Extra G loss and its parts for logging (``real_feat``/``fake_feat``: D's penultimate features)."""
        total = fake.new_zeros((), dtype=torch.float32)
        logs: dict[str, float] = {}
        if self.fm > 0 and real_feat is not None and fake_feat is not None:
            fm = feature_matching_loss(real_feat, fake_feat)
            total = total + self.fm * fm
            logs["loss_fm"] = fm.item()
        self.load()
        if self.vgg is not None:
            if real.shape[-1] != fake.shape[-1]:
                real = torch.nn.functional.interpolate(real, size=fake.shape[-2:], mode="area")
            pl = self.vgg.loss(real, fake)
            total = total + self.pw * pl
            logs["loss_perceptual"] = pl.item()
        return total, logs
