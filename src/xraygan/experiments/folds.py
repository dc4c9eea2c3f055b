"""Patient-grouped stratified folds over a prepared dataset's train+val patients, and leakage checks.

Folds are made with scikit-learn's ``StratifiedGroupKFold`` (every image of a patient lands in
the same fold; class proportions are kept as well as grouping allows). The prepared test split
is never part of a fold: it is the external test set, touched only at evaluation.
``real_fraction`` < 1 keeps that fraction of each fold's *training* patients (stratified by the
patient's label) for the low-data regime; the dropped patients are what the ``oracle`` control
returns. Any GAN trained for a fold must have been trained on none of the fold's test patients
(:func:`check_no_leakage`).
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from xraygan.data.dataset import PreparedDataset
from xraygan.errors import XrayganError


@dataclass
class Fold:
    """One fold: row indices into the prepared dataset (all from its train+val splits)."""

    index: int
    train: np.ndarray  # rows the classifier (and the fold's GAN) may train on
    test: np.ndarray  # the fold's held-out rows
    dropped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # training rows left out by real_fraction
    repeat: int = 0  # which repetition's partition (``--repeats``) this fold belongs to
    tag: str = ""  # name prefix, e.g. ``frac0.1_`` with several --real-fraction values (one GAN per fold and fraction)

    @property
    def name(self) -> str:
        """``fold2`` in repetition 0 (the names of experiments before ``--repeats``), ``repeat1_fold2`` after."""
        return self.tag + (f"fold{self.index}" if self.repeat == 0 else f"repeat{self.repeat}_fold{self.index}")

    def to_dict(self, ds: PreparedDataset) -> dict:
        pats = ds.patients
        return {
            "repeat": self.repeat, "index": self.index,
            "n_train": int(len(self.train)), "n_test": int(len(self.test)), "n_dropped": int(len(self.dropped)),
            "train_patients": sorted(set(pats[self.train])),
            "test_patients": sorted(set(pats[self.test])),
        }


def _appearance_codes(patients: np.ndarray) -> np.ndarray:
    """Each patient's rank by first appearance in ``patients`` (manifest order): folds made from
    these codes do not depend on the ids' text, so pseudonymised ids (whose text depends on the
    user's key) give the same folds for every key."""
    first: dict[str, int] = {}
    return np.asarray([first.setdefault(p, len(first)) for p in patients], dtype=np.int64)


def _patient_labels(labels: np.ndarray, patients: np.ndarray) -> dict[str, int]:
    """Majority label of each patient (ties go to the larger label, i.e. the positive class)."""
    out = {}
    for p in np.unique(patients):
        counts = np.bincount(labels[patients == p])
        out[p] = int(len(counts) - 1 - np.argmax(counts[::-1]))
    return out


def subsample_patients(rows: np.ndarray, ds: PreparedDataset, fraction: float, seed: int,
                       class_fraction: dict[int, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Keep ``fraction`` of the patients of ``rows`` per class (x ``class_fraction[c]`` for the classes
    named there; at least one per class); (kept, dropped).

    Nested: each class's patients are put in one seeded order that does not depend on the fraction,
    and the first round(f x n) are kept, so a patient kept at a fraction is kept at every larger
    one (the learning curve's fractions share their patients)."""
    if not 0 < fraction <= 1:
        raise XrayganError(f"--real-fraction {fraction}: must be in (0, 1]")
    class_fraction = class_fraction or {}
    if fraction == 1 and all(f >= 1 for f in class_fraction.values()):
        return rows, np.zeros(0, np.int64)
    labels, pats = ds.labels[rows], ds.patients[rows]
    plab = _patient_labels(labels, pats)
    rng = np.random.default_rng(seed)
    keep: set[str] = set()
    order = dict(zip(pats, _appearance_codes(pats)))  # key-independent order (see _appearance_codes)
    for c in sorted(set(plab.values())):
        members = sorted((p for p, lab in plab.items() if lab == c), key=order.__getitem__)
        k = max(1, int(round(fraction * class_fraction.get(c, 1.0) * len(members))))
        keep.update(rng.permutation(members)[:k].tolist())
    mask = np.isin(pats, list(keep))
    return rows[mask], rows[~mask]


def repeat_seed(seed: int, repeat: int) -> int:
    """The fold seed of repetition ``repeat``: ``seed`` itself for repetition 0 (so an experiment run
    before ``--repeats`` existed keeps its partition), a seeded hash of (seed, repeat) after."""
    if repeat == 0:
        return int(seed)
    return int.from_bytes(hashlib.sha256(repr(("fold-repeat", int(seed), int(repeat))).encode()).digest()[:4], "little") // 2


def make_repeated_folds(ds: PreparedDataset, n_folds: int, repeats: int = 1, seed: int = 0,
                        real_fraction: float = 1.0, class_fraction: dict[int, float] | None = None) -> list[list[Fold]]:
    """One fresh patient-grouped stratified partition per repetition (``--repeats``), seeded."""
    if repeats < 1:
        raise XrayganError(f"--repeats {repeats}: must be at least 1")
    return [make_folds(ds, n_folds, seed=repeat_seed(seed, r), real_fraction=real_fraction, repeat=r,
                       class_fraction=class_fraction) for r in range(repeats)]


def make_folds(ds: PreparedDataset, n_folds: int = 5, seed: int = 0, real_fraction: float = 1.0, repeat: int = 0,
               class_fraction: dict[int, float] | None = None) -> list[Fold]:
    """Patient-grouped stratified ``n_folds``-fold split of the train+val rows of ``ds``."""
    from sklearn.model_selection import StratifiedGroupKFold

    rows = ds.indices(split=("train", "val"))
    if len(rows) == 0:
        raise XrayganError(f"{ds.root}: no train or val images to make folds from")
    labels, pats = ds.labels[rows], ds.patients[rows]
    n_pat_per_class = [len(set(pats[labels == c])) for c in np.unique(labels)]
    if n_folds < 2 or min(n_pat_per_class) < n_folds:
        raise XrayganError(
            f"--folds {n_folds}: needs at least 2 folds and no more folds than patients of the rarest class "
            f"({min(n_pat_per_class)}); lower --folds")
    sgkf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = []
    for i, (tr, te) in enumerate(sgkf.split(np.zeros(len(rows)), labels, groups=_appearance_codes(pats))):
        kept, dropped = subsample_patients(rows[tr], ds, real_fraction, seed=seed * 1000 + i, class_fraction=class_fraction)
        folds.append(Fold(i, kept, rows[te], dropped, repeat=repeat))
        if len(set(ds.labels[kept])) < 2 or len(set(labels[te])) < 2:
            raise XrayganError(f"fold {i} lacks a class in its training or test part; lower --folds or raise --real-fraction")
    return folds


INNER_FRACTION = 0.15


def inner_split(ds: PreparedDataset, fold: Fold) -> tuple[Fold, np.ndarray, str | None]:
    """The fold with its threshold split taken out: a patient-grouped, stratified 15% of the fold's
    training patients (per class, by each patient's label), the same for every arm and seed of the
    fold. Returns (fold trained on the rest, inner rows, note); with fewer than 2 patients of a class
    in the inner split there is none (every training patient trains, the threshold is 0.5, the note
    says why)."""
    pats, y = ds.patients[fold.train], ds.labels[fold.train]
    rng = np.random.default_rng(hash_seed(fold.repeat, fold.index, 15))
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


def hash_seed(*parts: int) -> int:
    """A 32-bit seed from integers (sha256 of their repr): the experiment's unit seeds
    (:func:`xraygan.experiments.units.unit_seed`) and the inner threshold split."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


def read_manifest_patients(path: str | Path) -> set[str]:
    """Patient ids listed in a training manifest CSV (column ``patient_id``)."""
    path = Path(path)
    if not path.is_file():
        raise XrayganError(f"{path}: training manifest not found; cannot check the GAN for leakage")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "patient_id" not in rows[0]:
        raise XrayganError(f"{path}: no patient_id column; cannot check the GAN for leakage")
    return {r["patient_id"] for r in rows}


def check_no_leakage(gan_patients: Iterable[str], test_patients: Iterable[str], what: str = "GAN") -> None:
    """Refuse (XrayganError) when the GAN's training patients overlap the fold's test patients."""
    overlap = sorted(set(gan_patients) & set(test_patients))
    if overlap:
        shown = ", ".join(overlap[:5]) + (f" and {len(overlap) - 5} more" if len(overlap) > 5 else "")
        raise XrayganError(
            f"{what} was trained on {len(overlap)} patient(s) of this fold's test set ({shown}); "
            "refusing to use it: train the GAN on the fold's training patients only (delete that GAN run so the experiment retrains it)")
