"""A trained run as one object: a run folder (``xraygan train --out RUN``) or a shipped pretrained model.

::

    run = Run.open("runs/cxr")                 # or Run.open("pediatric-cxr-64") (see `xraygan pretrained`)
    run.config                                 # config.yaml as a dict (format header, classes, options)
    run.options                                # the resolved options as a TrainConfig
    run.metrics                                # records of metrics.jsonl (empty for a pretrained model)
    run.checkpoints()                          # checkpoint files, oldest step first (latest.pt/best.pt last)
    s = run.sampler("best")                    # a Sampler over the (EMA) generator, built through its family
    x = run.sample(16, labels="PNEUMONIA", seed=0)   # (16, 1, S, S) in [-1, 1]; the images `generate` writes

``generate``, ``evaluate RUN``, ``export``, the experiment's GAN source and ``load_generator`` all
open runs through this class. It sits above :mod:`xraygan.training` (whose :class:`Sampler`,
checkpoint and run-folder code it uses) and below metrics, report and the commands.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from xraygan.errors import XrayganError
from xraygan.pretrained import PRETRAINED_DIR, load_pretrained
from xraygan.pretrained import _read as _read_pretrained
from xraygan.pretrained import resolve as resolve_pretrained
from xraygan.training.rundir import RunDir, read_metrics
from xraygan.training.sampler import Sampler

__all__ = ["Run", "Sampler"]


class Run:
    """A run folder, or a pretrained model (``Run.pretrained(name)``); see the module docstring."""

    def __init__(self, root: str | Path, *, pretrained: Path | None = None) -> None:
        self.root = Path(root)
        self.pretrained_path = pretrained  # the .pt file of a pretrained model, else None
        self.dir = RunDir(root)

    # --- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, ref: str | Path, directory: str | Path = PRETRAINED_DIR) -> "Run":
        """A run folder when ``ref`` is a folder (or does not name a shipped model), else a pretrained model."""
        if Path(ref).is_dir():
            return cls(ref)
        try:
            return cls.pretrained(ref, directory)
        except XrayganError:
            return cls(ref)  # not a model either: reading it gives the run folder's clear error

    @classmethod
    def pretrained(cls, name: str | Path, directory: str | Path = PRETRAINED_DIR) -> "Run":
        """Shipped model ``name`` (or a pretrained ``.pt`` path); unknown names list the known ones."""
        path = resolve_pretrained(name, directory)
        return cls(f"pretrained:{Path(name).stem if str(name).endswith('.pt') else name}", pretrained=path)

    @property
    def is_pretrained(self) -> bool:
        return self.pretrained_path is not None

    def __repr__(self) -> str:
        return f"Run({str(self.pretrained_path or self.root)!r}{', pretrained' if self.is_pretrained else ''})"

    # --- what it holds -----------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """``config.yaml`` (checked: a folder that is not a run is a clear error); for a pretrained
        model the same keys rebuilt from its file (model, classes, n_classes, options)."""
        if self.pretrained_path is None:
            return self.dir.read_config()
        s = _read_pretrained(self.pretrained_path)
        return {"format": "xraygan-pretrained", "model": s["model"], "classes": list(s["classes"]),
                "n_classes": int(s["n_classes"]), "step": int(s["step"]), "options": dict(s["config"])}

    @property
    def options(self):
        """The run's resolved options as a :class:`~xraygan.training.config.TrainConfig`."""
        from xraygan.training.config import TrainConfig

        return TrainConfig.from_dict(self.config["options"])

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl`` (a pretrained model keeps none)."""
        return [] if self.pretrained_path is not None else read_metrics(self.dir)

    def checkpoints(self) -> list[Path]:
        """Checkpoint files: step-numbered ones in step order, then latest.pt and best.pt when present."""
        if self.pretrained_path is not None:
            return [self.pretrained_path]
        steps = sorted(self.dir.checkpoints.glob("step_*.pt"))
        return steps + [p for p in (self.dir.latest, self.dir.best) if p.is_file()]

    def checkpoint(self, which: str | Path = "latest") -> Path:
        """``latest``, ``best`` or a path (absolute, or relative to the run's checkpoints/)."""
        if self.pretrained_path is not None:
            return self.pretrained_path
        self.dir.read_config()
        return self.dir.resolve_checkpoint(which)

    # --- sampling ----------------------------------------------------------------------------
    def sampler(self, checkpoint: str | Path = "latest", device: str = "auto", ema: bool = True) -> Sampler:
        """The (EMA) generator of ``checkpoint``, built through its family, ready to sample."""
        if self.pretrained_path is not None:
            return load_pretrained(self.pretrained_path, device)
        return _load_run_sampler(self.dir, checkpoint, device, ema)

    def sample(self, n: int, labels: str | int | Sequence[int] | None = None, seed: int = 0,
               truncation: float | None = None, checkpoint: str | Path = "latest", device: str = "auto") -> torch.Tensor:
        """``n`` images (n, 1, S, S) in [-1, 1] on the CPU, deterministic in ``seed`` (see :mod:`xraygan.generate`)."""
        return self.sampler(checkpoint, device).sample(n, labels, seed, truncation)


def _load_run_sampler(rd: RunDir, checkpoint: str | Path, device: str, ema: bool) -> Sampler:
    from xraygan.training.checkpoint import load_checkpoint
    from xraygan.training.config import TrainConfig
    from xraygan.training.families import get_family
    from xraygan.utils.runtime import resolve_device

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
