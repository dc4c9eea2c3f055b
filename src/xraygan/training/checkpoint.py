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

Files are written atomically (temporary file + rename). Training never writes a checkpoint whose
weights, EMA weights or optimizer states hold a NaN or inf (see :func:`first_nonfinite`), and
:func:`load_checkpoint` refuses one (e.g. from an older xraygan), naming the file and the tensor.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterator, Optional

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


def _float_tensors(obj: Any, name: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            yield name, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _float_tensors(v, f"{name}.{k}" if name else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _float_tensors(v, f"{name}.{i}" if name else str(i))


def first_nonfinite(obj: Any, name: str = "") -> Optional[str]:
    """The dotted name of the first floating tensor in ``obj`` (nested dicts/lists/tensors) holding a
    NaN or inf, or None when all are finite (one device sync per device on the fast path)."""
    items = list(_float_tensors(obj, name))
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for _, t in items:
        by_device.setdefault(t.device, []).append(torch.isfinite(t.detach()).all())
    if all(bool(torch.stack(flags).all()) for flags in by_device.values()):
        return None
    return next(n for n, t in items if not bool(torch.isfinite(t.detach()).all()))


def weights_nonfinite(state: dict[str, Any], optimizers: bool = False) -> Optional[str]:
    """:func:`first_nonfinite` over a checkpoint's networks and EMA generator (and optimizer states)."""
    parts = {"modules": state.get("modules"), "ema": state.get("ema")}
    if optimizers:
        parts["optimizers"] = state.get("optimizers")
    return first_nonfinite(parts)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (see the module docstring) atomically to ``path``; refused if any weight,
    EMA weight or optimizer state is not finite (the previous file is kept)."""
    bad = weights_nonfinite(state, optimizers=True)
    if bad is not None:
        raise XrayganError(f"refusing to write checkpoint {path}: {bad} holds NaN or inf (training diverged); the previous file is kept")
    state = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    atomic_torch_save(state, path)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing or foreign file, or one whose weights
    hold NaN or inf (written by a diverged run), is a clear error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise XrayganError(f"checkpoint {path} does not exist; list the run's checkpoints/ folder or pass --checkpoint PATH")
    state = load_versioned(path, FORMAT, FORMAT_VERSION, "checkpoint", "use another checkpoint", map_location)
    _check_structure(state, path)
    bad = weights_nonfinite(state) if isinstance(state.get("modules"), dict) else None
    if bad is not None:
        others = sorted(p.name for p in path.parent.glob("*.pt") if p != path)
        raise XrayganError(f"checkpoint {path} has non-finite weights ({bad} holds NaN or inf): it was written by a diverged run and "
                           f"would give blank images; use an earlier checkpoint with --checkpoint ({', '.join(others) or 'none in its folder'}) "
                           f"or train again with lower --lr-g/--lr-d")
    return state


_REQUIRED: dict[str, tuple[type, ...]] = {"model": (str,), "step": (int,), "config": (dict,), "classes": (list,),
                                          "n_classes": (int,), "modules": (dict,)}
_OPTIONAL: dict[str, tuple[type, ...]] = {"images_seen": (int,), "elapsed": (int, float), "ema": (dict, type(None)),
                                          "optimizers": (dict,), "family_state": (dict, type(None)), "rng": (dict,)}


def _check_structure(state: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose top-level entries are missing or of the wrong type (a damaged file)."""
    for key, types in {**_REQUIRED, **_OPTIONAL}.items():
        if key not in state and key in _OPTIONAL:
            continue
        value = state.get(key)
        if key not in state or not isinstance(value, types) or isinstance(value, bool):
            got = "missing" if key not in state else type(value).__name__
            raise XrayganError(f"checkpoint {path} is damaged: entry '{key}' is {got}; use another checkpoint")
    if not all(isinstance(v, dict) for v in state["modules"].values()) or not all(isinstance(c, str) for c in state["classes"]):
        raise XrayganError(f"checkpoint {path} is damaged: its modules or classes are malformed; use another checkpoint")


def load_versioned(path: Path, fmt: str, version: int, what: str, fix: str,
                   map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a dict tagged ``format=fmt``, ``format_version<=version``.

    Shared by checkpoints and pretrained models; unreadable, foreign or newer files are clear errors.
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, not a torch file, ...
        detail = " ".join(str(e).split())[:300]  # torch's messages span lines; the user gets one
        raise XrayganError(f"{what} {path} cannot be read ({type(e).__name__}: {detail}); {fix}") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise XrayganError(f"{path} is not an xraygan {what}")
    from xraygan.utils.formats import check_format_version  # one rule for every versioned file (docs/formats.md)

    check_format_version(path, state.get("format_version"), what=what, current=version, rerun=fix)
    return state
