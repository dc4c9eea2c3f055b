"""Classifiers for the experiment: torchvision ResNet-18/50 (He et al. 2016), DenseNet-121
(Huang et al. 2017) adapted to one input channel, and a small fast CNN for CPU.

Grayscale end to end: the first convolution takes one channel. ImageNet weights are optional and
come only from a local file (``--imagenet-weights FILE``, a torchvision ``state_dict``); the
pretrained 3-channel first convolution is folded into one channel by summing over its input
channels, which gives the same response to a gray image replicated to RGB.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from xraygan.errors import XrayganError

CLASSIFIERS = ("small", "resnet18", "resnet50", "densenet121")
# name of the first conv and of the classification head in each torchvision model's state dict
_FIRST_CONV = {"resnet18": "conv1", "resnet50": "conv1", "densenet121": "features.conv0"}
_HEAD = {"resnet18": "fc", "resnet50": "fc", "densenet121": "classifier"}


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU-pool blocks, global average pooling and a linear head; any size >= 8."""

    def __init__(self, num_classes: int = 2, width: int = 16):
        super().__init__()
        chans = [1, width, width * 2, width * 4, width * 4]
        blocks: list[nn.Module] = []
        for i in range(4):
            blocks += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True)]
            if i < 3:
                blocks.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, num_classes)
        return self.head(self.features(x).mean(dim=(2, 3)))


def _set_module(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent = model
    *path, last = dotted.split(".")
    for p in path:
        parent = getattr(parent, p)
    setattr(parent, last, new)


def _get_module(model: nn.Module, dotted: str) -> nn.Module:
    for p in dotted.split("."):
        model = getattr(model, p)
    return model


def _one_channel_conv(conv: nn.Conv2d) -> nn.Conv2d:
    return nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)


def load_imagenet_state(path: str | Path, name: str) -> dict[str, torch.Tensor]:
    """Read a local torchvision state dict and fold its 3-channel first conv into one channel."""
    path = Path(path)
    if not path.is_file():
        raise XrayganError(
            f"--imagenet-weights {path}: file not found; download the torchvision {name} ImageNet weights "
            "on a machine with internet access and pass the local .pth file, or leave the option out to train from scratch")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error
        raise XrayganError(f"--imagenet-weights {path}: not a readable PyTorch state dict ({e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    key = _FIRST_CONV[name] + ".weight"
    if key not in state:
        raise XrayganError(f"--imagenet-weights {path}: no '{key}' tensor; is this a torchvision {name} state dict?")
    w = state[key]
    if w.ndim == 4 and w.shape[1] == 3:
        state = dict(state)
        state[key] = w.sum(dim=1, keepdim=True)  # (out, 3, k, k) -> (out, 1, k, k)
    return state


def build_classifier(name: str = "small", num_classes: int = 2, imagenet_weights: str | Path | None = None) -> nn.Module:
    """A one-channel classifier ``name`` (see :data:`CLASSIFIERS`) with ``num_classes`` outputs."""
    if name not in CLASSIFIERS:
        raise XrayganError(f"--classifier {name}: unknown; choose one of {', '.join(CLASSIFIERS)}")
    if name == "small":
        if imagenet_weights:
            raise XrayganError("--imagenet-weights: the small CNN has no ImageNet weights; use --classifier resnet18, resnet50 or densenet121")
        return SmallCNN(num_classes)
    import torchvision.models as tvm

    model = getattr(tvm, name)(weights=None)  # 1000-class head, so an ImageNet state dict fits
    conv = _FIRST_CONV[name]
    _set_module(model, conv, _one_channel_conv(_get_module(model, conv)))
    if imagenet_weights:
        state = load_imagenet_state(imagenet_weights, name)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise XrayganError(f"--imagenet-weights {imagenet_weights}: does not match torchvision {name} ({str(e).splitlines()[0]})") from None
    head = _get_module(model, _HEAD[name])
    _set_module(model, _HEAD[name], nn.Linear(head.in_features, num_classes))
    return model
