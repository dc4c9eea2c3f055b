"""A projected discriminator on the shipped X-ray encoder (``--model projected``).

After Sauer, Chitta, Müller & Geiger 2021, "Projected GANs Converge Faster" (NeurIPS),
reimplemented from the paper at small scale. D never sees pixels directly: it reads the features of
a **fixed pretrained network** and judges them at several scales.

- Feature network F: the conv trunk of the shipped X-ray encoder (``xraygan/assets/xray_encoder.pt``,
  :mod:`xraygan.metrics.encoder`), frozen (its BatchNorm always uses the stored statistics). Images
  are resized to the encoder's input size (64 px) and the outputs of its last four stages (32, 16,
  8 and 4 px at 64 px input) are the four scales. Nothing is downloaded.
- Random projections (section 3.2): cross-channel mixing (CCM), a random 1x1 convolution per
  scale, and cross-scale mixing (CSM), random 3x3 convolutions that carry each deeper mixed map,
  upsampled, into the next shallower one (U-Net-like top-down addition). Both are drawn once from a
  seeded generator and never trained; they are stored as buffers, so ``D.parameters()`` holds only
  the trainable heads and a checkpoint holds everything.
- Multi-scale discriminators: one small head per scale (strided 4x4 convolutions, BatchNorm,
  LeakyReLU 0.2, spectral normalisation) down to 4x4, then a 4x4 convolution to features phi and
  a projection head (Miyato & Koyama 2018): ``logit = w^T phi + embed(y)^T phi``.

The paper trains it with the hinge loss and a FastGAN generator (``--model-option generator``).

Evaluation caveat: D (and so G's loss) reads the X-ray encoder's features, so a run of this family
must be judged only in an independent feature space (``--features random``, radiomics), never in
the encoder's own (``--features xray``).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from xraygan.models.fastgan import resize

ENCODER_ASSET = Path(__file__).resolve().parents[1] / "assets" / "xray_encoder.pt"
MIX_SEED = 20210917  # the fixed random projections (the same on every machine)


def read_encoder_trunk(path: str | Path = ENCODER_ASSET) -> tuple[dict[str, torch.Tensor], tuple[int, ...], int]:
    """(trunk weights, stage widths, input size) of an X-ray encoder checkpoint; a clear error otherwise."""
    from xraygan.errors import XrayganError

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        cfg = dict(ckpt["config"])
        widths, size = tuple(int(w) for w in cfg["widths"]), int(cfg.get("size", 64))
        trunk = {k[len("trunk."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("trunk.")}
    except Exception as e:  # missing, unreadable or another kind of file
        raise XrayganError(f"--model projected: the X-ray encoder {path} cannot be read ({type(e).__name__}: "
                           f"{' '.join(str(e).split())[:200]})") from None
    return trunk, widths, size


class FrozenEncoder(nn.Module):
    """The X-ray encoder's conv trunk as fixed buffers: (B, 1, S, S) in [-1, 1] -> its last four stages' maps."""

    def __init__(self, path: str | Path = ENCODER_ASSET) -> None:
        super().__init__()
        trunk, self.widths, self.input_size = read_encoder_trunk(path)
        self.n_stages = len(self.widths)
        for i in range(self.n_stages):
            # stage i: conv3x3 (stride 1 for the first, 2 after), BatchNorm (eval statistics), ReLU
            for name in ("0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
                self.register_buffer(f"s{i}_" + name.replace(".", "_"), trunk[f"{i}.{name}"].detach().clone().float())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = resize(x, self.input_size)
        outs = []
        for i in range(self.n_stages):
            g = lambda n: getattr(self, f"s{i}_{n}")  # noqa: E731
            h = F.conv2d(h, g("0_weight").to(h.dtype), stride=1 if i == 0 else 2, padding=1)
            h = F.relu(F.batch_norm(h, g("1_running_mean"), g("1_running_var"), g("1_weight"), g("1_bias"), training=False))
            outs.append(h)
        return outs[-4:]

    @property
    def out_channels(self) -> list[int]:
        return list(self.widths[-4:])


class RandomMixing(nn.Module):
    """Fixed random cross-channel (1x1) and cross-scale (3x3, top-down) mixing of the feature maps."""

    def __init__(self, in_channels: list[int], out_channels: int, seed: int = MIX_SEED) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.n = len(in_channels)

        def kaiming(cout: int, cin: int, k: int) -> torch.Tensor:
            return torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5

        for i, c in enumerate(in_channels):
            self.register_buffer(f"ccm{i}", kaiming(out_channels, c, 1))
            if i < self.n - 1:
                self.register_buffer(f"csm{i}", kaiming(out_channels, out_channels, 3))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        mixed = [F.conv2d(f, getattr(self, f"ccm{i}").to(f.dtype)) for i, f in enumerate(feats)]
        out = [mixed[-1]]
        for i in range(self.n - 2, -1, -1):  # deepest first: add the upsampled deeper map to the shallower one
            deeper = F.conv2d(out[0], getattr(self, f"csm{i}").to(out[0].dtype), padding=1)
            out.insert(0, mixed[i] + F.interpolate(deeper, size=mixed[i].shape[-2:], mode="bilinear", align_corners=False))
        return out


class ScaleHead(nn.Module):
    """One small discriminator on one scale's mixed features: (B, C, r, r) -> logits (B,)."""

    def __init__(self, cin: int, res: int, width: int, n_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = cin
        while res > 4:
            layers += [spectral_norm(nn.Conv2d(c, width, 4, 2, 1, bias=False)), nn.BatchNorm2d(width), nn.LeakyReLU(0.2)]
            c, res = width, res // 2
        layers += [spectral_norm(nn.Conv2d(c, width, min(4, res), 1, 0)), nn.LeakyReLU(0.2)]  # (B, width, 1, 1)
        self.body = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Linear(width, 1))
        self.embed = spectral_norm(nn.Embedding(n_classes, width)) if n_classes else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        phi = self.body(x).flatten(1)  # (B, width)
        out = self.head(phi).flatten()
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional discriminator needs labels")
            out = out + (self.embed(labels) * phi).sum(dim=1)
        return out


class ProjectedDiscriminator(nn.Module):
    """(x (B, 1, S, S) in [-1, 1], labels) -> logits (B, n_scales): one column per scale's head."""

    def __init__(self, width: int = 64, n_classes: int = 0, proj_channels: int = 64, encoder: str | Path = ENCODER_ASSET,
                 input_size: int = 0) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.features = FrozenEncoder(encoder)
        if input_size:  # read the encoder at another side than its own (cheaper, less faithful to its training)
            self.features.input_size = int(input_size)
        self.mix = RandomMixing(self.features.out_channels, proj_channels)
        # the scales' sides at the encoder's input size: stage i (0-based) has side input_size / 2**i
        n = self.features.n_stages
        sides = [self.features.input_size // 2 ** i for i in range(n - 4, n)]
        self.heads = nn.ModuleList(ScaleHead(proj_channels, s, width, n_classes) for s in sides)
        for m in self.heads.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
                w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
                nn.init.normal_(w, 0.0, 0.02)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        mixed = self.mix(self.features(x))
        return torch.stack([head(m, labels if self.n_classes else None) for head, m in zip(self.heads, mixed)], dim=1)
