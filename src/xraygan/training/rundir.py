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
from pathlib import Path
from typing import Any, Iterable

import yaml

from xraygan import __version__
from xraygan.errors import UsageError, XrayganError
from xraygan.utils.fs import (atomic_copy, atomic_write_text, atomic_write_yaml, check_output_dir, is_nonempty_dir,
                              output_lock, refuse_overlap, remove_output, write_marker)

RUN_FORMAT = "xraygan-run"
RUN_FORMAT_VERSION = 2  # 2: unset optimizer options are None (the family's paper default), resolved values recorded


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

    def create(self, force: bool, inputs: Iterable[str | Path | None] = ()) -> None:
        """Make a fresh run folder; an existing non-empty one only with ``force``, and only an
        xraygan run (see :func:`xraygan.utils.fs.check_output_dir`). Call it holding the run's lock."""
        if is_nonempty_dir(self.root) and not force:
            refuse_overlap(self.root, inputs, "run folder")
            raise UsageError(f"run folder {self.root} already exists; choose another --out, continue it with --resume {self.root}, or pass --force to replace it")
        check_output_dir(self.root, force, "run folder", kind="run", inputs=inputs)
        if is_nonempty_dir(self.root):
            remove_output(self.root)  # renamed aside first: a kill never leaves a half-deleted run
        self.root.mkdir(parents=True, exist_ok=True)
        write_marker(self.root, "run")  # first: a run killed at any later point is still xraygan's (--force)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.samples.mkdir(parents=True, exist_ok=True)

    def read_config(self) -> dict[str, Any]:
        """The parsed ``config.yaml``; a folder that is not a run is a clear error."""
        if not self.config.is_file():
            raise XrayganError(f"{self.root} is not an xraygan run (no config.yaml); pass the --out folder of `xraygan train`")
        try:
            info = yaml.safe_load(self.config.read_bytes().decode("utf-8")) or {}
        except (UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError) as e:
            detail = " ".join(str(e).split())[:300]
            raise XrayganError(f"{self.config}: damaged run config, not readable YAML ({type(e).__name__}: {detail})") from None
        except OSError as e:
            raise XrayganError(f"{self.config}: cannot be read ({e.strerror or e})") from None
        if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
            raise XrayganError(f"{self.config}: not an xraygan run config")
        from xraygan.utils.formats import check_format_version  # format 1 is read (migrated by options_from_run_config)

        check_format_version(self.config, info.get("format_version"), what="run config", current=RUN_FORMAT_VERSION,
                             rerun="train a new run with this xraygan (`xraygan train`); this one cannot be resumed or sampled")
        if not isinstance(info.get("options"), dict):
            raise XrayganError(f"{self.config}: damaged run config (no 'options' mapping); it cannot be resumed or sampled")
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
    """All records of ``metrics.jsonl`` (empty if absent). A last line cut short by a killed
    process is skipped; a bad line elsewhere is a clear error."""
    if not run.metrics.is_file():
        return []
    lines = [(k + 1, ln) for k, ln in enumerate(run.metrics.read_text(errors="replace").splitlines()) if ln.strip()]
    out = []
    for i, (lineno, line) in enumerate(lines):
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
            out.append(rec)
        except ValueError:  # json.JSONDecodeError included
            if i == len(lines) - 1:
                # an append interrupted by a kill; a resume truncates the file anyway
                import logging

                logging.getLogger(__name__).warning("%s: dropping its last line %d, cut short (the process writing it was "
                                                    "probably killed)", run.metrics, lineno)
                break
            raise XrayganError(f"{run.metrics}: line {lineno} is not a valid JSON record; fix or delete that line "
                               "(metrics.jsonl holds one JSON object per line)") from None
    return out


def truncate_metrics(run: RunDir, step: int) -> None:
    """Drop records after ``step`` (logged after the checkpoint a resume starts from)."""
    keep = [r for r in read_metrics(run) if int(r.get("step", 0)) <= step]
    atomic_write_text(run.metrics, "".join(json.dumps(r) + "\n" for r in keep))


def save_step_checkpoint(run: RunDir, step: int) -> Path:
    """Keep a copy of ``latest.pt`` as ``step_NNNNNNNN.pt``, atomically (never a half-written file)."""
    return atomic_copy(run.latest, run.step_checkpoint(step))


def run_lock(run: RunDir | str | Path, inputs: Iterable[str | Path | None] = ()):
    """The exclusive lock of a run folder (``PARENT/.NAME.lock``); training holds it throughout,
    including ``--resume`` and ``--force``. Leftover temporary files are removed on taking it.
    ``inputs`` (the prepared dataset) are checked for overlap before anything is written."""
    root = run.root if isinstance(run, RunDir) else Path(run)
    return output_lock(root, "run folder", walk=True, inputs=inputs)


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
