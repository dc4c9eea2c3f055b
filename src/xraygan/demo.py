"""``xraygan demo``: the whole job end to end on the chest X-ray sample shipped in the package.

prepare (:func:`xraygan.data.prepare.prepare`) -> conditional DCGAN training
(:func:`xraygan.training.loop.train`) -> generation (:func:`xraygan.generate.generate`) -> one
real-vs-synthetic grid per class (:func:`real_vs_synthetic_grid`, also usable on any run) -> a
summary of where everything is. The default budget (32 px, ``DEMO_STEPS`` steps, capped at
``DEMO_MAX_TIME`` seconds of training) takes a few minutes on 2 CPU cores; ``quick=True`` runs a
handful of steps at 16 px for tests.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xraygan.errors import XrayganError
from xraygan.utils.fs import locked_output
from xraygan.utils.runtime import make_module_callable

log = logging.getLogger(__name__)

DEMO_SIZE, DEMO_STEPS, DEMO_MAX_TIME = 32, 1500, 200.0
QUICK_SIZE, QUICK_STEPS = 16, 4


@dataclass
class DemoSummary:
    """Where the demo put everything, and how long each stage took (seconds)."""

    out: Path
    prepared: Path
    run: Path
    synthetic: Path
    grids: dict[str, Path]
    steps: int
    seconds: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        lines = [f"xraygan demo finished in {sum(self.seconds.values()):.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in self.seconds.items())})",
                 f"  prepared sample:       {self.prepared}",
                 f"  training run:          {self.run}  ({self.steps} steps; samples/, loss.png, metrics.jsonl)",
                 f"  synthetic images:      {self.synthetic}  (one folder per class + manifest.csv)"]
        lines += [f"  real vs synthetic {k}: {v}" for k, v in self.grids.items()]
        lines += ["next: train on your data with `xraygan train PREPARED --out RUN` (conditional when it has several classes)"]
        return "\n".join(lines)


def real_vs_synthetic_grid(run: str | Path, out: str | Path, label: str | None = None, n: int = 16,
                           seed: int = 0, checkpoint: str = "latest", ncol: int = 4, device: str = "auto") -> Path:
    """PNG with ``n`` real training images of ``label`` (left) beside ``n`` synthetic ones (right).

    Images under 64 px are enlarged with nearest-neighbour interpolation for viewing.

    Real images come from the run's prepared dataset and training split(s), picked with ``seed`` and
    resized with the training resizer; synthetic ones from the run's (EMA) generator.
    """
    import torch

    from xraygan.data.dataset import PreparedDataset
    from xraygan.generate import load_generator, save_grid

    sampler = load_generator(run, checkpoint, device)
    cfg = sampler.family.cfg
    ds = PreparedDataset.open(cfg.data)
    real_label = label if label is not None else cfg.label
    idx = ds.indices(split=list(cfg.split), label=real_label)
    if len(idx) == 0:
        raise XrayganError(f"{cfg.data}: no real images for label {real_label}")
    pick = np.random.default_rng(seed).choice(idx, size=min(n, len(idx)), replace=False)
    real = ds.tensor(np.sort(pick), size=sampler.size)
    fake = sampler.sample(n, labels=label, seed=seed)
    rows = (n + ncol - 1) // ncol
    gap = torch.ones(rows * ncol, 1, sampler.size, sampler.size // 2)  # white spacer column

    def block(x: "torch.Tensor") -> "torch.Tensor":  # (n,1,S,S) -> (rows, 1, S, ncol*S)
        x = torch.cat([x, torch.ones(rows * ncol - len(x), *x.shape[1:])])
        return x.view(rows, ncol, 1, sampler.size, sampler.size).permute(0, 2, 3, 1, 4).reshape(rows, 1, sampler.size, ncol * sampler.size)

    both = torch.cat([block(real), gap[:rows].expand(rows, 1, sampler.size, sampler.size // 2), block(fake)], dim=3)
    scale = max(1, 64 // sampler.size)  # small images are shown enlarged (nearest neighbour)
    save_grid(torch.nn.functional.interpolate(both, scale_factor=scale, mode="nearest") if scale > 1 else both, out, ncol=1)
    return Path(out)


def _prepare(out: Path, size: int, force: bool) -> Path:
    from xraygan.data.prepare import prepare
    from xraygan.data.sample import sample_path

    prepare(sample_path() / "labels.csv", out, size=size, patient_col="patient_id", force=force)
    return out


def _demo_inputs(_args: dict) -> list[Path]:
    from xraygan.data.sample import sample_path

    return [sample_path()]


@locked_output("out", "demo folder", walk=True, inputs=_demo_inputs)  # one writer per demo folder (lock beside it)
def demo(out: str | Path = "xraygan-demo", quick: bool = False, steps: int | None = None, device: str = "auto",
         force: bool = False, max_time: float | None = None, threads: int = 0) -> DemoSummary:
    """Run the demo into ``out`` (refused if it exists and is not empty, unless ``force``)."""
    from xraygan.generate import generate
    from xraygan.training.config import TrainConfig
    from xraygan.workflow import train
    from xraygan.data.sample import sample_path
    from xraygan.utils.fs import check_output_dir, is_nonempty_dir, remove_output, write_marker

    # --force replaces only an xraygan demo folder (see xraygan.utils.fs.check_output_dir); a demo
    # that was interrupted (its folder never completed) starts again without it
    restart = not force and interrupted_demo(out)
    if restart:
        log.warning("%s: an interrupted demo; starting it again", out)
    out = check_output_dir(out, force or restart, "demo folder", kind="demo", inputs=[sample_path()])
    if is_nonempty_dir(out):
        remove_output(out)
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "demo")
    size = QUICK_SIZE if quick else DEMO_SIZE
    steps = steps or (QUICK_STEPS if quick else DEMO_STEPS)
    seconds: dict[str, float] = {}
    t = time.monotonic()
    prepared = _prepare(out / "prepared", size, force=False)
    seconds["prepare"] = time.monotonic() - t
    cfg = TrainConfig(data=str(prepared), out=str(out / "run"), model="dcgan", conditional=True, size=size,
                      width=8 if quick else 32, latent_dim=16 if quick else 64, batch=8 if quick else 32,
                      steps=steps, max_time=max_time if max_time is not None else (None if quick else DEMO_MAX_TIME),
                      sample_every=max(1, steps // 5), ckpt_every=max(1, steps // 2), device=device, seed=0, threads=threads)
    t = time.monotonic()
    run = train(cfg)
    seconds["train"] = time.monotonic() - t
    t = time.monotonic()
    synthetic = generate(run, 8 if quick else 64, out / "synthetic", seed=0, device=device)
    grids = {}
    from xraygan.data.dataset import PreparedDataset

    from xraygan.utils.paths import path_under, unique_components

    classes = PreparedDataset.open(prepared).classes
    for name, safe in unique_components(classes).items():
        grid = path_under(out, f"real_vs_synthetic_{safe}.png", what="demo")
        grids[name] = real_vs_synthetic_grid(run, grid, label=name, n=16, device=device)
    seconds["generate"] = time.monotonic() - t
    from xraygan.training.checkpoint import load_checkpoint

    done = int(load_checkpoint(run / "checkpoints" / "latest.pt")["step"])
    write_marker(out, "demo", {"complete": True})  # last: a folder without it is an interrupted demo
    return DemoSummary(out, prepared, run, synthetic, grids, done, seconds)


def interrupted_demo(out: str | Path) -> bool:
    """Whether ``out`` is a demo folder xraygan started and never completed (stopped by Ctrl-C, SIGTERM
    or a kill): its marker says demo without ``complete`` and it has no real-vs-synthetic grid (demos
    of older versions wrote no ``complete``). Such a folder may be replaced without ``--force``."""
    import json

    from xraygan.utils.fs import MARKER, output_kind

    out = Path(out)
    if output_kind(out) != "demo":
        return False
    try:
        marker = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and not marker.get("complete") and not any(out.glob("real_vs_synthetic_*.png"))


make_module_callable(__name__, demo)
