"""Why do conditional models collapse? Ablations of the conditional DCGAN (and the other families'
conditional paths), scored per class in a feature space that no training or selection reads.

Usage::

    python benchmarks/conditional_collapse.py PREPARED --arms baseline cbn ... [--steps 420] [--minutes 20] \
        [--size 32] [--work /tmp/cc/runs] [--n 1000] [--threads 1]

PREPARED is a prepared dataset of the shared chest X-rays (``xraygan prepare
../shared/data/chest-xray-pneumonia/labels.csv PREPARED --size 32``). Every arm trains on the
*train* split only, for ``--steps`` steps (equal kimg; capped at ``--minutes`` of wall time) on
``--threads`` threads (steps, kimg and minutes are recorded, since the machine is shared), then
its EMA generator at ``latest.pt`` is scored per class:

- reference: the held-out real images of the class (val + test: patients the run never saw);
- synthetic: as many images of the class as the reference has, from fresh latents (seed 123457);
- floor: the same number of *training-split* real images of the class, drawn at random (seed
  recorded), scored against the same reference: what a perfect generator of the training
  distribution would get at this n;
- features: ``random`` (a randomly initialised CNN, :mod:`xraygan.metrics.encoder`), which nothing
  in training or checkpoint selection reads; ``pixel_std`` is the intra-class per-pixel std.

Resumable per arm: an arm whose ``result.json`` exists is only printed; an arm with a run folder
but no result is scored again from its checkpoint. Each arm's sample grid is
``WORK/ARM/samples/step_*.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

# arm -> (TrainConfig overrides, model options); every arm is --conditional on the train split
ARMS: dict[str, tuple[dict, dict]] = {
    # options not named take the family's defaults, so every arm pins the collapse fixes it does not test
    # the default before issue 12: label embedding concatenated to z, BatchNorm D + projection, BCE, fake labels = real batch labels
    "baseline": ({}, {"g_cond": "concat", "d_norm": "bn", "fake_labels": "real", "mbstd": False, "balance": False}),
    "uncond-per-class": ({}, {"mbstd": False}),  # special-cased: two unconditional runs with --label, half the time each
    "fake-uniform": ({}, {"g_cond": "concat", "d_norm": "bn", "fake_labels": "uniform", "mbstd": False, "balance": False}),
    "balanced": ({}, {"g_cond": "concat", "d_norm": "bn", "fake_labels": "real", "balance": True, "mbstd": False}),
    "both-balanced": ({}, {"g_cond": "both", "d_norm": "bn", "fake_labels": "real", "balance": True, "mbstd": False}),
    "cbn": ({}, {"g_cond": "cbn", "d_norm": "bn", "fake_labels": "real", "mbstd": False, "balance": False}),
    "sn-hinge": ({"loss": "hinge"}, {"g_cond": "concat", "d_norm": "sn", "fake_labels": "real", "mbstd": False, "balance": False}),
    "cbn-sn-hinge": ({"loss": "hinge"}, {"g_cond": "cbn", "d_norm": "sn", "fake_labels": "real", "mbstd": False, "balance": False}),
    "no-ema": ({"ema": 0.0}, {"g_cond": "concat", "d_norm": "bn", "fake_labels": "real", "mbstd": False, "balance": False}),
    "d-embed-init": ({}, {"g_cond": "concat", "d_norm": "bn", "fake_labels": "real", "d_embed_init": 1.0, "mbstd": False, "balance": False}),
    "both": ({}, {"g_cond": "both", "d_norm": "bn", "fake_labels": "real", "mbstd": False, "balance": False}),
    "mbstd": ({}, {"g_cond": "concat", "d_norm": "bn", "fake_labels": "real", "mbstd": True, "balance": False}),
    "mbstd-balanced": ({}, {"g_cond": "concat", "d_norm": "bn", "fake_labels": "real", "mbstd": True, "balance": True}),
    "uncond-per-class-noaug": ({"diffaug": "none"}, {"mbstd": False}),  # as uncond-per-class, DiffAugment off (auto turns it on below 1000 images)
    "uncond-per-class-mbstd": ({"diffaug": "none"}, {"mbstd": True}),
    "both-mbstd": ({}, {"g_cond": "both", "d_norm": "bn", "fake_labels": "real", "mbstd": True, "balance": False}),
    "both-mbstd-balanced": ({}, {"g_cond": "both", "d_norm": "bn", "fake_labels": "real", "mbstd": True, "balance": True}),
    "diffaug": ({"diffaug": "translation,cutout"}, {"g_cond": "concat", "d_norm": "bn", "fake_labels": "real", "mbstd": False, "balance": False}),
    "both-diffaug": ({"diffaug": "translation,cutout"}, {"g_cond": "both", "d_norm": "bn", "fake_labels": "real", "mbstd": False, "balance": False}),
    "both-balanced-diffaug": ({"diffaug": "translation,cutout"}, {"g_cond": "both", "d_norm": "bn", "fake_labels": "real", "balance": True, "mbstd": False}),
    "both-uniform": ({}, {"g_cond": "both", "d_norm": "bn", "fake_labels": "uniform", "mbstd": False, "balance": False}),
    "cbn-dembed0.1": ({}, {"g_cond": "cbn", "d_norm": "bn", "fake_labels": "real", "d_embed_init": 0.1, "mbstd": False, "balance": False}),
    "cbn-dembed1": ({}, {"g_cond": "cbn", "d_norm": "bn", "fake_labels": "real", "d_embed_init": 1.0, "mbstd": False, "balance": False}),
    "fixed": ({}, {}),  # the new defaults, whatever they are
    "fixed-noaug": ({"diffaug": "none"}, {}),  # the new defaults with DiffAugment off / on (whatever auto would choose)
    "fixed-diffaug": ({"diffaug": "translation,cutout"}, {}),
    "stylegan2": ({"model": "stylegan2"}, {}),
    "pggan": ({"model": "pggan"}, {}),
    # issue 12 item 4: the candidate faster families, at width 32 (a step costs about the DCGAN default's at width 64)
    "fastgan": ({"model": "fastgan", "width": 32}, {}),
    "projected": ({"model": "projected", "width": 32}, {"encoder_size": 32}),  # the encoder read at 32 px (about 4x cheaper)
    "projected-enc64": ({"model": "projected", "width": 32}, {}),  # the encoder read at its own 64 px
}
FAKE_SEED = 123457
FLOOR_SEED = 99


def held_out(ds, size: int):
    """(pixels, labels) of the val+test images at ``size``."""
    from xraygan.metrics.evaluate import _resize_pixels

    idx = ds.indices(split=["val", "test"])
    return _resize_pixels(np.asarray(ds.pixels()[idx]), size), ds.labels[idx]


def train_arm(data: Path, work: Path, arm: str, a: argparse.Namespace) -> list[Path]:
    """Train ``arm`` (or reuse its run) and return its run folder(s)."""
    from xraygan.training.config import TrainConfig
    from xraygan.training.loop import train

    over, opts = ARMS[arm]
    over = dict(over)
    model = over.pop("model", "dcgan")
    known = set()
    if model == "dcgan":
        from xraygan.training.families import DCGANOptions
        import dataclasses

        known = {f.name for f in dataclasses.fields(DCGANOptions)}
        opts = {k: v for k, v in opts.items() if k in known}
    base = dict(data=str(data), model=model, size=a.size, batch=a.batch, steps=a.steps, max_time=60 * a.minutes,
                sample_every=10**6, ckpt_every=10**6, log_every=10, threads=a.threads, seed=a.seed, force=True,
                device="cpu", model_options=opts)
    base.update(over)
    runs = []
    if arm.startswith("uncond-per-class"):
        for label in a.classes:
            out = work / arm / label
            if not (out / "checkpoints" / "latest.pt").is_file():
                cfg = TrainConfig(**{**base, "out": str(out), "label": label, "steps": a.steps // len(a.classes),
                                     "max_time": 60 * a.minutes / len(a.classes)})
                train(cfg)
            runs.append(out)
        return runs
    out = work / arm
    if not (out / "checkpoints" / "latest.pt").is_file():
        train(TrainConfig(**{**base, "out": str(out), "conditional": True}))
    return [out]


def run_info(run: Path) -> dict:
    from xraygan.training.rundir import RunDir, read_metrics

    recs = read_metrics(RunDir(run))
    last = recs[-1] if recs else {}
    return {"steps": int(last.get("step", 0)), "kimg": round(last.get("images", 0) / 1000, 2),
            "minutes": round(last.get("time", 0) / 60, 2)}


def fake_images(runs: list[Path], classes: list[str], per_class: dict[str, int], variant: str = "ema",
                train_labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-class synthetic images from fresh latents. ``variant``: ``ema`` (the EMA generator as
    stored), ``raw`` (the trained G with its own running BatchNorm statistics), ``ema-uniform`` /
    ``ema-shares`` (the EMA generator with its BatchNorm statistics recomputed from batches whose
    labels are uniform / have the training class shares)."""
    import torch

    from xraygan.generate import load_generator
    from xraygan.metrics.training_hook import to_uint8_pixels
    from xraygan.training.ema import refresh_batchnorm

    out = {}
    if len(runs) == 1:
        s = load_generator(runs[0], "latest", device="cpu", ema=variant != "raw")
        if variant in ("ema-uniform", "ema-shares"):
            fam, lab = s.family, torch.from_numpy(np.asarray(train_labels))

            def forward(gen):
                z = fam.latent(64, gen)
                y = torch.randint(len(classes), (64,), generator=gen) if variant == "ema-uniform" else lab[torch.randint(len(lab), (64,), generator=gen)]
                fam.sample(s.generator, z, y)

            refresh_batchnorm(s.generator, forward, seed=9173)
        for c in classes:
            out[c] = to_uint8_pixels(s.sample(per_class[c], labels=c, seed=FAKE_SEED))
    else:
        for c, r in zip(classes, runs):
            s = load_generator(r, "latest", device="cpu")
            out[c] = to_uint8_pixels(s.sample(per_class[c], seed=FAKE_SEED))
    return out


def score_arm(data: Path, runs: list[Path], a: argparse.Namespace) -> dict:
    from xraygan.data.dataset import PreparedDataset
    from xraygan.metrics.evaluate import _resize_pixels
    from xraygan.metrics.features import get_extractor, to_tensor
    from xraygan.metrics.per_class import class_scores, random_subset

    ds = PreparedDataset.open(data)
    ex = get_extractor("random", "cpu", seed=0)
    hp, hl = held_out(ds, a.size)
    tr = ds.indices(split="train")
    tr_pix, tr_lab = _resize_pixels(np.asarray(ds.pixels()[tr]), a.size), ds.labels[tr]
    per_class_n = {c: int(min(a.n, (hl == i).sum())) for i, c in enumerate(ds.classes)}
    fakes = fake_images(runs, ds.classes, per_class_n, a.variant, ds.labels[ds.indices(split="train")])
    from PIL import Image

    rows = [np.concatenate(list(fakes[c][:8]), axis=1) for c in ds.classes]  # one row of 8 per class
    Image.fromarray(np.concatenate(rows, axis=0)).resize((8 * 64, 64 * len(rows)), Image.NEAREST).save(runs[0].parent / (runs[0].name + "_grid.png") if len(runs) > 1 else runs[0] / f"grid{'' if a.variant == 'ema' else '_' + a.variant}.png")
    rng = np.random.default_rng(FLOOR_SEED)
    feats = lambda p: ex.features(to_tensor(p))  # noqa: E731
    res = {}
    # class consistency: a 5-NN classifier on the random features of the training images; floor = its accuracy on held-out real images
    ftr = feats(tr_pix)
    for i, c in enumerate(ds.classes):
        ref = hp[random_subset(np.flatnonzero(hl == i), per_class_n[c], rng)]
        flo = tr_pix[random_subset(np.flatnonzero(tr_lab == i), per_class_n[c], rng)]
        ff, fr = feats(fakes[c]), feats(ref)
        res[c] = class_scores(fr, ff, feats(flo), fakes[c], flo)
        res[c]["class_consistency"] = {"value": knn_accuracy(ftr, tr_lab, ff, i), "floor": knn_accuracy(ftr, tr_lab, fr, i)}
    return res


def knn_accuracy(train_f: np.ndarray, train_y: np.ndarray, f: np.ndarray, c: int, k: int = 5) -> float:
    """Share of ``f`` that a k-NN classifier (on ``train_f``, balanced by class frequency) calls class ``c``."""
    from xraygan.metrics.prdc import pairwise_distances

    nn_idx = np.argpartition(pairwise_distances(f, train_f), k, axis=1)[:, :k]
    prior = np.bincount(train_y, minlength=int(train_y.max()) + 1) / len(train_y)
    votes = np.stack([(train_y[nn_idx] == j).mean(1) / prior[j] for j in range(len(prior))], 1)
    return float((votes.argmax(1) == c).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--arms", nargs="+", default=["baseline"], choices=list(ARMS))
    ap.add_argument("--steps", type=int, default=420, help="steps per arm (equal kimg: the machine is shared, so minutes vary)")
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-time cap per arm")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", type=int, default=1000, help="max images per class (reference = val+test)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/cc/runs"))
    ap.add_argument("--variant", default="ema", choices=("ema", "raw", "ema-uniform", "ema-shares"),
                    help="which generator of a trained arm to score (see fake_images); results go to result[_VARIANT].json")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    from xraygan.data.dataset import PreparedDataset

    a.classes = PreparedDataset.open(a.data).classes
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    for arm in a.arms:
        res_path = a.work / arm / ("result.json" if a.variant == "ema" else f"result_{a.variant}.json")
        if not res_path.is_file():
            t0 = time.time()
            runs = train_arm(a.data, a.work, arm, a)
            info = [run_info(r) for r in runs]
            scores = score_arm(a.data, runs, a)
            res = {"arm": arm, "variant": a.variant, "overrides": ARMS[arm][0], "model_options": ARMS[arm][1], "runs": [str(r) for r in runs],
                   "train": info, "per_class": scores, "cpu": cpu, "threads": a.threads, "size": a.size,
                   "minutes_budget": a.minutes, "wall_s": round(time.time() - t0, 1), "fake_seed": FAKE_SEED,
                   "floor_seed": FLOOR_SEED, "features": "random (seed 0)",
                   "reference": "val+test real images of the class; floor: as many train-split images"}
            res_path.parent.mkdir(parents=True, exist_ok=True)
            res_path.write_text(json.dumps(res, indent=1))
        res = json.loads(res_path.read_text())
        steps = "+".join(str(t["steps"]) for t in res["train"])
        kimg = "+".join(str(t["kimg"]) for t in res["train"])
        mins = "+".join(str(t["minutes"]) for t in res["train"])
        for c, e in res["per_class"].items():
            f = lambda m: f"{e[m]['value']:.3f}/{e[m]['floor']:.3f}"  # noqa: E731
            print(f"{arm + ('' if a.variant == 'ema' else '/' + a.variant):16s} steps {steps:>9s} kimg {kimg:>9s} min {mins:>9s} {c:10s} n={e['n']:4d} "
                  f"FD {e['fd']['value']:7.2f}/{e['fd']['floor']:6.2f} P {f('precision')} R {f('recall')} "
                  f"C {f('coverage')} D {f('density')} std {f('pixel_std')}"
                  + (f" cls {f('class_consistency')}" if "class_consistency" in e else ""), flush=True)


if __name__ == "__main__":
    main()
