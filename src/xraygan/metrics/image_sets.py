"""The image sets an evaluation compares: opening and resizing them, the real halves and the
synthetic sample (:func:`draw_sample`), the held-out report set of a run, the memorisation sets,
and sampling a run's generator (``evaluate RUN``; the ``--eval-every`` hook uses these too).

Split out of :mod:`xraygan.metrics.evaluate`, which re-exports every name.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xraygan.errors import XrayganError
from xraygan.metrics.features import to_tensor
from xraygan.utils.pixels import to_uint8, to_uint8_mul_add

log = logging.getLogger(__name__)

MIN_REPORT_CLASS = 200  # below this many test images of a class, its report set is val + test

@dataclass
class Sample:
    """Indices into the real set (halves ``a`` and ``b``) and the fake set, all of length ``n``."""

    a: np.ndarray
    b: np.ndarray
    fake: np.ndarray

    @property
    def n(self) -> int:
        return len(self.a)


def draw_sample(real_labels: np.ndarray, fake_labels: np.ndarray, n: int, seed: int) -> Sample:
    """Disjoint real halves and a fake sample, ``min(n, len(real) // 2, len(fake))`` each."""
    rng = np.random.default_rng(seed)
    m = min(n, len(real_labels) // 2, len(fake_labels))
    if m < 2:
        raise XrayganError(f"too few images to evaluate: {len(real_labels)} real and {len(fake_labels)} synthetic; need at least 4 real and 2 synthetic")
    pr, pf = rng.permutation(len(real_labels)), rng.permutation(len(fake_labels))
    return Sample(np.sort(pr[:m]), np.sort(pr[m:2 * m]), np.sort(pf[:m]))


def class_sample(s: Sample, real_labels: np.ndarray, fake_labels: np.ndarray, c: int, seed: int = 0) -> Sample:
    """The class-``c`` parts of ``s``, cut to a common n by *random* subsets (seed ``seed + c``,
    recorded as ``options.seed``), never by keeping the lowest indices."""
    from xraygan.metrics.per_class import random_subset

    a, b, f = s.a[real_labels[s.a] == c], s.b[real_labels[s.b] == c], s.fake[fake_labels[s.fake] == c]
    m = min(len(a), len(b), len(f))
    rng = np.random.default_rng([int(seed), int(c), 1])
    return Sample(random_subset(a, m, rng), random_subset(b, m, rng), random_subset(f, m, rng))


@dataclass
class Images:
    """Minimal image set: ``pixels`` uint8 (N, H, W), ``labels`` int64 (N,) indexing ``classes``."""

    pixels: np.ndarray
    labels: np.ndarray
    classes: list[str]


def report_real_set(real_path: str | Path, full: "Images") -> tuple["Images", np.ndarray, dict]:
    """The held-out real images a run is reported on: per class the test split, or val + test
    when the test split has fewer than :data:`MIN_REPORT_CLASS` images of the class.

    ``full`` is the whole prepared dataset (manifest order). Returns (images, patient ids, {class: splits}).
    """
    from xraygan.data.dataset import PreparedDataset

    ds = PreparedDataset.open(real_path)
    keep, used = [], {}
    for ci, name in enumerate(ds.classes):
        test = ds.indices(split="test", label=name)
        if len(test) >= MIN_REPORT_CLASS:
            keep.append(test)
            used[name] = "test"
        else:
            keep.append(ds.indices(split=["val", "test"], label=name))
            used[name] = "val+test"
    idx = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
    return Images(full.pixels[idx], full.labels[idx], full.classes), np.asarray(ds.patients, dtype=object)[idx], used


def _resize_pixels(pix: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W) -> uint8 (N, size, size) with the one resizer (``resize_images``)."""
    if pix.shape[1:] == (size, size):
        return pix
    out = [to_uint8_mul_add(to_tensor(pix[i:i + 512], size)[:, 0]).numpy() for i in range(0, len(pix), 512)]
    return np.concatenate(out)


def _open(path: str | Path, what: str, split=None) -> Images:
    from xraygan.data.sources import MixedSizesError, open_image_set

    try:
        s = open_image_set(path, split=split)
    except MixedSizesError:
        s = open_image_set(path, size=256, split=split)  # mixed sizes: bring to one size first
        log.warning("%s %s: images of different sizes were resized to 256 px first", what, path)
    if len(s.pixels) == 0:
        raise XrayganError(f"{what} {path}: no images; give a prepared dataset or a folder of class sub-folders with PNGs")
    return Images(np.asarray(s.pixels), np.asarray(s.labels, np.int64), list(s.classes))


def align_classes(fake: Images, classes: list[str], warnings: list[str]) -> Images:
    """Re-index ``fake`` labels onto ``classes`` by name (case-insensitive); unmatched -> -1."""
    lower = [c.lower() for c in classes]
    mapped = [lower.index(c.lower()) if c.lower() in lower else -1 for c in fake.classes]
    if -1 in mapped:
        warnings.append(f"synthetic class folder(s) {[c for c, m in zip(fake.classes, mapped) if m < 0]} match no real class "
                        f"({', '.join(classes)}); those images count only in the overall scores")
    lab = np.asarray(mapped, np.int64)[fake.labels] if len(fake.classes) else fake.labels
    return Images(fake.pixels, lab, classes)


def _is_prepared(path) -> bool:
    return path is not None and (Path(path) / "dataset.json").is_file()


def memorisation_sets(real: str | Path, real_set: Images, train: str | Path | None, size: int) -> tuple[Images | None, Images | None, str | None]:
    """(train, held-out, description): ``--train`` against the real images not in it, or the real
    prepared dataset's train split against its other splits; (None, None, None) when neither applies."""
    if train is not None:
        tr = _open(train, "--train", split="train" if _is_prepared(train) else None)
        tr = Images(_resize_pixels(tr.pixels, size), tr.labels, tr.classes)
        seen = {p.tobytes() for p in tr.pixels}
        keep = np.array([p.tobytes() not in seen for p in real_set.pixels])
        return tr, Images(real_set.pixels[keep], real_set.labels[keep], real_set.classes), f"{train} vs real images not in it"
    if _is_prepared(real):
        from xraygan.data.dataset import PreparedDataset

        ds = PreparedDataset.open(real)
        tr_idx, ho_idx = ds.indices(split="train"), ds.indices(split=["val", "test"])
        if len(tr_idx) >= 2 and len(ho_idx) >= 2:
            pick = lambda idx: Images(real_set.pixels[idx], real_set.labels[idx], real_set.classes)  # noqa: E731
            return pick(tr_idx), pick(ho_idx), f"{real} split train vs val+test"
    return None, None, None


# --- sampling a run (``evaluate RUN``; the --eval-every hook of metrics.training_hook uses these too) ---
def labels_like(names: list[str], real: Images, n: int) -> list[int] | None:
    """Per-image sampler label indices with the real class shares (None: a single-label sampler)."""
    if len(names) <= 1:
        return None
    lower = [c.lower() for c in real.classes]
    counts = np.array([(real.labels == lower.index(c.lower())).sum() if c.lower() in lower else 0 for c in names], float)
    if counts.sum() == 0:
        return [i % len(names) for i in range(n)]
    per = np.floor(n * counts / counts.sum()).astype(int)
    per[np.argmax(counts)] += n - per.sum()
    return [i for i, k in enumerate(per) for _ in range(k)]


def to_uint8_pixels(x) -> np.ndarray:
    """(n, 1, S, S) float in [-1, 1] -> uint8 (n, S, S)."""
    return to_uint8(x[:, 0]).numpy()


def sampler_images(sampler, real: Images, n: int, seed: int) -> Images:
    """``n`` images from a :class:`xraygan.training.sampler.Sampler` as uint8, labelled by the sampler's names."""
    names = list(sampler.label_names)
    labels = labels_like(names, real, n)
    x = sampler.sample(n, labels, seed=seed)  # (n, 1, S, S) in [-1, 1]
    pix = to_uint8_pixels(x)
    lab = np.asarray(labels if labels is not None else [0] * n, np.int64)
    return Images(pix, lab, names)


SELECTION_SEED_OFFSET = 5_000_000  # latents that choose best.pt during training
REPORT_SEED_OFFSET = 7_000_000  # latents of `evaluate RUN` (fresh: never used by selection)


def sample_run(run: str | Path, checkpoint: str, real: Images, n: int, seed: int, device: str) -> tuple[Images, dict]:
    """Sample ``n`` images from ``run``'s EMA generator at ``checkpoint`` (class shares as in ``real``)."""
    from xraygan.run import Run

    if not (Path(run) / "config.yaml").is_file():
        raise XrayganError(f"{run}: not a run folder (no config.yaml); give a folder written by `xraygan train`, or use --fake DIR")
    sampler = Run(run).sampler(checkpoint, device=device)
    # synthetic seeds far from generate's defaults, so evaluation never reuses a shown grid
    imgs = sampler_images(sampler, real, n, seed + REPORT_SEED_OFFSET)
    return imgs, {"path": str(run), "checkpoint": sampler.checkpoint, "step": int(sampler.step)}
