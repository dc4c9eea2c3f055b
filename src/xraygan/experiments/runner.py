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
class are stored and the summary reads macro one-vs-rest AUCs. The statistics are computed from the
unit records (loaded here, :func:`load_units`) by :mod:`xraygan.experiments.summary`, which imports
nothing from this module.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from xraygan.data.dataset import PreparedDataset, resize_images
from xraygan.errors import XrayganError
from xraygan.experiments.classifier import ClassifierConfig, steps_per_epoch
from xraygan.experiments.folds import INNER_FRACTION, Fold, inner_split, make_repeated_folds  # noqa: F401 (re-exported)
from xraygan.experiments.heldout import load_test_sets, refuse_training_overlap  # noqa: F401 (re-exported)
from xraygan.utils.fs import atomic_write_json, is_nonempty_dir, locked_output, output_kind, refuse_overlap, write_marker
from xraygan.utils.pixels import signed_tensor

log = logging.getLogger(__name__)
ARMS = ("real", "real+classic", "real+synthetic", "real+classic+synthetic", "synthetic")
DEFAULT_ARMS = ("real", "real+classic", "real+synthetic", "synthetic")
# arms whose training set has synthetic images (the controls are arms too: ``--controls``)
MIXED_ARMS = ("real+synthetic", "real+classic+synthetic", "oracle", "noise")
GAN_ARMS = ("real+synthetic", "real+classic+synthetic", "synthetic")  # arms that need the fold's GAN source
FORMAT = "xraygan-experiment"
MIN_STEPS = 200  # --min-steps default: the classifier's step floor when steps come from --epochs


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines an experiment; saved in ``OUT/protocol.json`` and results.json."""

    prepared: str
    out: str
    gan_config: str = "oracle"
    test: str | None = None
    arms: tuple[str, ...] = DEFAULT_ARMS
    controls: tuple[str, ...] = ()  # control arms on the same folds: oracle, noise
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    balance: bool = False
    folds: int = 5
    seeds: int = 3
    repeats: int = 1
    real_fraction: float | tuple[float, ...] = 1.0  # several: a learning curve on nested subsamples of the same folds
    class_fraction: tuple[tuple[str, float], ...] = ()  # (label, F): class kept at real_fraction x F
    min_steps: int = MIN_STEPS
    fold_seed: int = 0
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    gan_steps: int | None = None
    device: str = "auto"
    n_boot: int = 1000
    alpha: float = 0.05
    margin: float = 0.01
    workers: int = 1  # local worker processes for the units (how a run executes, not what it computes)
    ray: str | None = None  # run the units as Ray tasks: 'local' (a local cluster) or a cluster address

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arms"], d["ratios"], d["controls"] = list(self.arms), list(self.ratios), list(self.controls)
        d["class_fraction"] = {k: v for k, v in self.class_fraction}
        if isinstance(self.real_fraction, (tuple, list)):
            d["real_fraction"] = list(self.real_fraction)
        return d

    def fractions(self) -> tuple[float, ...]:
        """The real fraction(s), ascending and distinct."""
        f = self.real_fraction
        return tuple(sorted({float(x) for x in f})) if isinstance(f, (tuple, list)) else (float(f),)

    def class_fractions(self, classes: list[str]) -> dict[int, float]:
        """``--class-fraction`` as {class index: F}; an unknown label is a clear error."""
        out = {}
        for label, f in self.class_fraction:
            if label not in classes:
                raise XrayganError(f"--class-fraction {label}={f:g}: no class {label!r}; the classes are {', '.join(classes)}")
            if not 0 < f <= 1:
                raise XrayganError(f"--class-fraction {label}={f:g}: the fraction must be in (0, 1]")
            out[classes.index(label)] = float(f)
        return out

    def unit_fingerprint(self) -> str:
        """Hash of the options a unit's result depends on (not arms, ratios, seed or repeat count, nor
        the summary's options), so more seeds or repeats resume an experiment."""
        d = self.to_dict()
        for k in ("out", "arms", "ratios", "seeds", "repeats", "device", "n_boot", "alpha", "margin", "test", "controls",
                  "workers", "ray"):  # how a run executes, not what it computes
            d.pop(k)
        if not self.class_fraction:  # options added later leave older folders' fingerprints as they were
            d.pop("class_fraction")
        if self.classifier.steps or not self.min_steps:
            d.pop("min_steps")
        if len(self.fractions()) > 1:  # unit and GAN names carry the fraction, so more fractions resume
            d["real_fraction"] = "nested-list"
        elif isinstance(self.real_fraction, (tuple, list)):
            d["real_fraction"] = self.fractions()[0]
        d["step_rule"] = "epochs-of-real"  # --epochs count epochs of the real images in every arm
        d["threshold_rule"] = "youden-inner-15"  # classifiers train without the inner threshold split (inner_split)
        gan_file = Path(self.gan_config)
        if gan_file.is_file():  # a GAN config file's content, not just its name
            d["gan_config_sha256"] = hashlib.sha256(gan_file.read_bytes()).hexdigest()
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


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


def synthetic_counts(n_real: np.ndarray, arm: str, ratio: float | None, balance: bool) -> np.ndarray:
    """How many synthetic images per class a unit gets, from the real count per class."""
    if arm == "synthetic":
        return n_real.copy()
    if arm not in MIXED_ARMS:
        return np.zeros_like(n_real)
    want = np.round(ratio * n_real).astype(np.int64)
    if balance:
        gap = n_real.max() - n_real
        want = np.where(gap > 0, np.minimum(want, gap), 0)
    return want


def unit_name(fold: Fold, seed: int, label: str) -> str:
    """File stem of unit (repeat, fold, seed, arm); repetition 0 has no prefix (see :attr:`Fold.name`)."""
    return f"{fold.name}_seed{seed}_{label.replace(' ', '_')}"


def unit_seed(fold: Fold, seed: int, *more: int) -> int:
    """The classifier seed of a unit (with ``more``: of its synthetic sample per class); repetition 0
    keeps the seeds used before ``--repeats`` existed, so older experiment folders resume unchanged."""
    return _seed(fold.index, seed, *more) if fold.repeat == 0 else _seed(fold.repeat, fold.index, seed, *more)


def load_units(out: Path, partitions: list[list[Fold]], seeds: int, labels: list[tuple]) -> dict[str, list[dict]]:
    """Every unit record of the experiment, per arm label, in (repeat, fold, seed) order."""
    units = {}
    for label, _, _ in labels:
        units[label] = []
        for folds in partitions:
            for f in folds:
                for s in range(seeds):
                    rec = json.loads((out / "units" / f"{unit_name(f, s, label)}.json").read_text())
                    rec.setdefault("repeat", f.repeat)  # units written before --repeats existed
                    units[label].append(rec)
    return units


def _seed(*parts: int) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


PROTOCOL_FORMAT_VERSION = 2  # 1 (no format_version): before --repeats, resumed as repetition 0


def read_protocol(proto: Path) -> dict:
    """``OUT/protocol.json`` of an experiment to resume, its format checked (docs/formats.md):
    formats 1 (written without a format_version) and 2 resume; a newer one, or a file that is not
    a protocol, is a one-line error naming it (upgrade xraygan, or run into another --out)."""
    from xraygan.utils.formats import check_format_version

    fresh = "choose another --out to run these options with this xraygan (the old folder is left as it is)"
    try:
        doc = json.loads(proto.read_text())
    except (OSError, ValueError) as e:
        raise XrayganError(f"{proto}: unreadable experiment protocol ({type(e).__name__}: {e}); {fresh}") from None
    if not isinstance(doc, dict) or doc.get("format", FORMAT) != FORMAT:
        raise XrayganError(f"{proto}: not an xraygan experiment protocol; {fresh}")
    check_format_version(proto, doc.get("format_version", 1), what="experiment protocol", current=PROTOCOL_FORMAT_VERSION,
                         rerun=fresh, newer=fresh)
    return doc


def _open_out(cfg: ExperimentConfig) -> Path:
    """Create OUT or accept it for resuming; refuse a folder from other options or of other content."""
    out = Path(cfg.out)
    refuse_overlap(out, [cfg.prepared, cfg.test], "--out")  # never write into (or around) an input
    proto = out / "protocol.json"
    if proto.is_file():
        old = read_protocol(proto)
        if old.get("unit_fingerprint") != cfg.unit_fingerprint():
            raise XrayganError(f"--out {out}: holds an experiment run with different options (data, folds, classifier, "
                               "GAN config, real fraction or balance) or by an xraygan whose protocol differed; choose another --out to run "
                               "these options (the old folder is left as it is)")
    elif is_nonempty_dir(out) and output_kind(out) != "experiment":  # (ours but killed before protocol.json: go on)
        raise XrayganError(f"--out {out}: exists and is not an experiment folder; choose another path")
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "experiment")  # first: a folder killed at any later point is still recognised as ours
    (out / "units").mkdir(parents=True, exist_ok=True)
    atomic_write_json(proto, {"format": FORMAT, "format_version": PROTOCOL_FORMAT_VERSION, "unit_fingerprint": cfg.unit_fingerprint(), "config": cfg.to_dict()})
    return out


def _as_input(pixels: np.ndarray, size: int):
    """uint8 (n, H, W) -> float (n, 1, size, size) in [-1, 1], through the one shared resizer."""
    x = signed_tensor(pixels).unsqueeze(1)
    return resize_images(x, size) if len(x) else x.new_zeros((0, 1, size, size))


def _training_set(ds: PreparedDataset, fold: Fold, x_all, row_pos: dict, arm: str, ratio: float | None,
                  source, cfg: ExperimentConfig, seed: int):
    """The unit's training tensors and the number of synthetic images per class."""
    import torch

    y_real = ds.labels[fold.train]
    n_real = np.bincount(y_real, minlength=len(ds.classes))
    n_syn = synthetic_counts(n_real, arm, ratio, cfg.balance)
    if arm == "oracle":  # a class with nothing held back (kept whole by --class-fraction) gets none
        n_syn = np.where(np.bincount(ds.labels[fold.dropped], minlength=len(n_syn)) > 0, n_syn, 0)
    xs, ys = [], []
    if arm != "synthetic":
        xs.append(x_all[[row_pos[r] for r in fold.train]])
        ys.append(torch.from_numpy(y_real))
    for c, n in enumerate(n_syn):
        if n:
            imgs = source.sample(c, int(n), seed=unit_seed(fold, seed, c))
            xs.append(_as_input(imgs, cfg.classifier.input_size))
            ys.append(torch.full((int(n),), c, dtype=torch.int64))
    return torch.cat(xs), torch.cat(ys), n_real, n_syn


def unit_classifier(ccfg: ClassifierConfig, n_real: int, min_steps: int = 0) -> ClassifierConfig:
    """The classifier config of every arm of a fold: ``--epochs`` count epochs of the fold's ``n_real``
    real training images, turned into one step budget for all arms, so that arms differ only in
    their data (an arm with synthetic images does not get more optimiser steps); never fewer than
    ``min_steps`` (``--min-steps``), so that a small real fraction still trains. ``--steps`` is
    taken as given."""
    if ccfg.steps:
        return ccfg
    return replace(ccfg, steps=max(int(min_steps), ccfg.epochs * steps_per_epoch(n_real, ccfg.batch)))


def run_unit(ds: PreparedDataset, fold: Fold, seed: int, label: str, arm: str, ratio: float | None, source,
             cfg: ExperimentConfig, data: dict, device) -> dict:
    """Train and score one classifier; returns the unit record (scores, labels, patients, timing)."""
    from xraygan.experiments.classifier import predict_scores, train_classifier

    from xraygan.experiments.stats import youden_threshold

    t0 = time.perf_counter()
    if arm in ("oracle", "noise"):  # the controls bring their own source, whatever --gan-config says
        from xraygan.experiments.synthetic import control_source

        source = control_source(arm, ds, fold)
    multi = len(ds.classes) > 2  # argmax predictions, no threshold and so no inner split
    fold, inner, note = (fold, np.zeros(0, np.int64), "argmax of the class probabilities (more than two classes)") if multi \
        else inner_split(ds, fold)  # the classifier trains on the rest; the threshold is chosen on `inner`
    x, y, n_real, n_syn = _training_set(ds, fold, data["x"], data["pos"], arm, ratio, source, cfg, seed)
    ccfg = unit_classifier(cfg.classifier, len(fold.train), cfg.min_steps)
    model = train_classifier(x, y, ccfg, seed=unit_seed(fold, seed), device=device,
                             augment=arm in ("real+classic", "real+classic+synthetic"), num_classes=len(ds.classes))
    threshold = 0.5
    if len(inner):
        inner_score = predict_scores(model, data["x"][[data["pos"][r] for r in inner]], device)
        threshold = youden_threshold(ds.labels[inner], inner_score)
    fold_x = data["x"][[data["pos"][r] for r in fold.test]]
    from xraygan.experiments.classifier import predict_probs

    scorer = predict_probs if multi else predict_scores  # more than two classes: one probability per class per image
    rec = {
        "repeat": fold.repeat, "fold": fold.index, "seed": seed, "label": label, "arm": arm, "ratio": ratio,
        "real_fraction": cfg.real_fraction,
        "n_real": n_real.tolist(), "n_synthetic": n_syn.tolist(), "classifier_steps": ccfg.steps,
        "threshold": None if multi else threshold, "threshold_note": note, "n_threshold_images": int(len(inner)),
        "source": getattr(source, "name", None) if n_syn.sum() else None,
        "fold_test": {"rows": fold.test.tolist(), "score": scorer(model, fold_x, device).tolist()},
        "test_sets": {name: {"score": scorer(model, tx, device).tolist()} for name, (tx, _, _) in data["tests"].items()},
    }
    rec["wall_s"] = time.perf_counter() - t0
    return rec


def _load_data(ds: PreparedDataset, cfg: ExperimentConfig) -> dict:
    """Real train+val images at the input size (row -> position map) and every held-out set."""
    rows = ds.indices(split=("train", "val"))
    size = cfg.classifier.input_size
    data = {"x": _as_input(ds.pixels()[rows], size), "pos": {int(r): i for i, r in enumerate(rows)}, "tests": {}}
    for name, (tds, trows) in load_test_sets(cfg, ds).items():
        data["tests"][name] = (_as_input(tds.pixels()[trows], size), tds.labels[trows], tds.patients[trows])
    return data


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
    out = _open_out(cfg)
    data = _load_data(ds, cfg)
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
        return {"ds": ds, "data": _load_data(ds, self.cfg), "device": resolve_device(self.cfg.device), "sources": {}}

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
        return {"line": f"{fold.name} seed {seed} {lab:<22s} AUC {_fold_auc(ctx['ds'], rec):.3f}", "wall_s": rec["wall_s"]}


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

    out = _open_out(cfg)
    data = _load_data(ds, cfg)
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


def _fold_auc(ds: PreparedDataset, rec: dict) -> float:
    from xraygan.experiments.stats import auc_score
    from xraygan.experiments.stats_multiclass import macro_auc

    rows = np.asarray(rec["fold_test"]["rows"])
    score = np.asarray(rec["fold_test"]["score"])
    return macro_auc(ds.labels[rows], score) if score.ndim == 2 else auc_score(ds.labels[rows], score)


def with_overrides(cfg: ExperimentConfig, **kw) -> ExperimentConfig:
    """A copy of ``cfg`` with fields replaced (``classifier__epochs=3`` reaches into the classifier)."""
    cls_kw = {k.split("__", 1)[1]: v for k, v in kw.items() if k.startswith("classifier__")}
    top = {k: v for k, v in kw.items() if not k.startswith("classifier__")}
    if cls_kw:
        top["classifier"] = replace(cfg.classifier, **cls_kw)
    return replace(cfg, **top)
