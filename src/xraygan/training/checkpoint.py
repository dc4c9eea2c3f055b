"""Checkpoints: one file holding everything needed to continue a run bit-for-bit.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(path, weights_only=True)`` (no pickled classes):

- ``format`` ("xraygan-checkpoint"), ``format_version``, ``model`` (family name), ``step``,
  ``images_seen``, ``elapsed`` (seconds of training so far), ``config`` (TrainConfig as a dict),
  ``classes`` and ``n_classes`` (0 = unconditional);
- ``modules``: ``{name: state_dict}`` of the family's networks (``G``, ``D``, ...), ``ema``: the
  EMA generator's state_dict (or None), ``optimizers``: ``{name: state_dict}``;
- ``family_state``: the family's extra state (ADA p, PGGAN phase/alpha, ...);
- ``rng``: the data-order and noise ``torch.Generator`` states, torch's CPU (and CUDA) global
  states, NumPy's and Python's global states, converted to tensors and lists.

Files are written atomically (temporary file + rename).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xraygan.errors import XrayganError
from xraygan.utils.fs import atomic_torch_save

FORMAT = "xraygan-checkpoint"
FORMAT_VERSION = 1


def capture_rng(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """All random states as weights_only-safe values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out: dict[str, Any] = {
        "generators": {k: g.get_state() for k, g in generators.items()},
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Inverse of :func:`capture_rng` (the generators are updated in place)."""
    for k, g in generators.items():
        if k in state["generators"]:
            g.set_state(state["generators"][k])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (see the module docstring) atomically to ``path``."""
    state = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    atomic_torch_save(state, path)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing or foreign file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise XrayganError(f"checkpoint {path} does not exist; list the run's checkpoints/ folder or pass --checkpoint PATH")
    return load_versioned(path, FORMAT, FORMAT_VERSION, "checkpoint", "use another checkpoint", map_location)


def load_versioned(path: Path, fmt: str, version: int, what: str, fix: str,
                   map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a dict tagged ``format=fmt``, ``format_version<=version``.

    Shared by checkpoints and pretrained models; unreadable, foreign or newer files are clear errors.
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, not a torch file, ...
        raise XrayganError(f"{what} {path} cannot be read ({type(e).__name__}: {e}); {fix}") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise XrayganError(f"{path} is not an xraygan {what}")
    if int(state.get("format_version", 0)) > version:
        raise XrayganError(f"{path}: {what} format {state['format_version']} is newer than this xraygan reads; upgrade xraygan")
    return state
