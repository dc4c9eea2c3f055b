"""The small X-ray encoder behind ``--features xray`` and a seeded random CNN for ``--features random``.

``XrayEncoder``: five 3x3 conv stages (BatchNorm, ReLU, stride 2 from the second) on 64 px
grayscale images in [-1, 1], global average pooling to a ``dim``-vector (the embedding used by
every feature metric) and a linear classifier head (normal / bacteria / virus) used for class
consistency. It is trained by ``scripts/train_xray_encoder.py`` and shipped as
``xraygan/assets/xray_encoder.pt`` (a weights-only checkpoint: ``config``, ``classes``,
``state_dict``, ``train_info``, optionally ``class_groups``: a dataset class name -> the head classes
that read as it; the shipped checkpoint predates the key and gets :data:`SHIPPED_CLASS_GROUPS`).

``RandomCNN``: randomly initialised features (Lee et al. 2022; random embeddings were also
shown informative by Naeem et al. 2020, section 5): a wider conv net without normalisation whose
weights come from a seeded ``torch.Generator`` (Kaiming-normal), so every machine gets the same
network without any weights file.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

# what the shipped encoder's head classes mean for a dataset's classes beyond their own names
SHIPPED_CLASS_GROUPS: dict[str, tuple[str, ...]] = {"pneumonia": ("bacteria", "virus")}


@dataclass(frozen=True)
class EncoderConfig:
    size: int = 64          # input side in pixels; other sizes are resized to it
    widths: tuple[int, ...] = (32, 64, 96, 128, 128)
    n_classes: int = 3

    @property
    def dim(self) -> int:
        return self.widths[-1]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


def _stage(cin: int, cout: int, stride: int, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class XrayEncoder(nn.Module):
    """Conv trunk -> (B, dim) embedding; ``head`` maps the embedding to class logits."""

    def __init__(self, config: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.config = config
        stages, cin = [], 1
        for i, w in enumerate(config.widths):
            stages.append(_stage(cin, w, 1 if i == 0 else 2, norm=True))
            cin = w
        self.trunk = nn.Sequential(*stages)
        self.head = nn.Linear(config.dim, config.n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, size, size) in [-1, 1] -> (B, dim)."""
        return self.trunk(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, n_classes)."""
        return self.head(self.embed(x))


class RandomCNN(nn.Module):
    """Randomly initialised conv features; identical for a given seed on every machine."""

    def __init__(self, seed: int = 0, widths: tuple[int, ...] = (32, 64, 128, 256, 256)):
        super().__init__()
        stages, cin = [], 1
        for i, w in enumerate(widths):
            stages.append(_stage(cin, w, 1 if i == 0 else 2, norm=False))
            cin = w
        self.trunk = nn.Sequential(*stages)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                    m.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).mean(dim=(2, 3))


def load_encoder(path) -> tuple[XrayEncoder, dict]:
    """Load a checkpoint written by ``scripts/train_xray_encoder.py``; returns (model in eval mode, checkpoint).

    Only tensors and plain values are read (``weights_only=True``): a file holding pickled Python
    objects, an unreadable file or another kind of checkpoint is a one-line :class:`XrayganError`.
    """
    import pickle

    from xraygan.errors import XrayganError

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickled objects (refused: loading them could run code), truncated file, not a torch file
        why = "it holds pickled Python objects, which are not loaded (they could run code)" if isinstance(e, pickle.UnpicklingError) \
            else f"it cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
        raise XrayganError(f"xray encoder {path}: {why}; give a checkpoint written by scripts/train_xray_encoder.py") from None
    try:
        cfg = dict(ckpt["config"])
        cfg["widths"] = tuple(cfg["widths"])
        model = XrayEncoder(EncoderConfig(**cfg))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise XrayganError(f"xray encoder {path}: not an xray encoder checkpoint ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
                           "give a checkpoint written by scripts/train_xray_encoder.py") from None
    return model.eval(), ckpt
