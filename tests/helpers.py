"""Builders of tiny, real test data (no mocks): prepared datasets with a planted class signal."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_xrays(n: int, size: int, label: int, seed: int) -> np.ndarray:
    """(n, size, size) uint8 images: a noisy 'chest' whose bright blob sits left (0) or right (1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    out = np.empty((n, size, size), np.uint8)
    for i in range(n):
        cx = 0.3 if label % 2 == 0 else 0.7
        cy = 0.5 + rng.normal(0, 0.05)
        blob = np.exp(-((xx - cx - rng.normal(0, 0.03)) ** 2 + (yy - cy) ** 2) / 0.02)
        img = 60 + 120 * blob + 10 * label + rng.normal(0, 12, (size, size))
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def make_prepared(
    root: Path,
    size: int = 16,
    n_per_class: int = 24,
    classes: tuple[str, ...] = ("NORMAL", "PNEUMONIA"),
    per_patient: int = 2,
    split_fracs: tuple[float, float] = (0.15, 0.15),
    seed: int = 0,
) -> Path:
    """Write a prepared dataset (format version 1) straight to ``root`` and return ``root``.

    Patients hold ``per_patient`` images each; splits are assigned by patient.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True)
    rows, pixels = [], []
    counts: dict[str, dict[str, int]] = {s: {c: 0 for c in classes} for s in ("train", "val", "test")}
    for ci, cname in enumerate(classes):
        imgs = synthetic_xrays(n_per_class, size, ci, seed + 1000 * ci)
        n_pat = (n_per_class + per_patient - 1) // per_patient
        n_val = max(1, round(split_fracs[0] * n_pat))
        n_test = max(1, round(split_fracs[1] * n_pat))
        for i, img in enumerate(imgs):
            p = i // per_patient
            split = "val" if p < n_val else "test" if p < n_val + n_test else "train"
            name = f"images/{cname}_{i:05d}.png"
            Image.fromarray(img).save(root / name)
            rows.append({"file": name, "label": cname, "patient_id": f"{cname.lower()}{p:04d}", "sha256": hashlib.sha256(img.tobytes()).hexdigest(), "split": split})
            pixels.append(img)
            counts[split][cname] += 1
    np.save(root / "pixels.npy", np.stack(pixels))
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    info = {
        "format": "xraygan-prepared", "format_version": 1, "size": size, "classes": list(classes),
        "counts": counts, "n_images": len(rows), "source": "tests.helpers.make_prepared", "source_type": "synthetic",
        "options": {"size": size, "seed": seed}, "pixels": "pixels.npy",
    }
    (root / "dataset.json").write_text(json.dumps(info, indent=2))
    return root


def tiny_experiment(prep: Path, out: Path, **kw):
    """The ExperimentConfig of a tiny experiment: a 16-px classifier of 6 steps, 2 folds x 1 seed, the
    noise source, the `real` arm only, 30 bootstrap draws; ``kw`` replaces any field."""
    from xraygan.experiments.classifier import ClassifierConfig
    from xraygan.experiments.runner import ExperimentConfig

    base = dict(prepared=str(prep), out=str(out), gan_config="noise", arms=("real",), ratios=(1.0,), folds=2, seeds=1,
                classifier=ClassifierConfig(input_size=16, steps=6, batch=8), n_boot=30)
    return ExperimentConfig(**{**base, **kw})


def random_class_folder(root: Path, n: int = 6, seed: int = 0, prefix: str = "") -> Path:
    """SOURCE/<class>/*.png: 2 classes of n distinct random 16-px images (``PREFIXp<i>_<class>.png``)."""
    rng = np.random.default_rng(seed)
    for c in ("NORMAL", "PNEUMONIA"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / c / f"{prefix}p{i}_{c}.png")
    return root


def file_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes): compare before and after to prove nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
