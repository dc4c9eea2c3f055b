"""A trained generator ready to sample: :class:`Sampler`, the per-image seeds and sample grids.

It lives with training (the trainer samples its own grids and hands a :class:`Sampler` over its
EMA generator to evaluation callbacks); :mod:`xraygan.run` and :mod:`xraygan.generate` build one
from a run folder or a shipped model and re-export these names.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from xraygan.errors import XrayganError
from xraygan.utils import pixels

UNCONDITIONAL_FOLDER = "all"


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` of a generation with seed ``seed`` (63-bit, from SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0]) & ((1 << 63) - 1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(n, 1, H, W) in [-1, 1] -> (n, H, W) uint8 (the inverse of the dataset's scaling, rounded)."""
    return pixels.to_uint8(x.float()).squeeze(1).cpu().numpy()


def save_grid(images: torch.Tensor, path: str | Path, ncol: int = 8, pad: int = 2) -> np.ndarray:
    """Write (n, 1, H, W) images in [-1, 1] as one PNG grid, ``ncol`` per row, white padding; returns it (uint8)."""
    from PIL import Image

    from xraygan.utils.fs import atomic_write_bytes

    imgs = to_uint8(images)
    n, h, w = imgs.shape
    nrow = (n + ncol - 1) // ncol
    canvas = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad), 255, np.uint8)
    for i, im in enumerate(imgs):
        r, c = divmod(i, ncol)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return canvas


@dataclass
class Sampler:
    """A trained generator ready to sample (see the module docstring)."""

    family: Any  # a GANFamily
    generator: torch.nn.Module
    classes: list[str]
    n_classes: int  # 0 = unconditional
    run: Path
    checkpoint: str
    step: int

    @property
    def size(self) -> int:
        return int(self.family.cfg.size)

    @property
    def label_names(self) -> list[str]:
        """Folder/label names this sampler produces: the classes, or the one trained label, or 'all'."""
        if self.n_classes:
            return list(self.classes)
        label = self.family.cfg.label
        return [self.classes[0]] if label is not None else [UNCONDITIONAL_FOLDER]

    def label_index(self, label: str | int) -> int:
        """Index into :attr:`label_names` of ``label``; unknown labels are a clear error."""
        names = self.label_names
        if isinstance(label, (int, np.integer)) and 0 <= int(label) < len(names):
            return int(label)
        if str(label) in names:
            return names.index(str(label))
        if isinstance(label, str) and label.isdigit() and int(label) < len(names):
            return int(label)
        kind = "conditional run" if self.n_classes else "run trained on one label" if self.family.cfg.label is not None else "unconditional run"
        raise XrayganError(f"--label {label}: unknown label for this {kind} ({self.run}); its labels are: {', '.join(names)}")

    def labels_for(self, n: int, labels: str | int | Sequence[int] | None = None) -> list[int]:
        """Per-image label indices: equal shares (``i % K``), one fixed label, or given per image."""
        if labels is None:
            return [i % len(self.label_names) for i in range(n)]
        if isinstance(labels, (str, int, np.integer)):
            return [self.label_index(labels)] * n
        out = [self.label_index(v) for v in labels]
        if len(out) != n:
            raise ValueError(f"{len(out)} labels for {n} images")
        return out

    @torch.no_grad()
    def sample_seeds(self, seeds: Sequence[int], labels: Sequence[int], truncation: float | None = None, batch: int = 64) -> torch.Tensor:
        """One image per (seed, label index): (n, 1, S, S) float in [-1, 1] on the CPU."""
        fam, out = self.family, []
        was_training = self.generator.training
        self.generator.eval()
        for lo in range(0, len(seeds), batch):
            z = torch.cat([fam.latent(1, torch.Generator().manual_seed(int(s))) for s in seeds[lo: lo + batch]])
            y = torch.tensor(list(labels[lo: lo + batch]), dtype=torch.long, device=fam.device)
            out.append(fam.sample(self.generator, z, y if self.n_classes else torch.zeros_like(y), truncation).float().clamp(-1, 1).cpu())
        self.generator.train(was_training)  # a raw G sampled during training goes back to train mode
        return torch.cat(out) if out else torch.zeros(0, 1, self.size, self.size)

    def sample(self, n: int, labels: str | int | Sequence[int] | None = None, seed: int = 0,
               truncation: float | None = None) -> torch.Tensor:
        """``n`` images (n, 1, S, S) in [-1, 1]; the same images ``generate`` writes for this seed."""
        return self.sample_seeds([image_seed(seed, i) for i in range(n)], self.labels_for(n, labels), truncation)
