"""One unit of the experiment -- key (repeat, fold, seed, arm, real fraction) --: its name and
seeds, its training set (the fold's real images plus the arm's synthetic ones), the classifier it
trains and the record it writes (scores on the fold's test patients and on every held-out set);
and the real images every unit of a process shares (:func:`load_data`). The runner
(:mod:`xraygan.experiments.runner`) decides which units run where."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from xraygan.data.dataset import PreparedDataset, resize_images
from xraygan.experiments.classifier import ClassifierConfig, steps_per_epoch
from xraygan.experiments.config import ExperimentConfig
from xraygan.experiments.folds import Fold, hash_seed, inner_split
from xraygan.experiments.heldout import load_test_sets
from xraygan.utils.pixels import signed_tensor

# arms whose training set has synthetic images (the controls are arms too: ``--controls``)
MIXED_ARMS = ("real+synthetic", "real+classic+synthetic", "oracle", "noise")


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
    return hash_seed(fold.index, seed, *more) if fold.repeat == 0 else hash_seed(fold.repeat, fold.index, seed, *more)


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


def load_data(ds: PreparedDataset, cfg: ExperimentConfig) -> dict:
    """Real train+val images at the input size (row -> position map) and every held-out set."""
    rows = ds.indices(split=("train", "val"))
    size = cfg.classifier.input_size
    data = {"x": _as_input(ds.pixels()[rows], size), "pos": {int(r): i for i, r in enumerate(rows)}, "tests": {}}
    for name, (tds, trows) in load_test_sets(cfg, ds).items():
        data["tests"][name] = (_as_input(tds.pixels()[trows], size), tds.labels[trows], tds.patients[trows])
    return data


def fold_auc(ds: PreparedDataset, rec: dict) -> float:
    from xraygan.experiments.stats import auc_score
    from xraygan.experiments.stats_multiclass import macro_auc

    rows = np.asarray(rec["fold_test"]["rows"])
    score = np.asarray(rec["fold_test"]["score"])
    return macro_auc(ds.labels[rows], score) if score.ndim == 2 else auc_score(ds.labels[rows], score)
