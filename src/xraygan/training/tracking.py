"""Experiment tracking: ``metrics.jsonl`` always, TensorBoard when asked for.

``metrics.jsonl`` holds one JSON object per logged step (``{"step": 10, "loss_d": ..., ...}``) and
loads directly with ``pandas.read_json(path, lines=True)``. With ``tensorboard=True`` the same
scalars (and sample grids) also go to a TensorBoard event file under ``RUN/tensorboard/``; the
``tensorboard`` package (extra ``tensorboard``) is imported only then, and a missing package is a
clear error naming the extra.

Usage in a training loop::

    with Tracker(run_dir, tensorboard=cfg.tensorboard) as tr:
        tr.log(step, {"loss_d": 0.7, "loss_g": 1.2})
        tr.image(step, "samples", grid_uint8)          # (H, W) or (H, W, 3) uint8
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from xraygan.errors import XrayganError

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _json_value(v: Any) -> Any:
    """Numbers as plain floats/ints (numpy and 0-d tensors included); NaN/inf as null (valid JSON)."""
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def tensorboard_writer(log_dir: str | os.PathLike) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter``; :class:`XrayganError` naming the extra if missing."""
    try:
        import tensorboard  # noqa: F401  (SummaryWriter needs the package itself)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise XrayganError("--tensorboard: the tensorboard package is not installed; install the `tensorboard` extra "
                           "(pip install 'xraygan[tensorboard]') or drop --tensorboard (metrics.jsonl is always written)") from None
    return SummaryWriter(log_dir=str(log_dir))


class Tracker:
    """Appends metric records to ``RUN/metrics.jsonl`` and mirrors them to TensorBoard if enabled."""

    def __init__(self, run_dir: str | os.PathLike, tensorboard: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.writer = tensorboard_writer(self.run_dir / TENSORBOARD_DIR) if tensorboard else None

    def log(self, step: int, values: Mapping[str, Any]) -> dict[str, Any]:
        """Append ``{"step": step, **values}`` as one line (flushed at once); returns the record."""
        record = {"step": int(step), **{str(k): _json_value(v) for k, v in values.items()}}
        line = json.dumps(record, allow_nan=False)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(line + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.writer.add_scalar(k, v, int(step))
        return record

    def annotate(self, step: int, values: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``values`` into the last record when it is ``step``'s (the file is rewritten
        atomically), else append them as ``step``'s record: one record per step either way."""
        from xraygan.utils.fs import atomic_write_text

        lines = self.path.read_text(errors="replace").splitlines() if self.path.is_file() else []
        while lines and not lines[-1].strip():
            lines.pop()
        try:
            last = json.loads(lines[-1]) if lines else None
        except ValueError:
            last = None
        if not isinstance(last, dict) or last.get("step") != int(step):
            return self.log(step, values)
        record = {**last, **{str(k): _json_value(v) for k, v in values.items()}}
        atomic_write_text(self.path, "".join(ln + "\n" for ln in lines[:-1]) + json.dumps(record, allow_nan=False) + "\n")
        return record

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        """Send a uint8 image ((H, W) grayscale or (H, W, 3)) to TensorBoard (no-op without it)."""
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
            raise ValueError(f"Tracker.image expects (H, W) or (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
        if self.writer is None:
            return
        self.writer.add_image(tag, arr[None] if arr.ndim == 2 else arr, int(step), dataformats="CHW" if arr.ndim == 2 else "HWC")

    def close(self) -> None:
        """Flush and close the TensorBoard writer (metrics.jsonl needs nothing)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
