"""The experiment: does synthetic data help the classifier? Folds x seeds x arms, resumable.

Protocol (issues 5 and 13): patient-grouped stratified k-fold over PREPARED's train+val patients
(:mod:`xraygan.experiments.folds`), a fresh seeded partition per repetition (``--repeats``), each fold
with several classifier seeds; in every repeat x fold x seed the arms are trained with the same
seed, so their results are paired:

- ``real``: the fold's real training images (after ``--real-fraction``);
- ``real+classic``: the same with classic augmentation (rotation, shift, contrast; no flip);
- ``real+synthetic`` at each ratio r: plus r synthetic images per real image of each class
  (``--balance``: only for the minority classes, never beyond the majority count);
- ``real+classic+synthetic`` at each ratio: the synthetic images of ``real+synthetic`` with classic
  augmentation of every training image;
- ``synthetic``: synthetic images only, as many per class as the real ones (train on synthetic,
  test on real: TSTR);
- the controls (``--controls oracle,noise``) at each ratio, with the synthetic counts of
  ``real+synthetic``: held-back real images of the fold (where something is held back) and noise.

Every unit -- key (repeat, fold, seed, arm, real fraction) -- is trained, scored on the fold's test
patients and on the held-out test sets (PREPARED's test split, ``--test``), and its scores are
written atomically to ``OUT/units/<unit>.json``; a re-run skips units whose file exists. With one
real fraction the fraction is part of the experiment's fingerprint and not of the names; with
several (a learning curve, :func:`_run_fractions`) each (repeat, fold, fraction) is its own
:class:`Fold` named ``frac<F>_...``, with its own GAN. Repetition 0 keeps the unit and GAN names of
experiments made before ``--repeats`` existed, so such a folder resumes and is re-summarised in the
current results format. ``--class-fraction`` keeps a class at the real fraction x F; ``--min-steps``
floors the classifier's epoch-derived step count. More than two classes: probabilities of every
class are stored and the summary reads macro one-vs-rest AUCs. One unit (its training set, classifier and
record) is :mod:`xraygan.experiments.units`; the output folder and ``protocol.json``,
:mod:`xraygan.experiments.protocol`. The statistics are computed from the unit records
(:func:`~xraygan.experiments.units.load_units`) by :mod:`xraygan.experiments.summary`, which imports
nothing from this module.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from xraygan.data.dataset import PreparedDataset
from xraygan.errors import XrayganError
from xraygan.experiments.config import ARMS, GAN_ARMS, ExperimentConfig
from xraygan.experiments.folds import Fold, make_repeated_folds
from xraygan.experiments.protocol import open_out
from xraygan.experiments.units import fold_auc, load_data, load_units, run_unit, unit_name
from xraygan.utils.fs import atomic_write_json, locked_output

log = logging.getLogger(__name__)


def arm_labels(cfg: ExperimentConfig) -> list[tuple[str, str, float | None]]:
    """(label, arm, ratio) of every arm to run, e.g. ('real+synthetic x1', 'real+synthetic', 1.0)."""
    bad = [a for a in cfg.arms if a not in ARMS]
    if bad:
        raise XrayganError(f"--arms: unknown arm(s) {', '.join(bad)}; choose from {', '.join(ARMS)}")
    from xraygan.experiments.synthetic import CONTROLS

    bad = [c for c in cfg.controls if c not in CONTROLS]
    if bad:
        raise XrayganError(f"--controls: unknown control(s) {', '.join(bad)}; choose from {', '.join(CONTROLS)}")
    out = [("real", "real", None)]  # every comparison is against `real`, so it always runs
    for arm in cfg.arms:
        if arm in ("real+synthetic", "real+classic+synthetic"):
            out += [(f"{arm} x{r:g}", arm, float(r)) for r in cfg.ratios]
        elif arm != "real":
            out.append((arm, arm, None))
    for control in cfg.controls:  # with the synthetic counts of real+synthetic, at each ratio
        if control == "oracle" and not oracle_available(cfg):
            continue  # nothing held back to return: its gating is reported as "not available"
        out += [(f"{control} x{r:g}", control, float(r)) for r in cfg.ratios]
    return out


def oracle_available(cfg: ExperimentConfig) -> bool:
    """The oracle returns held-back real training images: only where some class is kept below 1."""
    return cfg.real_fraction < 1 or any(cfg.real_fraction * f < 1 for _, f in cfg.class_fraction)


# the coordinator holds OUT's lock (beside it); fold GAN runs and --test preparation inside OUT go through it
@locked_output(lambda a: a["cfg"].out, "--out", walk=True, inputs=lambda a: [a["cfg"].prepared, a["cfg"].test])
def run_experiment(cfg: ExperimentConfig, progress: bool = True) -> dict:
    """Run (or resume) every unit of the experiment, then write and return results.json's content."""
    from xraygan.experiments.summary import summarize, write_outputs
    from xraygan.experiments.synthetic import validate_source
    from xraygan.utils.runtime import resolve_device

    ds = PreparedDataset.open(cfg.prepared)
    if len(ds.classes) < 2:
        raise XrayganError(f"{cfg.prepared}: the experiment needs at least two classes; found {ds.classes}")
    if cfg.classifier.input_size > ds.size:
        log.warning("--input-size %d is above the prepared size %d: images are upsampled", cfg.classifier.input_size, ds.size)
    if not cfg.margin > 0:
        raise XrayganError(f"--margin {cfg.margin}: the equivalence margin must be a positive AUC difference, e.g. 0.01")
    device = resolve_device(cfg.device)
    if cfg.ray:  # before anything is written: a missing extra is a one-line error
        from xraygan.experiments.execute import import_ray

        import_ray()
    if len(cfg.fractions()) > 1:
        return _run_fractions(cfg, ds, device, progress)
    cfg = replace(cfg, real_fraction=cfg.fractions()[0])
    labels = arm_labels(cfg)
    if any(arm in GAN_ARMS for _, arm, _ in labels):
        validate_source(cfg)
    partitions = make_repeated_folds(ds, cfg.folds, cfg.repeats, seed=cfg.fold_seed, real_fraction=cfg.real_fraction,
                                     class_fraction=cfg.class_fractions(ds.classes))
    folds = [f for part in partitions for f in part]
    out = open_out(cfg)
    data = load_data(ds, cfg)
    needs_source = any(arm in GAN_ARMS for _, arm, _ in labels)
    todo = [(f, s, lab) for f in folds for s in range(cfg.seeds) for lab in labels]
    done_before = sum((out / "units" / f"{unit_name(f, s, lab[0])}.json").is_file() for f, s, lab in todo)
    t_start = time.perf_counter()
    _run_units(cfg, out, folds, labels, needs_source, {"ds": ds, "data": data, "device": device, "sources": {}},
               progress, total=len(todo), done_before=done_before)
    units = load_units(out, partitions, cfg.seeds, labels)
    results = summarize(cfg, ds, partitions, labels, data, units, _gan_records(out))
    results["wall_s_this_invocation"] = time.perf_counter() - t_start
    results["units_run_this_invocation"] = len(todo) - done_before
    write_outputs(results, out)
    return results


def _run_units(cfg: ExperimentConfig, out: Path, folds: list[Fold], labels: list[tuple], needs_source: bool,
               ctx: dict, progress: bool, total: int, done_before: int) -> None:
    """Run every unit whose file is missing, fold by fold (the fold's GAN first), on the backend of
    ``cfg.workers`` / ``cfg.ray`` (:mod:`xraygan.experiments.execute`), with progress bars."""
    _run_groups(cfg, out, _pending_groups(cfg, out, folds, labels, needs_source), ctx, progress, total, done_before)


def _pending_groups(cfg: ExperimentConfig, out: Path, folds: list[Fold], labels: list[tuple], needs_source: bool,
                    jobs: "_ExperimentJobs | None" = None) -> list:
    """One :class:`~xraygan.experiments.execute.Group` per fold with units whose file is missing (a
    fold GAN job first where an arm needs the fold's GAN); ``jobs``: the groups' own jobs when groups
    of several configs (real fractions) run in one call."""
    from xraygan.experiments.execute import Group
    from xraygan.experiments.synthetic import CONTROLS

    groups = [Group(f, needs_source and cfg.gan_config not in CONTROLS,
                    [(s, lab) for s in range(cfg.seeds) for lab in labels
                     if not (out / "units" / f"{unit_name(f, s, lab[0])}.json").is_file()], jobs) for f in folds]
    return [g for g in groups if g.units]


def _run_groups(cfg: ExperimentConfig, out: Path, groups: list, ctx: dict, progress: bool, total: int,
                done_before: int) -> None:
    """Run ``groups`` in ONE call of the backend of ``cfg.workers`` / ``cfg.ray``: one pool (or Ray
    session) for all of them, so no group waits for an unrelated one."""
    from xraygan.experiments.execute import Backend, run_with_progress

    backend = Backend(workers=cfg.workers, ray=cfg.ray, num_gpus=1.0 if ctx["device"].type == "cuda" else 0.0)
    log.info("experiment: %d units (%d already done) in %s; running %d on %s", total, done_before, out,
             sum(len(g.units) for g in groups), backend.name)
    run_with_progress(_ExperimentJobs(cfg), groups, backend, total, done_before, progress, ctx=ctx)


@dataclass(frozen=True)
class _ExperimentJobs:
    """The experiment's jobs for :mod:`xraygan.experiments.execute`: only the config travels to a
    worker, which opens the prepared dataset and loads its images itself (once per process)."""

    cfg: ExperimentConfig

    def key(self) -> str:
        """What :meth:`context` loads depends on (so the configs of several real fractions share it)."""
        c = self.cfg
        return repr((str(Path(c.out).resolve()), c.prepared, c.test, c.classifier.input_size, c.device))

    def context(self) -> dict:
        from xraygan.utils.runtime import resolve_device

        ds = PreparedDataset.open(self.cfg.prepared)
        return {"ds": ds, "data": load_data(ds, self.cfg), "device": resolve_device(self.cfg.device), "sources": {}}

    def source(self, ctx: dict, fold: Fold):
        """The fold's synthetic source; a finished fold GAN is found, not retrained (kept for 4 folds)."""
        from xraygan.experiments.synthetic import make_source

        key = (self.cfg.unit_fingerprint(), fold.name)
        if key not in ctx["sources"]:
            while len(ctx["sources"]) >= 4:
                ctx["sources"].pop(next(iter(ctx["sources"])))
            ctx["sources"][key] = make_source(self.cfg, ctx["ds"], fold, Path(self.cfg.out), ctx["device"])
        return ctx["sources"][key]

    def gan(self, ctx: dict, fold: Fold) -> None:
        self.source(ctx, fold)

    def unit(self, ctx: dict, fold: Fold, seed: int, label: tuple) -> dict:
        """Run one unit, write its file atomically, return what the progress line shows."""
        lab, arm, ratio = label
        source = self.source(ctx, fold) if arm in GAN_ARMS else None
        rec = run_unit(ctx["ds"], fold, seed, lab, arm, ratio, source, self.cfg, ctx["data"], ctx["device"])
        rec["unit_fingerprint"] = self.cfg.unit_fingerprint()
        atomic_write_json(Path(self.cfg.out) / "units" / f"{unit_name(fold, seed, lab)}.json", rec)
        return {"line": f"{fold.name} seed {seed} {lab:<22s} AUC {fold_auc(ctx['ds'], rec):.3f}", "wall_s": rec["wall_s"]}


def _run_fractions(cfg: ExperimentConfig, ds: PreparedDataset, device, progress: bool) -> dict:
    """Several real fractions (a learning curve): nested subsamples of the same folds, one GAN per
    (fold, fraction), every arm and control at each fraction (the oracle where something is held
    back); units and GANs are named ``frac<F>_<fold>...``. Every fraction's folds are built (and
    every source validated) first, then all their GAN jobs and units run in one call of the backend:
    with ``--workers``/``--ray`` one pool for the whole curve, so a large fraction's GANs do not wait
    for a small fraction's units; each group carries its fraction's config. One summary: arm labels
    get `` @<F>``, comparisons pair arms of one fraction, Holm runs across all of them."""
    from xraygan.experiments.summary import summarize, write_outputs
    from xraygan.experiments.synthetic import validate_source

    out = open_out(cfg)
    data = load_data(ds, cfg)
    t_start, run_before, total = time.perf_counter(), 0, 0
    plan, groups = [], []  # (fraction, its partitions, its labels) and every fraction's pending groups
    for f in cfg.fractions():
        cfg_f = replace(cfg, real_fraction=f)
        labels = arm_labels(cfg_f)
        needs_source = any(arm in GAN_ARMS for _, arm, _ in labels)
        if needs_source:
            validate_source(cfg_f)
        parts = make_repeated_folds(ds, cfg.folds, cfg.repeats, seed=cfg.fold_seed, real_fraction=f,
                                    class_fraction=cfg.class_fractions(ds.classes))
        parts = [[replace(fo, tag=f"frac{f:g}_") for fo in p] for p in parts]
        folds = [fo for p in parts for fo in p]
        todo = [(fo, s, lab) for fo in folds for s in range(cfg.seeds) for lab in labels]
        total += len(todo)
        run_before += sum((out / "units" / f"{unit_name(fo, s, lab[0])}.json").is_file() for fo, s, lab in todo)
        groups += _pending_groups(cfg_f, out, folds, labels, needs_source, jobs=_ExperimentJobs(cfg_f))
        plan.append((f, parts, labels))
    _run_groups(cfg, out, groups, {"ds": ds, "data": data, "device": device, "sources": {}}, progress,
                total=total, done_before=run_before)
    labels_all, units_all, curve = [], {}, {}
    for f, parts, labels in plan:
        for lab, units in load_units(out, parts, cfg.seeds, labels).items():
            units_all[f"{lab} @{f:g}"] = units
        labels_all += [(f"{lab} @{f:g}", arm, ratio) for lab, arm, ratio in labels]
        curve[f"{f:g}"] = {"fraction": f, "real_patients": float(np.mean([len(set(ds.patients[fo.train])) for p in parts for fo in p]))}
    results = summarize(cfg, ds, plan[0][1], labels_all, data, units_all, _gan_records(out), curve=curve)
    results["wall_s_this_invocation"] = time.perf_counter() - t_start
    results["units_run_this_invocation"] = total - run_before
    write_outputs(results, out)
    return results


def _gan_records(out: Path) -> list[dict]:
    """Fold GANs of this experiment (steps, training wall time) from their ``.done`` markers."""
    return [json.loads(p.read_text()) for p in sorted((out / "gans").glob("*fold*/*.done"))]  # frac<F>_fold<K> too
