"""Every family's ``--model-option`` declarations (its ``Options`` dataclass), without torch, so
that ``xraygan train --help`` and ``--help-options`` can describe them without importing a model.

Each family class names its options (``Options = DCGANOptions``); :data:`FAMILY_OPTIONS` holds the
same classes by ``--model`` name (a test keeps them equal). Fields are declared with
:func:`~xraygan.training.family_options.option` (type, range, default, help).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from xraygan.training.family_options import option


@dataclass
class ExtraLossOptions:
    """Model options of the extra generator losses, shared by every family's options."""

    feature_matching: float = option(0.0, float, "weight of the feature-matching loss on D's penultimate features (0 = off)", lo=0.0)
    perceptual: float = option(0.0, float, "weight of the VGG16 batch-statistics loss (0 = off; needs vgg_weights)", lo=0.0)
    vgg_weights: str = option("", str, "local torchvision vgg16 state dict for perceptual (nothing is downloaded)")


@dataclass
class NoOptions:
    """A family without options of its own."""


@dataclass
class DCGANOptions(ExtraLossOptions):
    """``--model-option`` keys of ``--model dcgan``."""

    d_norm: str = option("bn", str, "discriminator normalisation: bn (tutorial BatchNorm) or sn (spectral norm)", choices=("bn", "sn"))
    # conditional-collapse fixes (issue 12; benchmarks/conditional_collapse.py). auto = on for a conditional model
    mbstd: Any = option("auto", "auto_bool", "D: per-class minibatch standard deviation feature before its last convolution (auto: on when conditional)")
    balance: Any = option("auto", "auto_bool", "draw real batches class-balanced: a uniform class, then a uniform image of it (auto: on when conditional)")
    g_cond: str = option("concat", str, "how a conditional G reads the label: concat (embedding ++ z), cbn (class-conditional BatchNorm) or both",
                         choices=("concat", "cbn", "both"))
    fake_labels: str = option("real", str, "labels of the fake batch: real (those of the real batch) or uniform", choices=("real", "uniform"))
    d_embed_init: float = option(0.02, float, "std of the projection embedding's initial weights (bn discriminator)", lo=0.0)
    mode_seeking: Optional[float] = option(None, float, "weight of MSGAN's mode-seeking term in G's loss: 1 / (image distance / latent distance) "
                                           "over pairs of one label in the batch (Mao et al. 2019; 0 = off; unset: when conditional 2 from 64 px and 1 below, "
                                           "else 0)", lo=0.0,
                                           legacy=0.0)  # runs from before the term trained without it


@dataclass
class FastGANOptions:
    """``--model-option`` keys of ``--model fastgan``."""

    rec_weight: float = option(1.0, float, "weight of D's self-supervised reconstruction loss (L1, whole image + a random quadrant; 0 = off)", lo=0.0)
    decoder_width: int = option(0, int, "channels of D's decoders (0: max(8, --width / 2))", lo=0)
    embed_dim: int = option(32, int, "size of G's label embedding (conditional)", lo=1)
    mbstd: Any = option("auto", "auto_bool", "D: per-class minibatch standard deviation map before its last convolution (auto: on when conditional)")
    balance: Any = option("auto", "auto_bool", "draw real batches class-balanced: a uniform class, then a uniform image of it (auto: on when conditional)")


@dataclass
class PGGANOptions(ExtraLossOptions):
    """Options of ``--model pggan``."""

    phase_kimg: float = option(20.0, float, "thousand images per fade-in and per stabilisation (paper: 600)", lo=0.0, lo_open=True)
    batch_per_res: dict = option({}, "res_map", "batch size per resolution, e.g. 128:32,256:16; other resolutions use --batch")
    gp_weight: float = option(10.0, float, "WGAN-GP lambda", lo=0.0)
    drift: float = option(0.001, float, "drift penalty epsilon", lo=0.0)
    channel_base: Optional[int] = option(None, int, "channels at resolution r = min(base // r, max); unset: from --width", lo=1)
    channel_max: Optional[int] = option(None, int, "channel cap; unset: min(8 * --width, 512)", lo=1)


@dataclass
class ProjectedOptions:
    """``--model-option`` keys of ``--model projected``."""

    generator: str = option("fastgan", str, "the generator: fastgan (skip-layer excitation, the paper's) or dcgan", choices=("fastgan", "dcgan"))
    proj_channels: int = option(64, int, "channels of the fixed random projections of the encoder's features", lo=1)
    encoder_size: int = option(64, int, "side images are resized to before the encoder (64: the side it was trained at; 32: about 4x cheaper)", lo=16)
    embed_dim: int = option(32, int, "size of G's label embedding (conditional)", lo=1)
    balance: Any = option("auto", "auto_bool", "draw real batches class-balanced: a uniform class, then a uniform image of it (auto: on when conditional)")


@dataclass
class StyleGAN2Options(ExtraLossOptions):
    """Options of ``--model stylegan2``."""

    r1_gamma: Optional[float] = option(None, float, "R1 weight; unset: the StyleGAN2-ADA heuristic 0.0002 * size**2 / batch", lo=0.0)
    r1_interval: int = option(16, int, "lazy R1 every N steps (0 = off)", lo=0)
    pl_weight: float = option(0.0, float, "path-length regularisation weight (paper: 2; 0 = off)", lo=0.0)
    pl_interval: int = option(4, int, "path-length regularisation every N steps", lo=1)
    mixing: float = option(0.9, float, "style-mixing probability", lo=0.0, hi=1.0)
    ada: bool = option(True, bool, "adaptive discriminator augmentation (replaces --diffaug when on)")
    ada_target: float = option(0.6, float, "ADA target of r_t = E[sign(D(real))]", lo=0.0, hi=1.0)
    ada_interval: int = option(4, int, "D steps between ADA p updates", lo=1)
    ada_kimg: float = option(100.0, float, "ADA p can move from 0 to 1 in this many thousand images", lo=0.0, lo_open=True)
    ada_p: float = option(0.0, float, "initial ADA p (with ada=false: a fixed augmentation probability)", lo=0.0, hi=1.0)
    mapping_layers: int = option(8, int, "layers of the mapping network", lo=1)
    channel_base: Optional[int] = option(None, int, "channels at resolution r = min(base // r, max); unset: from --width", lo=1)
    channel_max: Optional[int] = option(None, int, "channel cap; unset: min(8 * --width, 512)", lo=1)


# --model name -> its Options class (the same as get_family(name).Options)
FAMILY_OPTIONS: dict[str, type] = {
    "dcgan": DCGANOptions,
    "dcgan-tutorial": ExtraLossOptions,
    "stylegan2": StyleGAN2Options,
    "pggan": PGGANOptions,
    "fastgan": FastGANOptions,
    "projected": ProjectedOptions,
}
