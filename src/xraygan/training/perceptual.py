"""VGG16 feature-statistics loss between a real and a fake batch (``--perceptual W --vgg-weights FILE``).

A GAN's real and fake batches are unpaired, so instead of a per-image perceptual distance (Johnson
et al. 2016) we compare batch statistics of VGG16 features (Simonyan & Zisserman 2015): the
channel means and the Gram matrices (Gatys et al. 2016, "Image Style Transfer Using Convolutional
Neural Networks") at relu1_2, relu2_2 and relu3_3. The weights are read from a local file holding
a torchvision ``vgg16`` state dict (the full model's or only its ``features``); nothing is
downloaded. Grayscale images are replicated to three channels and ImageNet-normalised here, at
the boundary of the ImageNet model.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from xraygan.errors import XrayganError
from xraygan.utils.pixels import signed_to_unit

# indices into torchvision's vgg16().features after which relu1_2, relu2_2, relu3_3 are computed
_CUTS = (4, 9, 16)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _load_state(path: Path) -> dict:
    if not path.is_file():
        raise XrayganError(f"--vgg-weights {path}: file not found; the perceptual loss needs a local torchvision "
                           f"vgg16 state dict (e.g. torch.save(torchvision.models.vgg16(weights='DEFAULT')"
                           f".state_dict(), '{path.name}') on a machine with internet access)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise XrayganError(f"--vgg-weights {path}: cannot read it as a PyTorch state dict ({e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise XrayganError(f"--vgg-weights {path}: expected a state dict of torchvision's vgg16")
    return {k[len("features."):] if k.startswith("features.") else k: v for k, v in state.items()
            if not k.startswith("classifier.")}


def _vgg16_features() -> nn.Sequential:
    """torchvision's vgg16 ``features`` trunk, built without the 120M-parameter classifier."""
    try:
        from torchvision.models.vgg import cfgs, make_layers

        return make_layers(cfgs["D"])
    except ImportError:  # pragma: no cover - older/newer torchvision layouts
        from torchvision.models import vgg16

        return vgg16(weights=None).features


class VGGFeatureStats(nn.Module):
    """Frozen VGG16 trunk up to relu3_3; ``loss(real, fake)`` compares batch feature statistics."""

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        path = Path(weights)
        features = _vgg16_features()[:_CUTS[-1]]
        state = {k: v for k, v in _load_state(path).items() if int(k.split(".")[0]) < _CUTS[-1]}
        missing, unexpected = features.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise XrayganError(f"--vgg-weights {path}: not a torchvision vgg16 state dict "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.slices = nn.ModuleList([features[a:b] for a, b in zip((0,) + _CUTS[:-1], _CUTS)])
        self.requires_grad_(False)
        self.eval()
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "VGGFeatureStats":
        return super().train(False)  # always frozen and in eval mode

    def stats(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(channel means (C,), Gram matrix (C, C)) per layer for images (N, 1|3, H, W) in [-1, 1]."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h = (signed_to_unit(x.float()) - self.mean) / self.std
        out = []
        for block in self.slices:
            h = block(h)
            f = h.flatten(2)                                            # (N, C, HW)
            gram = torch.bmm(f, f.transpose(1, 2)) / f.shape[2]          # (N, C, C)
            out.append((f.mean(dim=(0, 2)), gram.mean(0)))
        return out

    def loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Sum over layers of MSE(channel means) + MSE(Gram matrices); gradients flow to ``fake`` only."""
        with torch.no_grad():
            real_stats = self.stats(real)
        total = fake.new_zeros((), dtype=torch.float32)
        for (rm, rg), (fm, fg) in zip(real_stats, self.stats(fake)):
            total = total + (rm - fm).pow(2).mean() + (rg - fg).pow(2).mean()
        return total
