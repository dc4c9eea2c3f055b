"""Held-out sets of the experiment: PREPARED's test split and ``--test`` (prepared on the fly when it is
a folder or CSV), refused when they share a patient id or an image's pixels with the training data.
Re-exported by :mod:`xraygan.experiments.runner`."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from xraygan.data.dataset import PreparedDataset
from xraygan.errors import XrayganError

log = logging.getLogger(__name__)


def load_test_sets(cfg, ds: PreparedDataset) -> dict[str, tuple[PreparedDataset, np.ndarray]]:
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
    training data (PREPARED's train+val rows). Ids are compared as written in the manifests, so both
    must be pseudonymised with the same key (``patient_key_fingerprint``) or both raw: otherwise the
    set is refused, since a shared patient could not be seen; empty values never match."""
    train = [ds.rows[i] for i in ds.indices(split=("train", "val"))]
    keys = [d.info.get("patient_key_fingerprint") for d in (held, ds)]
    def has_ids(rows):  # ids from the data; image-<sha> stands for one image with no patient id
        return any(r.get("patient_id") and not r["patient_id"].startswith("image-") for r in rows)

    if keys[0] != keys[1] and has_ids(held.rows) and has_ids(train):
        def how(k):
            return f"pseudonymised with key {k}" if k else "not pseudonymised"
        raise XrayganError(f"{name}: its patient ids are {how(keys[0])}, PREPARED's {how(keys[1])}, so shared patients "
                           "cannot be found; prepare both with the same --patient-key (the same key file) and rerun")
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
