"""Where the synthetic images of the experiment come from: a GAN trained per fold, or a control.

A :class:`SyntheticSource` answers one question: "give me ``n`` uint8 images of class ``c``
(seeded)". Three kinds:

- ``gan``: one GAN per fold (and per class when the GAN config is per-class), trained by
  :func:`xraygan.workflow.train` on that fold's *training* patients only (after ``--real-fraction``),
  sampled through :class:`xraygan.run.Run`. Before use, the GAN's training manifest is checked
  against the fold's test patients and any overlap is refused.
- ``oracle``: real training-fold images the classifier did not get (the patients dropped by
  ``--real-fraction``): a perfect "generator", the positive control of the experiment.
- ``noise``: uniform pixel noise, the negative control.

The positive/negative controls follow the logic of Shmelkov et al. (2018, "How good is my GAN?"):
a protocol that cannot tell a perfect generator from noise cannot judge a real one.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from xraygan.data.dataset import PreparedDataset
from xraygan.errors import XrayganError
from xraygan.experiments.folds import Fold, check_no_leakage
from xraygan.utils.fs import atomic_write_json
from xraygan.utils.pixels import to_uint8

log = logging.getLogger(__name__)
CONTROLS = ("oracle", "noise")


class SyntheticSource(Protocol):
    """Anything that returns ``n`` uint8 images (n, H, W) of class ``c`` for a seed."""

    name: str

    def sample(self, c: int, n: int, seed: int) -> np.ndarray: ...


@dataclass
class OracleSource:
    """Real images of the fold's training patients that the classifier did not get."""

    ds: PreparedDataset
    fold: Fold
    name: str = "oracle"

    def sample(self, c: int, n: int, seed: int) -> np.ndarray:
        pool = self.fold.dropped[self.ds.labels[self.fold.dropped] == c]
        if n and len(pool) == 0:
            raise XrayganError(
                f"--gan-config oracle: fold {self.fold.index} has no held-back training images of class "
                f"{self.ds.classes[c]}; the oracle control needs --real-fraction below 1")
        rng = np.random.default_rng(seed)
        # without replacement while the pool lasts, then again from a fresh permutation
        reps = -(-n // max(len(pool), 1))
        order = np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n] if n else np.zeros(0, np.int64)
        return np.asarray(self.ds.pixels()[np.sort(order)] if n else np.zeros((0, self.ds.size, self.ds.size), np.uint8))


@dataclass
class NoiseSource:
    """Uniform pixel noise at ``size`` x ``size``: a generator that learned nothing."""

    size: int
    name: str = "noise"

    def sample(self, c: int, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng([seed, c])
        return rng.integers(0, 256, (n, self.size, self.size), dtype=np.uint8)


@dataclass
class GanSource:
    """Images from the GAN run(s) trained for one fold: one conditional run, or one run per class."""

    runs: dict[int | None, Path]  # class index -> run dir (None: one conditional run for all classes)
    classes: list[str]
    device: str = "cpu"
    checkpoint: str = "latest"
    name: str = "gan"
    _samplers: dict = field(default_factory=dict, repr=False)

    def _sampler(self, key: int | None):
        if key not in self._samplers:
            run = _run_module().Run(self.runs[key])
            self._samplers[key] = run.sampler(self.checkpoint, device=self.device)
        return self._samplers[key]

    def sample(self, c: int, n: int, seed: int) -> np.ndarray:
        if n == 0:
            return np.zeros((0, 1, 1), np.uint8)
        key = c if c in self.runs else None
        # a per-class run makes only its class; a conditional run is asked for class c by name
        imgs = self._sampler(key).sample(n, labels=None if key is not None else self.classes[c], seed=seed)
        return _to_uint8(imgs)


def _to_uint8(imgs) -> np.ndarray:
    """Sampler output (uint8 array, or float tensor in [-1, 1] (n,1,H,W)) -> uint8 (n, H, W)."""
    if hasattr(imgs, "detach"):
        imgs = imgs.detach().cpu().numpy()
    arr = np.asarray(imgs)
    if arr.ndim == 4:
        arr = arr[:, 0]
    if arr.dtype != np.uint8:
        arr = to_uint8(arr)
    return arr


def _run_module():
    try:
        import xraygan.run as run  # noqa: PLC0415 - optional until the GAN trainer is installed
    except ImportError as e:
        raise XrayganError(f"--gan-config: the GAN sampler (xraygan.run) is unavailable ({e}); "
                           "use --gan-config oracle or noise for the controls") from None
    return run


def _training_module():
    """(train, TrainConfig) of the GAN trainer, or a clear error when it is not installed."""
    try:
        from xraygan.training.config import TrainConfig  # noqa: PLC0415
        from xraygan.workflow import train  # noqa: PLC0415
    except ImportError as e:
        raise XrayganError(f"--gan-config: the GAN trainer (xraygan.training) is unavailable ({e}); "
                           "use --gan-config oracle or noise for the controls") from None
    return train, TrainConfig


# --- per-fold GANs -----------------------------------------------------------------------------
def load_gan_options(spec: str) -> dict:
    """Options of ``--gan-config``: a YAML file of ``xraygan train`` options, or a preset name."""
    import yaml

    from xraygan.presets import preset_path

    path = Path(spec)
    if not path.is_file():
        if path.suffix in (".yaml", ".yml") or "/" in spec:
            raise XrayganError(f"--gan-config {spec}: file not found; give a YAML file of `xraygan train` options, a preset name, oracle or noise")
        path = preset_path(spec)
    try:
        opts = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise XrayganError(f"--gan-config {path}: not valid YAML ({e})") from None
    if not isinstance(opts, dict):
        raise XrayganError(f"--gan-config {path}: must be a mapping of `xraygan train` options")
    opts = {str(k).replace("-", "_"): v for k, v in opts.items()}
    if "model_option" in opts:  # the `xraygan train` option name (as in presets) -> TrainConfig's field
        from xraygan.options import model_options

        opts["model_options"] = {**model_options(opts.pop("model_option")), **opts.get("model_options", {})}
    return opts


def write_fold_dataset(ds: PreparedDataset, rows: np.ndarray, dest: Path) -> Path:
    """A prepared dataset holding only ``rows`` (all in split ``train``): what a fold's GAN may see."""
    import csv
    import os
    import shutil

    if (dest / "dataset.json").is_file():
        return dest
    stage = dest.with_name(dest.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "images").mkdir(parents=True)
    rows = np.sort(rows)
    sel = [dict(ds.rows[r], split="train") for r in rows]
    for r in sel:
        src, dst = ds.root / r["file"], stage / r["file"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_file():
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
    np.save(stage / "pixels.npy", np.asarray(ds.pixels()[rows]))
    with open(stage / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(sel[0]))
        w.writeheader()
        w.writerows(sel)
    labels = [r["label"] for r in sel]
    info = dict(ds.info, counts={"train": {c: labels.count(c) for c in ds.classes}, "val": {}, "test": {}},
                n_images=len(sel), source=str(ds.root), source_type="xraygan-experiment-fold")
    atomic_write_json(stage / "dataset.json", info)
    os.replace(stage, dest)
    return dest


def gan_training_patients(run: Path) -> set[str]:
    """Patients a finished GAN run was trained on, read from its own config (data, split, label)."""
    import yaml

    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        raise XrayganError(f"{run}: no config.yaml; cannot tell which patients this GAN saw, so it cannot be checked for leakage")
    conf = yaml.safe_load(cfg_path.read_text()) or {}
    conf = conf.get("options", conf)  # xraygan runs keep the resolved options under `options`
    data = PreparedDataset.open(conf.get("data", ""))
    split = conf.get("split") or ["train"]
    return set(data.patients[data.indices(split=split, label=conf.get("label"))])


def train_fold_gans(cfg, ds: PreparedDataset, fold: Fold, out: Path, device) -> GanSource:
    """Train (or reuse) the GAN(s) of ``fold`` on its training patients; check them for leakage."""
    train, _ = _training_module()
    opts = load_gan_options(cfg.gan_config)
    from xraygan.training.config import config_from_options  # the one way from train options to a TrainConfig

    base = config_from_options({k: v for k, v in opts.items() if k not in ("data", "out")})
    per_class = not base.conditional
    fold_dir = out / "gans" / fold.name
    data = write_fold_dataset(ds, fold.train, fold_dir / "data")
    test_patients = set(ds.patients[fold.test])
    runs: dict[int | None, Path] = {}
    for c in (range(len(ds.classes)) if per_class else [None]):
        run = fold_dir / (f"class{c}" if c is not None else "conditional")
        done = run.with_name(run.name + ".done")
        if not done.is_file():
            tc = _replace_cfg(base, data=str(data), out=str(run), split=("train",), device=str(device),
                              label=ds.classes[c] if c is not None else None, seed=base.seed + 7919 * fold.index + 104729 * fold.repeat,
                              steps=cfg.gan_steps or base.steps, force=False, max_time=None)
            t0 = time.perf_counter()
            _train_or_resume(train, tc, run, fold.name)
            reached = _last_step(run)
            if reached < tc.steps:  # stopped early (Ctrl-C, SIGTERM): never mark a partial GAN as finished
                raise XrayganError(f"GAN {run} stopped at step {reached} of {tc.steps}; re-run the experiment to train it again")
            atomic_write_json(done, {"repeat": fold.repeat, "fold": fold.index, "run": str(run), "steps": tc.steps, "wall_s": time.perf_counter() - t0})
        check_no_leakage(gan_training_patients(run), test_patients, what=f"GAN {run}")
        runs[c] = run
    return GanSource(runs, ds.classes, device=str(device))


def _gan_request(tc) -> dict:
    """What defines a fold GAN's training, for telling whether an interrupted run may be continued:
    its options without the step budget and the runtime fields (device, threads, ...)."""
    d = tc.to_dict()
    for k in ("steps", "out", "device", "threads", "force", "max_time", "amp", "precision", "channels_last"):
        d.pop(k, None)
    return json.loads(json.dumps(d, sort_keys=True, default=str))


def _train_or_resume(train, tc, run: Path, fold_name: str) -> None:
    """Train the fold GAN ``tc`` into ``run``, continuing an interrupted run of the same request.

    An interrupted run (no ``.done``) continues from its ``checkpoints/latest.pt`` (refreshed every
    ``ckpt_every`` steps and ``ckpt_minutes``) when it was started for the same request and has not
    passed the step budget: resuming gives the same weights as an uninterrupted run (the trainer's
    exact resume; the runtime fields left out of the request -- device, threads, precision -- are the
    run's saved ones). Anything else there (another request, a damaged request file, no checkpoint)
    is removed and retrained.
    """
    import shutil

    request = run.with_name(run.name + ".request.json")
    latest = run / "checkpoints" / "latest.pt"
    want = _gan_request(tc)
    same = latest.is_file() and _read_request(request) == want
    reached = _checkpoint_step(latest) if same else 0
    if 0 < reached <= tc.steps:
        from xraygan.training.loop import resume_config

        log.info("%s: continuing GAN %s from step %d to %d", fold_name, run.name, reached, tc.steps)
        train(resume_config(run, steps=tc.steps, device=tc.device, threads=tc.threads), resume=True)
        return
    shutil.rmtree(run, ignore_errors=True)  # not ours to continue: retrained from scratch
    atomic_write_json(request, want)
    log.info("%s: training GAN %s for %d steps", fold_name, run.name, tc.steps)
    train(tc)


def _read_request(path: Path) -> dict | None:
    """A fold GAN's saved request; None when missing or unreadable (a damaged file means: retrain)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _checkpoint_step(path: Path) -> int:
    """The step of a checkpoint, 0 when it cannot be read (a damaged file is retrained, not continued)."""
    from xraygan.training.checkpoint import load_checkpoint

    try:
        return int(load_checkpoint(path)["step"])
    except Exception:  # noqa: BLE001  (any unreadable checkpoint means: start again)
        return 0


def _last_step(run: Path) -> int:
    """The last step logged in a run's ``metrics.jsonl`` (the trainer logs the final step)."""
    from xraygan.run import Run

    records = Run(run).metrics
    return int(records[-1]["step"]) if records else 0


def _replace_cfg(base, **kw):
    import dataclasses

    return dataclasses.replace(base, **kw).validate()


def _holds_back(cfg) -> bool:
    """Whether some class keeps less than all of its training patients (so the oracle has images)."""
    f = cfg.real_fraction if not isinstance(cfg.real_fraction, (tuple, list)) else min(cfg.real_fraction)
    return f < 1 or any(f * cf < 1 for _, cf in getattr(cfg, "class_fraction", ()))


def validate_source(cfg) -> None:
    """Fail before any training when ``cfg.gan_config`` cannot work (missing file, no trainer, oracle at 100%)."""
    if cfg.gan_config == "oracle":
        if not _holds_back(cfg):
            raise XrayganError("--gan-config oracle: the oracle returns training images the classifier did not get, "
                               "so it needs --real-fraction (or a --class-fraction) below 1")
    elif cfg.gan_config != "noise":
        load_gan_options(cfg.gan_config)
        _training_module()
        _run_module()


def control_source(name: str, ds: PreparedDataset, fold: Fold) -> SyntheticSource:
    """The source of a control arm (``--controls``): ``oracle`` (held-back real training images of the
    fold) or ``noise`` (uniform pixel noise)."""
    if name == "oracle":
        return OracleSource(ds, fold)
    if name == "noise":
        return NoiseSource(ds.size)
    raise XrayganError(f"--controls {name}: unknown control; choose from {', '.join(CONTROLS)}")


def make_source(cfg, ds: PreparedDataset, fold: Fold, out: Path, device) -> SyntheticSource:
    """The synthetic source of ``fold`` named by ``cfg.gan_config`` (oracle, noise, or a GAN config)."""
    if cfg.gan_config == "oracle":
        if not _holds_back(cfg):
            raise XrayganError("--gan-config oracle: the oracle returns training images the classifier did not get, "
                               "so it needs --real-fraction (or a --class-fraction) below 1")
        return OracleSource(ds, fold)
    if cfg.gan_config == "noise":
        return NoiseSource(ds.size)
    return train_fold_gans(cfg, ds, fold, out, device)
