"""Generate labelled synthetic X-rays from a trained run (``xraygan generate``).

Two ways in:

- :func:`generate` writes PNGs to ``DIR/<label>/synthetic_000000.png`` (so ``DIR`` is a valid
  ``prepare``/``evaluate`` input) and ``DIR/manifest.csv`` (file, label, seed, run, checkpoint).
  The folder name is the label made safe (:func:`xraygan.utils.paths.safe_component`: a label such
  as ``../x`` or ``a/b`` never leaves ``DIR``); the manifest keeps the label's own text.
- :func:`load_generator` returns a :class:`Sampler` for code that wants tensors::

      s = load_generator("runs/cxr", checkpoint="latest")
      x = s.sample(16, labels="PNEUMONIA", seed=0)      # (16, 1, S, S) float in [-1, 1], CPU
      x = s.sample(100)                                  # classes in equal shares (i % n_classes)

Seeds: image ``i`` of a call with seed ``S`` uses its own ``torch.Generator`` seeded with
:func:`image_seed` ``(S, i)`` for its latent, and (without a fixed label) label ``i % n_classes``,
so the first 37 images of ``n=100`` are the images of ``n=37``. The EMA generator is used when the
run has one; it is evaluated in eval mode with BatchNorm statistics recomputed at save time.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from xraygan.errors import UsageError, XrayganError
from xraygan.utils import pixels
from xraygan.utils.fs import locked_output
from xraygan.utils.runtime import make_module_callable

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


def load_generator(run: str | Path, checkpoint: str | Path = "latest", device: str = "auto", ema: bool = True) -> Sampler:
    """Load the (EMA) generator of ``run`` from ``checkpoint`` (``latest``, ``best`` or a path)."""
    from xraygan.training.checkpoint import load_checkpoint
    from xraygan.training.config import TrainConfig
    from xraygan.training.families import get_family
    from xraygan.training.rundir import RunDir
    from xraygan.utils.runtime import resolve_device

    rd = RunDir(run)
    rd.read_config()
    path = rd.resolve_checkpoint(checkpoint)
    dev = resolve_device(device)
    ck = load_checkpoint(path, map_location=dev)
    try:
        cfg = TrainConfig.from_dict(ck["config"])
        family = get_family(ck["model"])(cfg, int(ck["n_classes"]), dev)
        family.load_extra_state(ck.get("family_state") or {})
        state = ck["ema"] if ema and ck.get("ema") is not None else ck["modules"]["G"]
        family.G.load_state_dict(state)
    except XrayganError:
        raise
    except Exception as e:  # a damaged checkpoint: its config or weights do not fit its model
        detail = " ".join(str(e).split())[:300]
        raise XrayganError(f"checkpoint {path} is damaged: its config and weights do not fit its model "
                           f"({type(e).__name__}: {detail}); use another checkpoint") from None
    family.G.eval().requires_grad_(False)
    family.D = None  # not needed for sampling
    return Sampler(family, family.G, list(ck["classes"]), int(ck["n_classes"]), rd.root, str(path), int(ck["step"]))


def _png_bytes(img: np.ndarray, meta: dict[str, str]) -> bytes:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in meta.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _open_sampler(run: str | Path | None, pretrained: str | None, checkpoint: str | Path,
                  device: str) -> tuple[Sampler, str, str]:
    """(sampler, run column, checkpoint column) for a run folder or a shipped pretrained model."""
    if (run is None) == (pretrained is None):
        raise UsageError("generate: give either a RUN folder or --pretrained NAME (see `xraygan pretrained`), "
                           + ("not both" if run is not None else "none was given"))
    if pretrained is not None:
        if str(checkpoint) != "latest":
            raise UsageError(f"generate: --checkpoint {checkpoint} applies to a RUN folder; a --pretrained model "
                               "has a single checkpoint, so drop --checkpoint")
        from xraygan.pretrained import load_pretrained

        sampler = load_pretrained(pretrained, device)
        return sampler, str(sampler.run), str(sampler.checkpoint)
    sampler = load_generator(run, checkpoint, device)
    return sampler, str(Path(run).resolve()), str(Path(sampler.checkpoint).resolve())


@locked_output("out", inputs=lambda a: [a["run"]])  # one writer per output folder (lock beside it: see xraygan.utils.fs)
def generate(run: str | Path | None, n: int, out: str | Path, label: str | int | None = None, seed: int = 0,
             checkpoint: str | Path = "latest", truncation: float | None = None, force: bool = False,
             device: str = "auto", batch: int = 64, fmt: str = "png", pretrained: str | None = None) -> Path:
    """Write ``n`` synthetic images of ``run`` to ``out`` (see the module docstring); returns ``out``.

    ``fmt="dicom"`` writes Secondary Capture DICOM files marked synthetic instead of PNGs
    (:mod:`xraygan.export.dicom`; needs the ``dicom`` extra). ``pretrained=NAME`` (with ``run=None``)
    samples a model shipped in the package (:mod:`xraygan.pretrained`); the manifest's run column
    then reads ``pretrained:NAME``.
    """
    from xraygan import __version__
    from xraygan.utils.fs import check_output_dir, staged_output_dir

    if n < 1:
        raise UsageError(f"--n {n}: must be at least 1")
    if fmt not in ("png", "dicom"):
        raise UsageError(f"--format {fmt}: choose png or dicom")
    inputs = [run] if run is not None else []
    check_output_dir(out, force, kind="generated", inputs=inputs)
    sampler, run_s, ckpt_s = _open_sampler(run, pretrained, checkpoint, device)
    labels = sampler.labels_for(n, label)
    names = sampler.label_names
    from xraygan.utils.paths import path_under, unique_components

    folders = unique_components(names)  # label -> safe, distinct folder name
    rows = []
    dicom = None
    if fmt == "dicom":  # created before any image: fails early when pydicom is missing
        from xraygan.export.dicom import SyntheticDicomWriter

        dicom = SyntheticDicomWriter(run_name=Path(run_s).name, checkpoint=Path(ckpt_s).name)
    with staged_output_dir(out, force, kind="generated", inputs=inputs) as stage:
        for lo in range(0, n, batch):
            idx = list(range(lo, min(n, lo + batch)))
            seeds = [image_seed(seed, i) for i in idx]
            imgs = to_uint8(sampler.sample_seeds(seeds, [labels[i] for i in idx], truncation, batch))
            for i, s, im in zip(idx, seeds, imgs):
                name = names[labels[i]]
                rel = f"{folders[name]}/synthetic_{i:06d}.{'dcm' if dicom else 'png'}"
                target = path_under(stage, folders[name], rel.rsplit("/", 1)[1], what="generate")
                target.parent.mkdir(exist_ok=True)
                meta = {"synthetic": "true", "run": run_s, "checkpoint": ckpt_s, "label": name, "seed": str(s),
                        "step": str(sampler.step), "software": f"xraygan {__version__}"}
                if dicom is not None:
                    dicom.write(im, target, label=name, seed=s)
                else:
                    target.write_bytes(_png_bytes(im, meta))
                rows.append({"file": rel, "label": name, "seed": s, "run": run_s, "checkpoint": ckpt_s})
        with open(stage / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=["file", "label", "seed", "run", "checkpoint"])
            w.writeheader()
            w.writerows(rows)
    return Path(out)


make_module_callable(__name__, generate)
