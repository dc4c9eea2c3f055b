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
  BatchNorm is the default (on the shared chest X-rays, 32 px, 420 steps, spectral norm + hinge
  gave per-class recall 0.02-0.07 against 0.30-0.47 with BatchNorm).

Conditional collapse (issue 12): a conditional D also gets a per-class minibatch standard
deviation feature (:class:`ClassMinibatchStd`, after Karras et al. 2018) so that a class whose
fakes repeat one chest is visible to D at once, and the trainer draws class-balanced real batches
(``--model-option mbstd`` / ``balance``, both ``auto`` = on when conditional). See
``benchmarks/conditional_collapse.py`` and the README for the measurements.

Channels at resolution r for a target size S: ``min(8 * width, width * S / (2 r))``, i.e. the
tutorial's 512-256-128-64 at 64 px, with at least ``width`` channels.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from xraygan.models.layers import AllReduceSum

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
        elif isinstance(m, nn.BatchNorm2d) and m.weight is not None:
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


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine, then a per-class scale and shift (de Vries et al. 2017,
    "Modulating early visual processing by language"; Miyato & Koyama 2018; Brock et al. 2019).

    gamma_y starts at 1 and beta_y at 0, so a fresh layer is a plain BatchNorm; the class then
    changes the statistics of *every* layer of G instead of 32 input numbers that the first
    BatchNorm can wash out.
    """

    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Embedding(n_classes, channels)
        self.beta = nn.Embedding(n_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.bn(x)  # (B, C, H, W)
        return h * self.gamma(labels)[:, :, None, None] + self.beta(labels)[:, :, None, None]


class _CBNUp(nn.Module):
    """Transposed conv 4x4/2 -> conditional BatchNorm -> ReLU."""

    def __init__(self, cin: int, cout: int, n_classes: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
        self.bn = ConditionalBatchNorm2d(cout, n_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x), labels))


class Generator(nn.Module):
    """Conditional DCGAN generator: (z (B, nz), labels (B,)) -> image (B, 1, S, S) in [-1, 1].

    ``n_classes = 0`` makes it unconditional (labels are ignored). ``cond`` says how the label
    enters a conditional G:

    - ``"concat"`` (default): a learned label embedding concatenated to z (Mirza & Osindero 2014).
    - ``"cbn"``: class-conditional BatchNorm in every block (per-class gain and bias,
      :class:`ConditionalBatchNorm2d`); the latent alone feeds the stem. Measured in
      ``benchmarks/conditional_collapse.py`` (32 px, 420 steps) it kept NORMAL diverse only by
      ignoring the label: its NORMAL images were read as NORMAL 32% of the time (real: 90%).
    - ``"both"``: the embedding in the stem and conditional BatchNorm (no better than concat there).

    A conditional G loads the weights of any of these layouts (:meth:`load_state_dict` switches).
    """

    def __init__(self, size: int = 64, latent_dim: int = 128, width: int = 64, n_classes: int = 0,
                 embed_dim: int = 32, cond: str = "concat") -> None:
        super().__init__()
        self.n_layers = check_size(size)
        if cond not in ("cbn", "concat", "both"):
            raise ValueError(f"cond must be cbn, concat or both, not {cond!r}")
        self.size, self.latent_dim, self.n_classes, self.width, self.embed_dim = size, latent_dim, n_classes, width, embed_dim
        self._build(cond)

    def _build(self, cond: str) -> None:
        for name in ("embed", "stem", "stem_cbn", "ups", "to_img", "stem_bn", "body"):
            if name in self._modules:
                del self._modules[name]
        size, width, n_classes, n = self.size, self.width, self.n_classes, self.n_layers
        self.cond = cond if n_classes else "none"
        c0 = channels(4, size, width)
        self.c0 = c0
        if self.cond in ("cbn", "both"):
            self.embed = nn.Embedding(n_classes, self.embed_dim) if self.cond == "both" else None
            extra = self.embed_dim if self.cond == "both" else 0
            self.stem = nn.Sequential(nn.Linear(self.latent_dim + extra, c0 * 16, bias=False))
            self.stem_cbn = ConditionalBatchNorm2d(c0, n_classes)
            res, ups = 4, []
            for _ in range(n - 3):
                ups.append(_CBNUp(channels(res, size, width), channels(res * 2, size, width), n_classes))
                res *= 2
            self.ups = nn.ModuleList(ups)
            self.to_img = nn.Sequential(nn.ConvTranspose2d(channels(res, size, width), 1, 4, 2, 1), nn.Tanh())
            dcgan_init(self)
            if self.embed is not None:
                nn.init.normal_(self.embed.weight, 0.0, 1.0)
            return
        self.embed = nn.Embedding(n_classes, self.embed_dim) if n_classes else None
        self.stem = nn.Sequential(nn.Linear(self.latent_dim + (self.embed_dim if n_classes else 0), c0 * 16, bias=False))
        self.stem_bn = nn.Sequential(nn.BatchNorm2d(c0), nn.ReLU(True))
        layers: list[nn.Module] = []
        res = 4
        for _ in range(n - 3):
            layers += _up(channels(res, size, width), channels(res * 2, size, width))
            res *= 2
        layers += [nn.ConvTranspose2d(channels(res, size, width), 1, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        dcgan_init(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 1.0)  # same scale as the latent

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load weights; a conditional G switches to the layout the weights were saved with, so
        checkpoints of the ``concat`` version (before issue 12's fix) still load and generate."""
        if self.n_classes:
            cbn = any(k.startswith("stem_cbn.") for k in state_dict)
            want = ("both" if any(k.startswith("embed.") for k in state_dict) else "cbn") if cbn else "concat"
            if want != self.cond:
                p, training = next(self.parameters()), self.training
                self._build(want)
                self.to(device=p.device, dtype=p.dtype)
                self.requires_grad_(p.requires_grad)
                self.train(training)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_classes and labels is None:
            raise ValueError("a conditional generator needs labels")
        if self.cond in ("cbn", "both"):
            if self.embed is not None:
                z = torch.cat([z, self.embed(labels)], dim=1)  # (B, nz + e)
            h = self.stem(z).view(z.shape[0], self.c0, 4, 4)  # (B, C0, 4, 4)
            h = torch.relu(self.stem_cbn(h, labels))
            for up in self.ups:
                h = up(h, labels)
            return self.to_img(h)  # (B, 1, S, S)
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)  # (B, nz + e)
        h = self.stem(z).view(z.shape[0], self.c0, 4, 4)  # (B, C0, 4, 4)
        return self.body(self.stem_bn(h))  # (B, 1, S, S)


class ClassMinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, PGGAN section 3), per class: one extra
    feature map holding the mean standard deviation of the features over the samples *of the same
    class* in the batch (over the whole batch when unconditional). A generator that repeats one
    image for a class gives that class's fakes a near-zero value, which D can use at once.

    Under ``torchrun`` (a process group of more than one process) and in training mode the
    statistic is that of the *global* batch, like the family's BatchNorm layers
    (:class:`~xraygan.training.distributed.GlobalBatchNorm`): two differentiable all-reduces of
    per-class sums -- counts and feature sums, then squared deviations from the global class means
    -- of ``n_classes x (features + 1)`` numbers each, so N processes at ``--batch`` B/N compute
    what one process computes at B (within float rounding), and each process's gradient reaches
    its own samples through every process's use of the statistic. In eval mode, or outside a
    process group, it is this process's batch. ``n_classes``: the number of classes (0: found
    with one more all-reduce when needed).
    """

    def __init__(self, n_classes: int = 0) -> None:
        super().__init__()
        self.n_classes = int(n_classes)

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        b = h.shape[0]
        if self.training and _world_size() > 1:
            s = self._global(h, labels)
        else:
            s = torch.zeros(b, dtype=h.dtype, device=h.device)
            if labels is None:
                if b > 1:
                    s = s + h.float().std(dim=0, unbiased=False).mean().to(h.dtype)
            else:
                for c in torch.unique(labels):
                    m = labels == c
                    if int(m.sum()) > 1:
                        s = torch.where(m, h[m].float().std(dim=0, unbiased=False).mean().to(h.dtype), s)
        return torch.cat([h, s.view(b, 1, 1, 1).expand(b, 1, h.shape[2], h.shape[3])], dim=1)

    def _global(self, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """(B,) per-sample value from the statistics of the global batch (all processes)."""
        x = h.float().flatten(1)  # (B, F)
        idx = torch.zeros(x.shape[0], dtype=torch.long, device=x.device) if labels is None else labels.long()
        k = 1 if labels is None else self.n_classes or _max_label(idx) + 1
        onehot = nn.functional.one_hot(idx, k).to(x.dtype).t()  # (K, B)
        sums = AllReduceSum.apply(torch.cat([onehot @ x, onehot.sum(1, keepdim=True)], dim=1))  # (K, F + 1)
        n = sums[:, -1:]  # global samples per class
        centred = x - (sums[:, :-1] / n.clamp(min=1))[idx]
        var = AllReduceSum.apply(onehot @ (centred * centred)) / n.clamp(min=1)  # (K, F)
        ok = n > 1  # a class seen once (or not at all) in the global batch keeps 0, as in one process
        per_class = torch.where(ok, var, torch.ones_like(var)).sqrt().mean(dim=1, keepdim=True)  # no sqrt(0) gradient
        return torch.where(ok, per_class, torch.zeros_like(per_class)).squeeze(1)[idx].to(h.dtype)


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _max_label(idx: torch.Tensor) -> int:
    """The largest label over all processes (how many classes the global batch may hold)."""
    import torch.distributed as dist

    t = idx.max().reshape(1).clone() if idx.numel() else torch.zeros(1, dtype=torch.long, device=idx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


class Discriminator(nn.Module):
    """DCGAN discriminator with a projection head: (x, labels) -> logit (B,).

    ``norm="bn"`` (default): the tutorial's BatchNorm after every strided conv but the first;
    ``norm="sn"``: spectral normalisation of every layer and no BatchNorm (SNGAN style).
    ``mbstd``: a per-class minibatch-std feature map before the last convolution
    (:class:`ClassMinibatchStd`; of the global batch under torchrun).
    """

    def __init__(self, size: int = 64, width: int = 64, n_classes: int = 0, norm: str = "bn", embed_init: float = 0.02,
                 mbstd: bool = False) -> None:
        super().__init__()
        n = check_size(size)
        if norm not in ("bn", "sn"):
            raise ValueError(f"norm must be bn or sn, not {norm!r}")
        self.n_classes, self.mbstd = n_classes, bool(mbstd)
        self._args = (size, width, n_classes, norm, embed_init)
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
        if self.mbstd:
            layers += [ClassMinibatchStd(n_classes)]
        layers += block(feat + int(self.mbstd), feat, 4, 1, 0, False)  # (B, F, 1, 1)
        self.features = nn.Sequential(*layers)
        self.head = sn(nn.Linear(feat, 1))
        self.embed = sn(nn.Embedding(n_classes, feat)) if n_classes else None
        dcgan_init(self)
        if self.embed is not None and norm == "bn":
            nn.init.normal_(self.embed.weight, 0.0, embed_init)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load weights; a D saved without (with) the minibatch-std layer is rebuilt to match."""
        has = any(v.ndim == 4 and v.shape[1] == v.shape[0] + 1 for k, v in state_dict.items() if k.startswith("features.") and "weight" in k)
        if has != self.mbstd:
            p = next(self.parameters())
            training = self.training
            self.__init__(*self._args, mbstd=has)
            self.to(device=p.device, dtype=p.dtype)
            self.requires_grad_(p.requires_grad)
            self.train(training)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, return_features: bool = False):
        """Logits (B,); with ``return_features`` also the penultimate features phi (B, F)."""
        h = x
        for m in self.features:
            h = m(h, labels if self.n_classes else None) if isinstance(m, ClassMinibatchStd) else m(h)
        phi = h.flatten(1)  # (B, F)
        out = self.head(phi).flatten()  # (B,)
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional discriminator needs labels")
            out = out + (self.embed(labels) * phi).sum(dim=1)  # projection term
        return (out, phi) if return_features else out
