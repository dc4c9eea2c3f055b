"""Pretrained generators that ship inside the package (``xraygan pretrained``, ``generate --pretrained``).

A shipped model is ``<name>.pt`` beside this file, with its model card ``<name>.md``. The ``.pt``
holds only what sampling needs, as a plain dict that loads with ``torch.load(..., weights_only=True)``:

- ``format`` ("xraygan-pretrained"), ``format_version``, ``name``, ``description`` (one line);
- ``model`` (family name), ``config`` (the run's TrainConfig as a dict), ``classes``, ``n_classes``,
  ``size``, ``latent_dim``, ``step``, ``elapsed`` (training seconds), ``family_state``;
- ``generator``: the EMA generator's state_dict (BatchNorm statistics included: the trainer
  recomputes them from the EMA generator's own outputs before every checkpoint, see
  :mod:`xraygan.training.ema`); floating tensors stored as ``dtype`` ("float16" or "float32") and
  cast back to float32 when loaded.

:func:`export_pretrained` writes such a file from a run checkpoint (``scripts/make_pretrained.py``
uses it); :func:`load_pretrained` rebuilds the generator through the families registry and returns
the same :class:`~xraygan.training.sampler.Sampler` that ``xraygan generate`` uses for a run.
Reading these files lives in :mod:`xraygan.run` (``Run.pretrained(name)``, ``Run.shipped()``);
this module re-exports its names and writes the files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xraygan.errors import XrayganError
from xraygan.run import PRETRAINED_DIR, Run, load_pretrained  # noqa: F401  (public names of this module)
from xraygan.run import PRETRAINED_FORMAT as FORMAT
from xraygan.run import PRETRAINED_FORMAT_VERSION as FORMAT_VERSION
from xraygan.run import pretrained_names as names  # noqa: F401
from xraygan.run import resolve_pretrained as resolve  # noqa: F401

__all__ = ["FORMAT", "FORMAT_VERSION", "PRETRAINED_DIR", "PretrainedInfo", "available", "export_pretrained",
           "load_pretrained", "names", "resolve"]


@dataclass
class PretrainedInfo:
    """One shipped model, as ``xraygan pretrained`` lists it."""

    name: str
    path: Path
    size: int
    classes: list[str]
    model: str
    step: int
    file_bytes: int
    description: str


def available(directory: str | Path = PRETRAINED_DIR) -> list[PretrainedInfo]:
    """Every model in ``directory`` with its size, classes and file size (each opened as a :class:`~xraygan.run.Run`)."""
    out = []
    for run in Run.shipped(directory):
        c = run.config
        out.append(PretrainedInfo(run.pretrained_path.stem, run.pretrained_path, c["size"], c["classes"], str(c["model"]),
                                  c["step"], c["file_bytes"], c["description"]))
    return out


def export_pretrained(run: str | Path, out: str | Path, checkpoint: str | Path = "best", name: str | None = None,
                      description: str = "", dtype: str = "float16") -> dict[str, Any]:
    """Write the sampling-only file of ``run``'s ``checkpoint`` to ``out``; returns what it wrote.

    Only the EMA generator (or G when the run has no EMA) with its BatchNorm buffers, the config,
    classes, size, latent size, step and training time are kept (no D, optimizers or RNG states).
    """
    import torch

    from xraygan.utils.fs import atomic_torch_save

    if dtype not in ("float16", "float32"):
        raise XrayganError(f"--dtype {dtype}: choose float16 or float32")
    ck = Run(run).checkpoint_state(checkpoint, "cpu")
    g = ck["ema"] if ck.get("ema") is not None else ck["modules"]["G"]
    cast = getattr(torch, dtype)
    cfg = dict(ck["config"])
    state = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name or Path(out).stem,
        "description": description, "model": ck["model"], "config": cfg, "classes": list(ck["classes"]),
        "n_classes": int(ck["n_classes"]), "size": int(cfg["size"]), "latent_dim": int(cfg["latent_dim"]),
        "step": int(ck["step"]), "elapsed": float(ck.get("elapsed", 0.0)), "images_seen": int(ck.get("images_seen", 0)),
        "family_state": ck.get("family_state") or {}, "ema": ck.get("ema") is not None, "dtype": dtype,
        "generator": {k: (v.to(cast) if v.is_floating_point() else v).clone() for k, v in g.items()},
    }
    atomic_torch_save(state, out)
    return state
