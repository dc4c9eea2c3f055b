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
from pathlib import Path

import numpy as np

from xraygan.errors import UsageError
from xraygan.run import Run
from xraygan.training.sampler import UNCONDITIONAL_FOLDER, Sampler, image_seed, save_grid, to_uint8
from xraygan.utils.fs import locked_output
from xraygan.utils.runtime import make_module_callable

__all__ = ["UNCONDITIONAL_FOLDER", "Sampler", "generate", "image_seed", "load_generator", "save_grid", "to_uint8"]


def load_generator(run: str | Path, checkpoint: str | Path = "latest", device: str = "auto", ema: bool = True) -> Sampler:
    """Load the (EMA) generator of ``run`` from ``checkpoint`` (``latest``, ``best`` or a path); see :class:`xraygan.run.Run`."""
    return Run(run).sampler(checkpoint, device, ema)


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
        sampler = Run.pretrained(pretrained).sampler(device=device)
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
