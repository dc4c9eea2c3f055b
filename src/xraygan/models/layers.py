"""Building blocks shared by StyleGAN2 and the progressively grown GAN, in plain PyTorch.

Implemented from the papers (no custom CUDA ops, every layer runs on CPU):

- equalised learning rate, pixelwise feature normalisation and the minibatch standard-deviation
  layer: Karras et al. 2018, "Progressive Growing of GANs for Improved Quality, Stability, and
  Variation" (ICLR), sections 3 and 4;
- modulated/demodulated convolution and noise inputs: Karras et al. 2020, "Analyzing and Improving
  the Image Quality of StyleGAN" (CVPR), section 2.2, written in the non-fused form (scale the
  activations, convolve with the shared weight, scale again), which is equivalent to the grouped
  form and friendlier to CPUs and mixed precision;
- anti-aliased resampling with the [1, 3, 3, 1] binomial filter: Zhang 2019 / StyleGAN2, written as
  a zero-insertion + depthwise convolution + striding ("upfirdn").
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2.0)


class ResolutionLadder:
    """Mixin for the frozen config dataclasses of the progressive architectures (StyleGAN2, PGGAN).

    Needs the fields ``size``, ``channel_base`` and ``channel_max``: checks that ``size`` is a power
    of two and gives the channel count at each resolution, ``min(channel_base // res, channel_max)``
    (Karras et al. 2018, 2020).
    """

    def __post_init__(self) -> None:
        if self.size < 4 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 4, got {self.size}")

    def channels(self, res: int) -> int:
        return max(1, min(self.channel_base // res, self.channel_max))


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) rescaled by sqrt(2) to keep unit variance (He gain)."""
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


def binomial_kernel(taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)) -> torch.Tensor:
    """The separable low-pass filter as a normalised 2-D kernel (sums to 1)."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[:, None] * k[None, :]
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter depthwise with ``kernel``, then keep every ``down``-th pixel.

    ``x`` is (N, C, H, W); ``pad`` is (before, after) on both spatial axes.
    """
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = kernel.to(dtype=x.dtype, device=x.device).flip([0, 1])[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=c, stride=down)   # striding = keeping every down-th output


def upsample2x(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Anti-aliased 2x upsampling of (N, C, H, W) -> (N, C, 2H, 2W) with a 4-tap kernel.

    Equals ``upfirdn2d(x, 4 * kernel, up=2, pad=(2, 1))`` but as a strided transposed depthwise
    convolution, which skips the multiplications by inserted zeros (4x fewer operations).
    """
    c = x.shape[1]
    weight = (kernel * 4).to(dtype=x.dtype, device=x.device)[None, None].expand(c, 1, *kernel.shape)
    return F.conv_transpose2d(x, weight, stride=2, padding=1, groups=c)


def downsample2x(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Anti-aliased 2x downsampling: (N, C, H, W) -> (N, C, H/2, W/2) with a 4-tap kernel."""
    return upfirdn2d(x, kernel, down=2, pad=(1, 1))


def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A 1x1 convolution; with one input or one output channel (fromRGB / toRGB of a one-channel image)
    as a broadcast multiply (and channel sum), which oneDNN's 1x1 convolution ran 10-50x slower on CPUs."""
    out_ch, in_ch = weight.shape[:2]
    if out_ch != 1 and in_ch != 1:
        return F.conv2d(x, weight, bias)
    if torch.is_autocast_enabled(x.device.type):  # the dtype autocast would give conv2d
        dtype = torch.get_autocast_dtype(x.device.type)
        x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype) if bias is not None else None
    if out_ch == 1:
        y = (x * weight.reshape(1, in_ch, 1, 1)).sum(dim=1, keepdim=True)
    else:
        y = x * weight.reshape(1, out_ch, 1, 1)
    return y + bias.reshape(1, -1, 1, 1) if bias is not None else y


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate (weights ~ N(0, 1), scaled at run time).

    ``lr_mul`` lowers the effective learning rate (StyleGAN's mapping network uses 0.01).
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init) / lr_mul)) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        out = F.linear(x, self.weight * self.scale, bias)
        return lrelu(out) if self.activation else out


class EqualConv2d(nn.Module):
    """2-D convolution with equalised learning rate; ``padding`` defaults to 'same' for odd kernels."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, bias: bool = True,
                 padding: Optional[int] = None, activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.padding = kernel // 2 if padding is None else padding
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.shape[-1] == 1 and self.padding == 0:
            out = conv1x1(x, self.weight * self.scale, self.bias)
        else:
            out = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)
        return lrelu(out) if self.activation else out


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit average square (PGGAN section 4.2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class MinibatchStdDev(nn.Module):
    """Append the average standard deviation over groups of samples as extra channels (PGGAN 3).

    The group size shrinks to the largest divisor of the batch that is <= ``group_size``. Under
    ``torchrun`` the groups are formed within each process's batch (a per-process statistic, like
    the per-GPU groups of the StyleGAN2 paper's implementation): N processes at batch B/N group
    other images together than one process at B. DCGAN's per-class feature
    (:class:`xraygan.models.dcgan.ClassMinibatchStd`) is of the global batch instead.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, n) + 1) if n % d == 0)
        f = self.num_channels
        y = x.reshape(g, n // g, f, c // f, h, w)          # (G, M, F, c, H, W)
        y = y - y.mean(dim=0)
        y = (y.pow(2).mean(dim=0) + 1e-8).sqrt()            # (M, F, c, H, W)
        y = y.mean(dim=[2, 3, 4]).reshape(n // g, f, 1, 1)  # (M, F, 1, 1)
        y = y.repeat(g, 1, h, w)                            # (N, F, H, W)
        return torch.cat([x, y], dim=1)


class ProjectionHead4:
    """The 4x4 end of the StyleGAN2 and PGGAN discriminators, a mixin of their ``nn.Module``:
    minibatch standard deviation, a 3x3 convolution, a fully connected layer to the features, one
    logit, and with classes a projection term <embed(y), features> / sqrt(dim) (Miyato & Koyama
    2018). The layers keep their names (``mbstd``, ``conv``, ``fc``, ``out``, ``embed``) on the
    discriminator itself, so checkpoints are unchanged."""

    def build_head(self, c4: int, num_classes: int, mbstd_group: int) -> None:
        self.mbstd = MinibatchStdDev(mbstd_group)
        self.conv = EqualConv2d(c4 + 1, c4, 3, activation=True)
        self.fc = EqualLinear(c4 * 16, c4, activation=True)
        self.out = EqualLinear(c4, 1)
        self.embed = EqualLinear(num_classes, c4, bias=False) if num_classes else None

    def head(self, h: torch.Tensor, labels: Optional[torch.Tensor], num_classes: int, return_features: bool):
        """Logits (N,) of the 4x4 activations ``h``; with ``return_features`` also the features (N, c4)."""
        feat = self.fc(self.conv(self.mbstd(h)).flatten(1))
        logits = self.out(feat)[:, 0]
        if self.embed is not None:
            if labels is None:
                raise ValueError("this discriminator is conditional: pass labels")
            onehot = F.one_hot(labels.long(), num_classes).to(feat.dtype)
            logits = logits + (self.embed(onehot) * feat).sum(dim=1) / math.sqrt(feat.shape[1])
        return (logits, feat) if return_features else logits


class ModulatedConv2d(nn.Module):
    """StyleGAN2 weight (de)modulation: scale input channels by a style, convolve, renormalise.

    ``upsample`` doubles the resolution first (anti-aliased). ``demodulate=False`` is used for
    the toRGB layers.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, w_dim: int, demodulate: bool = True,
                 upsample: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.demodulate = demodulate
        self.upsample = upsample
        self.padding = kernel // 2
        self.register_buffer("kernel", binomial_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)                                   # (N, in)
        weight = self.weight * self.scale                         # (out, in, k, k)
        if self.upsample:
            x = upsample2x(x, self.kernel)
        x = x * styles[:, :, None, None].to(x.dtype)
        x = conv1x1(x, weight.to(x.dtype)) if self.padding == 0 else F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            wsq = weight.pow(2).sum(dim=[2, 3])                   # (out, in)
            dcoef = torch.rsqrt(styles.float().pow(2) @ wsq.float().t() + 1e-8)  # (N, out)
            x = x * dcoef[:, :, None, None].to(x.dtype)
        return x


class NoiseInjection(nn.Module):
    """Add per-pixel Gaussian noise scaled by a learned strength (initialised at zero).

    ``mode``: ``random`` draws fresh noise (from ``generator`` when given), ``const`` uses a fixed
    buffer drawn at construction, ``none`` adds nothing.
    """

    def __init__(self, resolution: int) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("const_noise", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, mode: str = "random",
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if mode == "none":
            return x
        if mode == "const":
            noise = self.const_noise
        elif mode == "random":
            n, _, h, w = x.shape
            dev = generator.device if generator is not None else x.device
            noise = torch.randn(n, 1, h, w, generator=generator, device=dev).to(x.device)
        else:
            raise ValueError(f"noise mode must be random, const or none, not {mode!r}")
        return x + noise.to(x.dtype) * self.strength.to(x.dtype)


class AllReduceSum(torch.autograd.Function):
    """Sum over the processes of a ``torch.distributed`` group, differentiable: every process used
    the sum, so the gradient of a process's own part is the sum of every process's gradient of it.
    Used by the global-batch statistics of :class:`xraygan.models.dcgan.ClassMinibatchStd` and
    :class:`xraygan.training.distributed.GlobalBatchNorm`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        import torch.distributed as dist

        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad
