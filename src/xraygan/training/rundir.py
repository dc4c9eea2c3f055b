"""The run folder layout (names are a contract read by generate, evaluate and report).

::

    RUN/
      config.yaml          resolved options, classes, format version (see write_run_config)
      checkpoints/         latest.pt, step_00001000.pt, ... (best.pt from --eval-every)
      metrics.jsonl        one JSON object per logged step: step, images, time, img_per_s, losses
      samples/             step_00001000.png: fixed-latent grid, one row per class
      loss.png             losses against steps
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
from pathlib import Path
from typing import Any, Iterable

import yaml

from xraygan import __version__
from xraygan.errors import XrayganError
from xraygan.utils.fs import atomic_write_text, atomic_write_yaml

RUN_FORMAT = "xraygan-run"
RUN_FORMAT_VERSION = 1


class RunDir:
    """Paths inside one run folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    config = property(lambda self: self.root / "config.yaml")
    checkpoints = property(lambda self: self.root / "checkpoints")
    latest = property(lambda self: self.root / "checkpoints" / "latest.pt")
    best = property(lambda self: self.root / "checkpoints" / "best.pt")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    samples = property(lambda self: self.root / "samples")
    loss_plot = property(lambda self: self.root / "loss.png")

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:08d}.pt"

    def step_sample(self, step: int) -> Path:
        return self.samples / f"step_{step:08d}.png"

    def create(self, force: bool) -> None:
        """Make a fresh run folder; an existing non-empty one only with ``force`` (and only a run)."""
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            if not force:
                raise XrayganError(f"run folder {self.root} already exists; choose another --out, continue it with --resume {self.root}, or pass --force to replace it")
            if not self.config.is_file():
                raise XrayganError(f"{self.root} exists and is not an xraygan run (no config.yaml); refusing to delete it even with --force")
            shutil.rmtree(self.root)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.samples.mkdir(parents=True, exist_ok=True)

    def read_config(self) -> dict[str, Any]:
        """The parsed ``config.yaml``; a folder that is not a run is a clear error."""
        if not self.config.is_file():
            raise XrayganError(f"{self.root} is not an xraygan run (no config.yaml); pass the --out folder of `xraygan train`")
        info = yaml.safe_load(self.config.read_text()) or {}
        if info.get("format") != RUN_FORMAT:
            raise XrayganError(f"{self.config}: not an xraygan run config")
        return info

    def resolve_checkpoint(self, which: str | Path = "latest") -> Path:
        """``latest``, ``best`` or a path (absolute, or relative to the run's checkpoints/)."""
        if str(which) == "latest":
            path = self.latest
        elif str(which) == "best":
            path = self.best
            if not path.is_file():
                raise XrayganError(f"{self.root} has no best checkpoint (checkpoints/best.pt is written by training with --eval-every); use --checkpoint latest")
        else:
            path = Path(which)
            if not path.is_file() and (self.checkpoints / path).is_file():
                path = self.checkpoints / path
        if not path.is_file():
            raise XrayganError(f"checkpoint {path} does not exist; available: {', '.join(p.name for p in sorted(self.checkpoints.glob('*.pt'))) or 'none'}")
        return path


def write_run_config(run: RunDir, options: dict[str, Any], extra: dict[str, Any]) -> None:
    """Write ``config.yaml``: format header, ``extra`` facts (classes, ...) and the resolved options."""
    doc = {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, "xraygan_version": __version__,
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **extra, "options": options}
    atomic_write_yaml(run.config, doc)


def read_metrics(run: RunDir) -> list[dict[str, Any]]:
    """All records of ``metrics.jsonl`` (empty if absent)."""
    if not run.metrics.is_file():
        return []
    return [json.loads(line) for line in run.metrics.read_text().splitlines() if line.strip()]


def truncate_metrics(run: RunDir, step: int) -> None:
    """Drop records after ``step`` (logged after the checkpoint a resume starts from)."""
    keep = [r for r in read_metrics(run) if int(r.get("step", 0)) <= step]
    atomic_write_text(run.metrics, "".join(json.dumps(r) + "\n" for r in keep))


def prune_checkpoints(run: RunDir, keep: int) -> None:
    """Keep the newest ``keep`` step-numbered checkpoints (0 keeps all); latest/best are untouched."""
    if keep <= 0:
        return
    olds = sorted(run.checkpoints.glob("step_*.pt"))
    for p in olds[:-keep]:
        p.unlink(missing_ok=True)


def plot_losses(run: RunDir, keys: Iterable[str] = ("loss_d", "loss_g")) -> None:
    """Write ``loss.png`` from ``metrics.jsonl`` (no-op without records)."""
    recs = read_metrics(run)
    if not recs:
        return
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {k: [(r["step"], r[k]) for r in recs if k in r] for k in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    for k, pts in series.items():
        ax.plot(*zip(*pts), label=k, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title(run.root.name)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    from xraygan.utils.fs import atomic_write_bytes

    atomic_write_bytes(run.loss_plot, buf.getvalue())
