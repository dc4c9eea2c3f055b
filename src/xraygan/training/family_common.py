"""Pieces shared by the StyleGAN2 and PGGAN families: paper defaults for the optimizer, network
widths derived from ``--width``, and the extra generator losses of the pneumonia-classifier
project we learn from (``feature_matching`` and ``perceptual`` model options).

- Feature matching: Salimans et al. 2016, section 3.1 (see :func:`gan_losses.feature_matching_loss`).
- Perceptual batch statistics: see :mod:`xraygan.training.perceptual`.
- Lazy regularisation changes Adam's lr and betas by c = k / (k + 1) (StyleGAN2, appendix B).
- Speed switches of every family (``--precision``, ``--channels-last``, fused Adam), chosen by the
  machine's capability and measured in ``benchmarks/train_speed.py``: see :func:`resolve_precision`.
"""
from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any, ContextManager, Optional

import torch

from xraygan.errors import XrayganError
from xraygan.training.config import TrainConfig
from xraygan.training.family_option_sets import ExtraLossOptions
from xraygan.training.family_options import parse_res_map_text
from xraygan.training.gan_losses import feature_matching_loss

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "bf16")
FAST_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags with native bfloat16 dot products


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matmuls are fast here: CUDA with bf16 support, or a CPU with AVX-512 BF16 or AMX.

    On an AVX2-only CPU PyTorch emulates bf16 and a 2048x2048 matmul ran 500x slower than in fp32.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device.type == "cpu" and any(f in cpu_flags() for f in FAST_BF16_CPU_FLAGS)


def resolve_precision(requested: str, device: torch.device, bf16_on_cpu: bool = True, amp: bool = False) -> str:
    """``fp32`` or ``bf16`` for ``--precision`` ``requested`` (auto, fp32, bf16) on ``device``.

    ``auto`` is bf16 autocast where bf16 is fast (:func:`fast_bf16`) and, on a CPU, the family gains
    from it (``bf16_on_cpu``; see :func:`apply_speed`), else fp32. The old ``--amp`` flag means bf16 on CUDA. An explicit ``bf16`` is honoured
    with a warning where it is slow.
    """
    if requested not in PRECISIONS:
        raise XrayganError(f"--precision {requested}: choose from {', '.join(PRECISIONS)}")
    if amp and device.type == "cuda" and requested == "auto":
        return "bf16"
    if requested == "auto":
        return "bf16" if fast_bf16(device) and (device.type == "cuda" or bf16_on_cpu) else "fp32"
    if requested == "bf16" and not fast_bf16(device):
        log.warning("--precision bf16 on a %s without native bfloat16 (no %s): expect it to be much slower than fp32",
                    device.type, " / ".join(FAST_BF16_CPU_FLAGS))
    return requested


def autocast_for(precision: str, device: torch.device) -> ContextManager:
    """bf16 autocast on ``device`` for precision ``bf16`` (no gradient scaler needed), else a no-op."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fused_adam_kwargs(device: torch.device) -> dict[str, Any]:
    """``{"fused": True}`` where PyTorch has a fused Adam for ``device`` (CPU and CUDA since 2.4), else {}."""
    return {"fused": True} if _has_fused_adam(device.type) else {}


@functools.lru_cache(maxsize=None)
def _has_fused_adam(device_type: str) -> bool:
    if device_type not in ("cpu", "cuda") or (device_type == "cuda" and not torch.cuda.is_available()):
        return False
    try:
        torch.optim.Adam([torch.zeros(1, device=device_type, requires_grad=True)], fused=True)
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


def to_channels_last(*modules: torch.nn.Module) -> None:
    """Store the 4-D weights of ``modules`` channels-last (NHWC); convolutions then run and return NHWC."""
    for m in modules:
        m.to(memory_format=torch.channels_last)


def apply_speed(family: Any) -> dict[str, Any]:
    """Resolve ``--precision`` and ``--channels-last`` for ``family`` on its device, convert its
    networks to channels-last when asked; returns ``{"precision", "channels_last"}`` (``family.speed``).

    Unset, each follows what ``benchmarks/train_speed.py`` measured for the family: a family opts in
    to bf16 on a fast-bf16 CPU with ``bf16_on_cpu = True`` (PGGAN: 1.3x; DCGAN gained nothing in
    training and StyleGAN2 lost a third) and to channels-last with ``channels_last_default = True``
    (StyleGAN2 1.3-1.5x, PGGAN 1.3-1.4x; DCGAN lost). bf16 on CUDA is on for every family. StyleGAN2
    and PGGAN use fused Adam (:func:`adam`; 1.0-1.2x), the DCGAN PyTorch's default (fused measured 0.8-0.9x).
    """
    cfg, device = family.cfg, family.device
    precision = resolve_precision(str(getattr(cfg, "precision", "auto")), device,
                                  bool(getattr(family, "bf16_on_cpu", False)), bool(getattr(cfg, "amp", False)))
    channels_last = getattr(cfg, "channels_last", None)
    if channels_last is None:  # unset: the family's measured choice
        channels_last = bool(getattr(family, "channels_last_default", False))
    if channels_last:
        to_channels_last(family.G, family.D)
    return {"precision": precision, "channels_last": channels_last}


def speed_line(model: str, precision: str, channels_last: bool, fused: bool, device: torch.device) -> str:
    """The line printed when training starts: what the speed switches resolved to, and why."""
    flags = [f for f in ("avx2", "avx512f", *FAST_BF16_CPU_FLAGS) if f in cpu_flags()] if device.type == "cpu" else []
    why = f"CPU flags {' '.join(flags) or 'none of avx2/avx512'}" if device.type == "cpu" else device.type
    return (f"speed: --model {model} on {device.type}: precision {precision}, channels_last {'on' if channels_last else 'off'}, "
            f"{'fused' if fused else 'for-loop'} Adam ({why})")


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
    params = list(params)
    device = params[0].device if params else torch.device("cpu")
    return torch.optim.Adam(params, lr=lr * c, betas=(b1**c, b2**c), eps=1e-8, **fused_adam_kwargs(device))


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
