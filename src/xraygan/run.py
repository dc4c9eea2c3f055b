"""A trained run as one object: a run folder (``xraygan train --out RUN``) or a shipped pretrained model.

::

    run = Run.open("runs/cxr")                 # or Run.open("pediatric-cxr-64") (see `xraygan pretrained`)
    run.config                                 # config.yaml as a dict (format header, classes, options)
    run.options                                # the resolved options as a TrainConfig
    run.metrics                                # records of metrics.jsonl (empty for a pretrained model)
    run.checkpoints()                          # checkpoint files, oldest step first (latest.pt/best.pt last)
    s = run.sampler("best")                    # a Sampler over the (EMA) generator, built through its family
    x = run.sample(16, labels="PNEUMONIA", seed=0)   # (16, 1, S, S) in [-1, 1]; the images `generate` writes
    run.checkpoint_state("latest")             # the checkpoint dict (weights_only=True, format checked)
    run.evaluations()                          # eval/*.json by name (written by `xraygan evaluate`)
    run.sample_grids()                         # [(step, samples/step_*.png)] in step order
    run.dataset_dir                            # the prepared dataset it trained on (None when gone)
    Run.shipped()                              # every shipped pretrained model as a Run

The readers take ``problems``: given a list, an unreadable part (a bad ``metrics.jsonl`` line, a
damaged evaluation JSON) is skipped and its reason appended, for the report and model card, which
show what they can; without it, it is a one-line error. A config or checkpoint of a format
version this xraygan does not read is always an error (:class:`~xraygan.utils.formats.FormatVersionError`).

``generate``, ``evaluate RUN``, ``export``, ``report``, ``pretrained``, the experiment's GAN source
and ``load_generator`` all open runs through this class. It sits above :mod:`xraygan.training` (whose
:class:`Sampler`, checkpoint and run-folder code it uses) and below metrics, report and the commands.
Reading shipped model files lives here too (:func:`load_pretrained`, :func:`resolve_pretrained`);
:mod:`xraygan.pretrained` builds on this module (it writes those files), never the other way.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import torch

from xraygan.errors import XrayganError
from xraygan.training.rundir import RunDir, read_metrics
from xraygan.training.sampler import Sampler

__all__ = ["Run", "Sampler", "load_pretrained", "step_of"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# shipped pretrained models (the file format is described in :mod:`xraygan.pretrained`, which builds on this module)
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
PRETRAINED_FORMAT = "xraygan-pretrained"
PRETRAINED_FORMAT_VERSION = 1


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

    @classmethod
    def shipped(cls, directory: str | Path = PRETRAINED_DIR) -> list["Run"]:
        """Every pretrained model in ``directory`` (the package's own by default), by name."""
        return [cls.pretrained(n, directory) for n in pretrained_names(directory)]

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
        s = read_pretrained(self.pretrained_path)
        return {"format": "xraygan-pretrained", "name": str(s.get("name", self.pretrained_path.stem)),
                "description": str(s.get("description", "")), "model": s["model"], "classes": list(s["classes"]),
                "n_classes": int(s["n_classes"]), "size": int(s["size"]), "step": int(s["step"]),
                "file_bytes": self.pretrained_path.stat().st_size, "options": dict(s["config"])}

    @property
    def options(self):
        """The run's resolved options as a :class:`~xraygan.training.config.TrainConfig`."""
        from xraygan.training.config import TrainConfig

        return TrainConfig.from_dict(self.config["options"])

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl`` (a pretrained model keeps none)."""
        return [] if self.pretrained_path is not None else read_metrics(self.dir)

    def metric_records(self, problems: list[str] | None = None) -> list[dict[str, Any]]:
        """:attr:`metrics`; with ``problems``, lines that are not JSON objects are skipped and noted there."""
        if problems is None or self.pretrained_path is not None:
            return self.metrics
        path, out = self.dir.metrics, []
        lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                problems.append(f"{path.name}: line {i} is not JSON (skipped)")
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def evaluations(self, problems: list[str] | None = None) -> dict[str, Any]:
        """``eval/NAME.json`` (written by ``xraygan evaluate``) by NAME, in name order; with ``problems``,
        unreadable files and formats this xraygan does not read are skipped and noted there, else they
        are a one-line error (:func:`xraygan.utils.formats.check_evaluation`)."""
        from xraygan.utils.formats import check_evaluation

        folder = self.root / "eval"
        out: dict[str, Any] = {}
        for p in sorted(folder.glob("*.json")) if self.pretrained_path is None and folder.is_dir() else []:
            try:
                doc = json.loads(p.read_text())
            except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                if problems is None:
                    raise XrayganError(f"{p}: unreadable evaluation ({type(e).__name__}: {e}); run `xraygan evaluate` again") from None
                problems.append(f"{p.name}: unreadable ({e})")
                continue
            try:
                check_evaluation(p, doc)
            except XrayganError as e:  # FormatVersionError too
                if problems is None:
                    raise
                problems.append(f"{p.name}: skipped ({e})")
                continue
            out[p.stem] = doc
        return out

    def sample_grids(self) -> list[tuple[int, Path]]:
        """(step, image) of every grid in ``samples/`` (fixed latents, one row per class), in step order."""
        folder = self.dir.samples
        if self.pretrained_path is not None or not folder.is_dir():
            return []
        imgs = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        return sorted(((step_of(p), p) for p in imgs), key=lambda t: (t[0], t[1].name))

    @property
    def dataset_dir(self) -> Path | None:
        """The prepared dataset the run trained on (its config's ``data``, as given or relative to the
        run folder), or None when unknown or no longer there."""
        try:
            cfg = self.config if self.pretrained_path is None and self.dir.config.is_file() else {}
        except XrayganError:
            return None
        opts = cfg.get("options") if isinstance(cfg.get("options"), dict) else {}
        value = cfg.get("data") or opts.get("data")
        if not isinstance(value, str) or not value:
            return None
        return next((d for d in (Path(value), self.root / value) if (d / "dataset.json").is_file()), None)

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

    def checkpoint_state(self, which: str | Path = "latest", device: Any = "cpu") -> dict[str, Any]:
        """The checkpoint dict of ``which`` (see :mod:`xraygan.training.checkpoint`), checked and
        loaded with ``weights_only=True``; a pretrained model's file for a pretrained model."""
        from xraygan.training.checkpoint import load_checkpoint

        if self.pretrained_path is not None:
            return read_pretrained(self.pretrained_path, device)
        return load_checkpoint(self.checkpoint(which), map_location=device)

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

    path = Run(rd.root).checkpoint(checkpoint)
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


def step_of(path: str | Path) -> int:
    """The training step in a file name (``step_00001000...``, else its last number), -1 if none."""
    stem = Path(path).stem
    m = re.search(r"step_?(\d+)", stem)
    if m:
        return int(m.group(1))
    nums = re.findall(r"\d+", stem)
    return int(nums[-1]) if nums else -1


# --- shipped pretrained models -------------------------------------------------------------------
def read_pretrained(path: Path, device: Any = "cpu") -> dict[str, Any]:
    """The dict of a pretrained model file (checked: format and format version)."""
    from xraygan.training.checkpoint import load_versioned

    shipped = Path(path).resolve().parent == Path(PRETRAINED_DIR).resolve()
    fix = "reinstall xraygan" if shipped else "give a pretrained model file that xraygan wrote, or a shipped name (see `xraygan pretrained`)"
    return load_versioned(path, PRETRAINED_FORMAT, PRETRAINED_FORMAT_VERSION, "pretrained model", fix, device)


def pretrained_names(directory: str | Path = PRETRAINED_DIR) -> list[str]:
    """Names of the models in ``directory`` (the package's own by default)."""
    return sorted(p.stem for p in Path(directory).glob("*.pt"))


def resolve_pretrained(name: str | Path, directory: str | Path = PRETRAINED_DIR) -> Path:
    """The file of model ``name`` (a shipped name, or a path to a ``.pt`` file); unknown names list the known."""
    p = Path(directory) / f"{name}.pt"
    if p.is_file():
        return p
    if str(name).endswith(".pt") and Path(name).is_file():
        return Path(name)
    known = ", ".join(pretrained_names(directory)) or "none"
    raise XrayganError(f"--pretrained {name}: no such pretrained model; the shipped ones are: {known} (see `xraygan pretrained`)")


def load_pretrained(name: str | Path, device: str = "auto", directory: str | Path = PRETRAINED_DIR) -> Sampler:
    """A :class:`~xraygan.training.sampler.Sampler` for shipped model ``name`` (or a pretrained ``.pt`` path)."""
    from xraygan.training.config import TrainConfig
    from xraygan.training.families import get_family
    from xraygan.utils.runtime import resolve_device

    path = resolve_pretrained(name, directory)
    dev = resolve_device(device)
    s = read_pretrained(path)
    cfg = TrainConfig.from_dict(s["config"])
    family = get_family(s["model"])(cfg, int(s["n_classes"]), dev)
    family.load_extra_state(s.get("family_state") or {})
    state = {k: v.float() if v.is_floating_point() else v for k, v in s["generator"].items()}
    family.G.load_state_dict(state)
    family.G.to(dev).eval().requires_grad_(False)
    family.D = family.opt_d = family.opt_g = None  # sampling only
    return Sampler(family, family.G, list(s["classes"]), int(s["n_classes"]), Path(f"pretrained:{s['name']}"),
                   str(path), int(s["step"]))
