"""The experiment: does synthetic data help the classifier? Folds x seeds x arms, resumable.

Protocol (issues 5 and 13): patient-grouped stratified k-fold over PREPARED's train+val patients
(:mod:`xraygan.experiments.folds`), a fresh seeded partition per repetition (``--repeats``), each fold
with several classifier seeds; in every repeat x fold x seed the arms are trained with the same
seed, so their results are paired:

- ``real``: the fold's real training images (after ``--real-fraction``);
- ``real+classic``: the same with classic augmentation (rotation, shift, contrast; no flip);
- ``real+synthetic`` at each ratio r: plus r synthetic images per real image of each class
  (``--balance``: only for the minority classes, never beyond the majority count);
- ``synthetic``: synthetic images only, as many per class as the real ones (train on synthetic,
  test on real: TSTR).

Every unit -- key (repeat, fold, seed, arm, real fraction); the real fraction is one per
experiment and part of its fingerprint -- is trained, scored on the fold's test patients and on the
held-out test sets (PREPARED's test split, ``--test``), and its scores are written atomically to
``OUT/units/<unit>.json``; a re-run skips units whose file exists. Repetition 0 keeps the unit and
GAN names of experiments made before ``--repeats`` existed, so such a folder resumes and is
re-summarised in the current results format. The statistics are computed from the unit records
(loaded here, :func:`load_units`) by :mod:`xraygan.experiments.summary`, which imports nothing
from this module.
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
from xraygan.experiments.folds import Fold, make_repeated_folds
from xraygan.utils.fs import atomic_write_json, is_nonempty_dir, locked_output, output_kind, refuse_overlap, write_marker
from xraygan.utils.pixels import signed_tensor

log = logging.getLogger(__name__)
ARMS = ("real", "real+classic", "real+synthetic", "synthetic")
FORMAT = "xraygan-experiment"


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines an experiment; saved in ``OUT/protocol.json`` and results.json."""

    prepared: str
    out: str
    gan_config: str = "oracle"
    test: str | None = None
    arms: tuple[str, ...] = ARMS
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    balance: bool = False
    folds: int = 5
    seeds: int = 3
    repeats: int = 1
    real_fraction: float = 1.0
    fold_seed: int = 0
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    gan_steps: int | None = None
    device: str = "auto"
    n_boot: int = 1000
    alpha: float = 0.05
    margin: float = 0.01

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arms"], d["ratios"] = list(self.arms), list(self.ratios)
        return d

    def unit_fingerprint(self) -> str:
        """Hash of the options a unit's result depends on (not arms, ratios, seed or repeat count, nor
        the summary's options), so more seeds or repeats resume an experiment."""
        d = self.to_dict()
        for k in ("out", "arms", "ratios", "seeds", "repeats", "device", "n_boot", "alpha", "margin", "test"):
            d.pop(k)
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
    out = [("real", "real", None)]  # every comparison is against `real`, so it always runs
    for arm in cfg.arms:
        if arm == "real+synthetic":
            out += [(f"real+synthetic x{r:g}", arm, float(r)) for r in cfg.ratios]
        elif arm != "real":
            out.append((arm, arm, None))
    return out


def synthetic_counts(n_real: np.ndarray, arm: str, ratio: float | None, balance: bool) -> np.ndarray:
    """How many synthetic images per class a unit gets, from the real count per class."""
    if arm == "synthetic":
        return n_real.copy()
    if arm != "real+synthetic":
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


def _open_out(cfg: ExperimentConfig) -> Path:
    """Create OUT or accept it for resuming; refuse a folder from other options or of other content."""
    out = Path(cfg.out)
    refuse_overlap(out, [cfg.prepared, cfg.test], "--out")  # never write into (or around) an input
    proto = out / "protocol.json"
    if proto.is_file():
        old = json.loads(proto.read_text())
        if old.get("unit_fingerprint") != cfg.unit_fingerprint():
            raise XrayganError(f"--out {out}: holds an experiment run with different options (data, folds, classifier, "
                               "GAN config, real fraction or balance) or by an xraygan whose protocol differed; choose another --out to run "
                               "these options (the old folder is left as it is)")
    elif is_nonempty_dir(out) and output_kind(out) != "experiment":  # (ours but killed before protocol.json: go on)
        raise XrayganError(f"--out {out}: exists and is not an experiment folder; choose another path")
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "experiment")  # first: a folder killed at any later point is still recognised as ours
    (out / "units").mkdir(parents=True, exist_ok=True)
    atomic_write_json(proto, {"format": FORMAT, "format_version": 2, "unit_fingerprint": cfg.unit_fingerprint(), "config": cfg.to_dict()})
    return out


def load_test_sets(cfg: ExperimentConfig, ds: PreparedDataset) -> dict[str, tuple[PreparedDataset, np.ndarray]]:
    """Held-out sets touched only at evaluation: PREPARED's test split and ``--test``."""
    sets = {}
    rows = ds.indices(split="test")
    if len(rows):
        sets["test"] = (ds, rows)
    if cfg.test:
        ext = _open_or_prepare_test(Path(cfg.test), Path(cfg.out) / "test-prepared", ds.size)
        if ext.classes != ds.classes:
            raise XrayganError(f"--test {cfg.test}: classes {ext.classes} differ from PREPARED's {ds.classes}")
        refuse_training_overlap(f"--test {cfg.test}", ext, ds)
        sets["external"] = (ext, np.arange(len(ext)))
    return sets


def refuse_training_overlap(name: str, held: PreparedDataset, ds: PreparedDataset) -> None:
    """Refuse a held-out set with images whose patient id or pixel sha256 also occurs in the experiment's
    training data (PREPARED's train+val rows). Ids are compared as written in the manifests (both
    pseudonymised with the same key, or both raw); empty values never match."""
    train = [ds.rows[i] for i in ds.indices(split=("train", "val"))]
    pats = {r["patient_id"] for r in train if r.get("patient_id")}
    shas = {r["sha256"] for r in train if r.get("sha256")}
    by_pat = [r for r in held.rows if r.get("patient_id") and r["patient_id"] in pats]
    by_sha = [r for r in held.rows if r.get("sha256") and r["sha256"] in shas]
    if by_pat or by_sha:
        n = len({id(r) for r in by_pat + by_sha})
        n_pat = len({r["patient_id"] for r in by_pat})
        raise XrayganError(f"{name}: {n} of its {len(held)} images overlap the experiment's training data "
                           f"({len(by_pat)} from {n_pat} patient(s) also in PREPARED's train/val, {len(by_sha)} with identical pixels "
                           "(sha256)); a held-out set must not share patients or images with the training data")


def _open_or_prepare_test(path: Path, dest: Path, size: int) -> PreparedDataset:
    """``--test``: a prepared dataset, or any folder/CSV `xraygan prepare` reads (prepared once into ``dest``)."""
    if (path / "dataset.json").is_file():
        return PreparedDataset.open(path)
    if not path.exists():
        raise XrayganError(f"--test {path}: not found; give a prepared dataset or a folder with one sub-folder per class")
    if not (dest / "dataset.json").is_file():
        from xraygan.data.prepare import prepare

        log.info("preparing --test %s at %d px into %s", path, size, dest)
        prepare(path, dest, size=size, force=True)
    return PreparedDataset.open(dest)


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


INNER_FRACTION = 0.15


def inner_split(ds: PreparedDataset, fold: Fold) -> tuple[Fold, np.ndarray, str | None]:
    """The fold with its threshold split taken out: a patient-grouped, stratified 15% of the fold's
    training patients (per class, by each patient's label), the same for every arm and seed of the
    fold. Returns (fold trained on the rest, inner rows, note); with fewer than 2 patients of a class
    in the inner split there is none (every training patient trains, the threshold is 0.5, the note
    says why)."""
    pats, y = ds.patients[fold.train], ds.labels[fold.train]
    rng = np.random.default_rng(_seed(fold.repeat, fold.index, 15))
    inner_pats = []
    for c in range(len(ds.classes)):
        cls_pats = sorted({p for p, l in zip(pats, y) if l == c})
        k = int(round(INNER_FRACTION * len(cls_pats)))
        if k < 2:
            return fold, np.zeros(0, np.int64), (f"threshold 0.5: fewer than 2 patients of class {ds.classes[c]} "
                                                 f"in the 15% inner split of {fold.name}'s training patients")
        inner_pats += list(rng.permutation(cls_pats)[:k])
    inner = np.isin(pats, inner_pats)
    return replace(fold, train=fold.train[~inner]), fold.train[inner], None


def unit_classifier(ccfg: ClassifierConfig, n_real: int) -> ClassifierConfig:
    """The classifier config of every arm of a fold: ``--epochs`` count epochs of the fold's ``n_real``
    real training images, turned into one step budget for all arms, so that arms differ only in
    their data (an arm with synthetic images does not get more optimiser steps)."""
    if ccfg.steps:
        return ccfg
    return replace(ccfg, steps=ccfg.epochs * steps_per_epoch(n_real, ccfg.batch))


def run_unit(ds: PreparedDataset, fold: Fold, seed: int, label: str, arm: str, ratio: float | None, source,
             cfg: ExperimentConfig, data: dict, device) -> dict:
    """Train and score one classifier; returns the unit record (scores, labels, patients, timing)."""
    from xraygan.experiments.classifier import predict_scores, train_classifier

    from xraygan.experiments.stats import youden_threshold

    t0 = time.perf_counter()
    fold, inner, note = inner_split(ds, fold)  # the classifier trains on the rest; the threshold is chosen on `inner`
    x, y, n_real, n_syn = _training_set(ds, fold, data["x"], data["pos"], arm, ratio, source, cfg, seed)
    ccfg = unit_classifier(cfg.classifier, len(fold.train))
    model = train_classifier(x, y, ccfg, seed=unit_seed(fold, seed), device=device,
                             augment=(arm == "real+classic"), num_classes=len(ds.classes))
    threshold = 0.5
    if len(inner):
        inner_score = predict_scores(model, data["x"][[data["pos"][r] for r in inner]], device)
        threshold = youden_threshold(ds.labels[inner], inner_score)
    fold_x = data["x"][[data["pos"][r] for r in fold.test]]
    rec = {
        "repeat": fold.repeat, "fold": fold.index, "seed": seed, "label": label, "arm": arm, "ratio": ratio,
        "real_fraction": cfg.real_fraction,
        "n_real": n_real.tolist(), "n_synthetic": n_syn.tolist(), "classifier_steps": ccfg.steps,
        "threshold": threshold, "threshold_note": note, "n_threshold_images": int(len(inner)),
        "source": getattr(source, "name", None) if n_syn.sum() else None,
        "fold_test": {"rows": fold.test.tolist(), "score": predict_scores(model, fold_x, device).tolist()},
        "test_sets": {name: {"score": predict_scores(model, tx, device).tolist()} for name, (tx, _, _) in data["tests"].items()},
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
    from xraygan.experiments.synthetic import make_source, validate_source
    from xraygan.utils.runtime import resolve_device

    ds = PreparedDataset.open(cfg.prepared)
    if len(ds.classes) != 2:
        raise XrayganError(f"{cfg.prepared}: the experiment needs exactly two classes (negative, positive); found {ds.classes}")
    if cfg.classifier.input_size > ds.size:
        log.warning("--input-size %d is above the prepared size %d: images are upsampled", cfg.classifier.input_size, ds.size)
    if not cfg.margin > 0:
        raise XrayganError(f"--margin {cfg.margin}: the equivalence margin must be a positive AUC difference, e.g. 0.01")
    device = resolve_device(cfg.device)
    labels = arm_labels(cfg)
    if any(arm in ("real+synthetic", "synthetic") for _, arm, _ in labels):
        validate_source(cfg)
    partitions = make_repeated_folds(ds, cfg.folds, cfg.repeats, seed=cfg.fold_seed, real_fraction=cfg.real_fraction)
    folds = [f for part in partitions for f in part]
    out = _open_out(cfg)
    data = _load_data(ds, cfg)
    needs_source = any(arm in ("real+synthetic", "synthetic") for _, arm, _ in labels)
    todo = [(f, s, lab) for f in folds for s in range(cfg.seeds) for lab in labels]
    done_before = sum((out / "units" / f"{unit_name(f, s, lab[0])}.json").is_file() for f, s, lab in todo)
    log.info("experiment: %d units (%d already done) in %s", len(todo), done_before, out)
    t_start = time.perf_counter()
    for fold in folds:
        pending = [(s, lab) for s in range(cfg.seeds) for lab in labels
                   if not (out / "units" / f"{unit_name(fold, s, lab[0])}.json").is_file()]
        if not pending:
            continue
        source = make_source(cfg, ds, fold, out, device) if needs_source else None
        for s, (label, arm, ratio) in pending:
            rec = run_unit(ds, fold, s, label, arm, ratio, source, cfg, data, device)
            rec["unit_fingerprint"] = cfg.unit_fingerprint()
            atomic_write_json(out / "units" / f"{unit_name(fold, s, label)}.json", rec)
            if progress:
                log.info("%s seed %d %-22s AUC %.3f  (%.1fs)", fold.name, s, label,
                         _fold_auc(ds, rec), rec["wall_s"])
    units = load_units(out, partitions, cfg.seeds, labels)
    results = summarize(cfg, ds, partitions, labels, data, units, _gan_records(out))
    results["wall_s_this_invocation"] = time.perf_counter() - t_start
    results["units_run_this_invocation"] = len(todo) - done_before
    write_outputs(results, out)
    return results


def _gan_records(out: Path) -> list[dict]:
    """Fold GANs of this experiment (steps, training wall time) from their ``.done`` markers."""
    return [json.loads(p.read_text()) for p in sorted((out / "gans").glob("*fold*/*.done"))]


def _fold_auc(ds: PreparedDataset, rec: dict) -> float:
    from xraygan.experiments.stats import auc_score

    rows = np.asarray(rec["fold_test"]["rows"])
    return auc_score(ds.labels[rows], np.asarray(rec["fold_test"]["score"]))


def with_overrides(cfg: ExperimentConfig, **kw) -> ExperimentConfig:
    """A copy of ``cfg`` with fields replaced (``classifier__epochs=3`` reaches into the classifier)."""
    cls_kw = {k.split("__", 1)[1]: v for k, v in kw.items() if k.startswith("classifier__")}
    top = {k: v for k, v in kw.items() if not k.startswith("classifier__")}
    if cls_kw:
        top["classifier"] = replace(cfg.classifier, **cls_kw)
    return replace(cfg, **top)
