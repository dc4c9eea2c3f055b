"""Patient-level, label-stratified train/val/test splits and patient ids from file names.

Images of one patient are correlated; splitting by image lets the same child appear in training
and test data and inflates every score (see Roberts et al., "Common pitfalls and
recommendations for using machine learning to detect and prognosticate for COVID-19", Nature
Machine Intelligence 3, 2021). Here every patient goes to exactly one split, and patients are
assigned within each label so every split keeps the class proportions (stratification).
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import PurePosixPath
from typing import Sequence

import numpy as np

from xraygan.errors import UsageError

SPLIT_NAMES = ("train", "val", "test")

#: Patient ids for the Kermany et al. (2018) chest X-ray file names:
#: ``person123_bacteria_456.jpeg`` -> ``person123``; ``IM-0115-0001.jpeg`` -> ``im0115``;
#: ``NORMAL2-IM-0383-0001.jpeg`` -> ``normal2-im0383`` (capture groups are joined, lower-cased).
KERMANY_PATIENT_REGEX = r"^(person\d+)_|^((?:NORMAL2-)?IM)-(\d+)"


def compile_patient_regex(pattern: str) -> re.Pattern:
    """Compile a ``--patient-regex`` pattern, with an error that names the option."""
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as e:
        raise UsageError(f"--patient-regex {pattern!r}: not a valid regular expression ({e})") from None


def patient_from_name(rx: re.Pattern, name: str) -> str | None:
    """Patient id of file ``name`` (its base name) by ``rx``; None when it does not match.

    A named group ``patient`` is used when present; otherwise the non-empty capture groups
    joined together, or the whole match when the pattern has no groups. Ids are lower-cased.
    """
    m = rx.search(PurePosixPath(name).name)
    if m is None:
        return None
    if "patient" in rx.groupindex:
        pid = m.group("patient") or ""
    elif rx.groups:
        pid = "".join(g for g in m.groups() if g)
    else:
        pid = m.group(0)
    return pid.lower() or None


def check_fractions(val: float, test: float) -> None:
    """Validate ``--val``/``--test``: each in [0, 1) and together below 1."""
    for name, v in (("--val", val), ("--test", test)):
        if not 0.0 <= v < 1.0:
            raise UsageError(f"{name} {v}: must be a fraction in [0, 1), e.g. 0.1")
    if val + test >= 1.0:
        raise UsageError(f"--val {val} + --test {test} leave no training data; make their sum below 1")


def patient_splits(labels: Sequence[str], patients: Sequence[str], val: float, test: float, seed: int) -> list[str]:
    """Assign each image a split so that no patient is in two splits, stratified by label.

    A patient's stratum is their most frequent label. Within a stratum, patients are shuffled
    with ``numpy.random.default_rng(seed)`` (after sorting, so the result depends only on the
    data and the seed) and each goes to the split furthest below its target image count.
    """
    check_fractions(val, test)
    labels, patients = list(labels), list(patients)
    if len(labels) != len(patients):
        raise ValueError("labels and patients differ in length")
    by_patient: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(patients):
        by_patient[p].append(i)
    strata: dict[str, list[str]] = defaultdict(list)
    for p, idx in by_patient.items():
        counts = Counter(labels[i] for i in idx)
        strata[min(counts, key=lambda c: (-counts[c], c))].append(p)
    rng = np.random.default_rng(seed)
    out = [""] * len(labels)
    fracs = {"train": 1.0 - val - test, "val": val, "test": test}
    for stratum in sorted(strata):
        pats = sorted(strata[stratum])
        pats = [pats[i] for i in rng.permutation(len(pats))]
        total = sum(len(by_patient[p]) for p in pats)
        target = {s: fracs[s] * total for s in SPLIT_NAMES}
        have = dict.fromkeys(SPLIT_NAMES, 0)
        for p in pats:
            # furthest below target; ties favour train, then val, then test (fixed order)
            s = max(SPLIT_NAMES, key=lambda k: (target[k] - have[k], -SPLIT_NAMES.index(k)))
            have[s] += len(by_patient[p])
            for i in by_patient[p]:
                out[i] = s
    return out


def split_counts(labels: Sequence[str], splits: Sequence[str], classes: Sequence[str]) -> dict[str, dict[str, int]]:
    """Image counts per split and class: ``{split: {class: n}}``."""
    counts = {s: dict.fromkeys(classes, 0) for s in SPLIT_NAMES}
    for lab, s in zip(labels, splits):
        counts[s][lab] += 1
    return counts
