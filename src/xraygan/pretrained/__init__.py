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
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xraygan.errors import XrayganError

FORMAT = "xraygan-pretrained"
FORMAT_VERSION = 1
PRETRAINED_DIR = Path(__file__).resolve().parent


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


def _read(path: Path, device: Any = "cpu") -> dict[str, Any]:
    from xraygan.training.checkpoint import load_versioned

    return load_versioned(path, FORMAT, FORMAT_VERSION, "pretrained model", "reinstall xraygan", device)


def names(directory: str | Path = PRETRAINED_DIR) -> list[str]:
    """Names of the models in ``directory`` (the package's own by default)."""
    return sorted(p.stem for p in Path(directory).glob("*.pt"))


def resolve(name: str | Path, directory: str | Path = PRETRAINED_DIR) -> Path:
    """The file of model ``name`` (a shipped name, or a path to a ``.pt`` file); unknown names list the known."""
    p = Path(directory) / f"{name}.pt"
    if p.is_file():
        return p
    if str(name).endswith(".pt") and Path(name).is_file():
        return Path(name)
    known = ", ".join(names(directory)) or "none"
    raise XrayganError(f"--pretrained {name}: no such pretrained model; the shipped ones are: {known} (see `xraygan pretrained`)")


def available(directory: str | Path = PRETRAINED_DIR) -> list[PretrainedInfo]:
    """Every model in ``directory`` with its size, classes and file size."""
    out = []
    for n in names(directory):
        path = Path(directory) / f"{n}.pt"
        s = _read(path)
        out.append(PretrainedInfo(n, path, int(s["size"]), list(s["classes"]), str(s["model"]), int(s["step"]),
                                  path.stat().st_size, str(s.get("description", ""))))
    return out


def load_pretrained(name: str | Path, device: str = "auto", directory: str | Path = PRETRAINED_DIR) -> Any:
    """A :class:`~xraygan.training.sampler.Sampler` for shipped model ``name`` (or a pretrained ``.pt`` path)."""
    import torch

    from xraygan.training.config import TrainConfig
    from xraygan.training.families import get_family
    from xraygan.training.sampler import Sampler
    from xraygan.utils.runtime import resolve_device

    path = resolve(name, directory)
    dev = resolve_device(device)
    s = _read(path)
    cfg = TrainConfig.from_dict(s["config"])
    family = get_family(s["model"])(cfg, int(s["n_classes"]), dev)
    family.load_extra_state(s.get("family_state") or {})
    state = {k: v.float() if v.is_floating_point() else v for k, v in s["generator"].items()}
    family.G.load_state_dict(state)
    family.G.to(dev).eval().requires_grad_(False)
    family.D = family.opt_d = family.opt_g = None  # sampling only
    return Sampler(family, family.G, list(s["classes"]), int(s["n_classes"]), Path(f"pretrained:{s['name']}"),
                   str(path), int(s["step"]))


def export_pretrained(run: str | Path, out: str | Path, checkpoint: str | Path = "best", name: str | None = None,
                      description: str = "", dtype: str = "float16") -> dict[str, Any]:
    """Write the sampling-only file of ``run``'s ``checkpoint`` to ``out``; returns what it wrote.

    Only the EMA generator (or G when the run has no EMA) with its BatchNorm buffers, the config,
    classes, size, latent size, step and training time are kept (no D, optimizers or RNG states).
    """
    import torch

    from xraygan.training.checkpoint import load_checkpoint
    from xraygan.training.rundir import RunDir
    from xraygan.utils.fs import atomic_torch_save

    if dtype not in ("float16", "float32"):
        raise XrayganError(f"--dtype {dtype}: choose float16 or float32")
    rd = RunDir(run)
    rd.read_config()
    ck = load_checkpoint(rd.resolve_checkpoint(checkpoint), map_location="cpu")
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
