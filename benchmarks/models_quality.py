"""Quality of DCGAN, StyleGAN2(+ADA) and PGGAN at equal budgets in images shown (kimg), not wall time.

Usage::

    python benchmarks/models_quality.py PREPARED_64PX [--kimg 20] [--train-images 0 200] [--width 64] \
        [--models dcgan stylegan2 pggan] [--n 1000] [--device auto] [--work DIR]

PREPARED_64PX is a prepared dataset (``xraygan prepare ... --size 64``). For every training-set
size (0 = the whole train split; 200 = 200 training images drawn per seed, ADA's use case) and
every model, the script trains an unconditional model for ``--kimg`` thousand images with
``xraygan.training.loop.train`` (library defaults, ``--batch``), samples ``--n`` images from the
EMA generator and reports the ``xray`` Frechet distance against the real images (all splits)
beside its floor (the same distance between two disjoint real halves at the same n), with
KID and precision/recall, via :func:`xraygan.metrics.evaluate.evaluate`. Wall time and img/s of
each training run are printed too, but the comparison is at equal kimg.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def subset_dataset(src: Path, dst: Path, n_train: int, seed: int) -> Path:
    """A prepared dataset holding ``n_train`` random training images of ``src`` (val/test dropped)."""
    from xraygan.data.dataset import PreparedDataset

    ds = PreparedDataset.open(src)
    idx = np.sort(np.random.default_rng(seed).choice(ds.indices(split="train"), n_train, replace=False))
    dst.mkdir(parents=True, exist_ok=True)
    np.save(dst / "pixels.npy", np.asarray(ds.pixels()[idx]))
    rows = [ds.rows[i] for i in idx]
    with open(dst / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    info = dict(ds.info, n_images=len(rows), pixels="pixels.npy",
                counts={"train": {c: sum(r["label"] == c for r in rows) for c in ds.classes}})
    (dst / "dataset.json").write_text(json.dumps(info, indent=1))
    if not (dst / "images").exists():
        os.symlink((src / "images").resolve(), dst / "images")
    return dst


def run_one(data: Path, real: Path, work: Path, model: str, a: argparse.Namespace) -> dict:
    from xraygan.metrics.evaluate import evaluate
    from xraygan.training.config import TrainConfig
    from xraygan.training.loop import train

    kimg, batch, n, device, seed = a.kimg, a.batch, a.n, a.device, a.seed
    steps = max(1, round(kimg * 1000 / batch))
    # PGGAN: 9 phases grow 4 -> 64 px; scale them so the last quarter of the budget is at full size
    opts = {"phase_kimg": a.pggan_phase_kimg or kimg / 12} if model == "pggan" else {}
    cfg = TrainConfig(data=str(data), out=str(work / model), model=model, batch=batch, steps=steps, width=a.width,
                      sample_every=steps, ckpt_every=steps, log_every=max(1, steps // 20), device=device,
                      seed=seed, force=True, model_options=opts)
    t0 = time.perf_counter()
    run = train(cfg)
    seconds = time.perf_counter() - t0
    res = evaluate(real, run=run, checkpoint="latest", n=n, features="xray", seed=seed, device=device,
                   per_class=False, kid_subsets=20, kid_subset_size=min(500, n), ssim_pairs=0)
    o = res["overall"]
    return {"model": model, "kimg": kimg, "steps": steps, "seconds": round(seconds, 1),
            "img_per_s": round(steps * batch / seconds, 2), "fd": o["fd"]["value"], "fd_floor": o["fd"]["floor"],
            "kid": o["kid"]["value"], "precision": o["precision"]["value"], "recall": o["recall"]["value"], "n": res["n"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="prepared dataset at 64 px")
    ap.add_argument("--kimg", type=float, default=20.0, help="thousand images shown per model")
    ap.add_argument("--train-images", type=int, nargs="+", default=[0, 200], help="0 = the whole train split")
    ap.add_argument("--models", nargs="+", default=["dcgan", "stylegan2", "pggan"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--width", type=int, default=64, help="--width of every model (channels at the output size)")
    ap.add_argument("--pggan-phase-kimg", type=float, help="PGGAN phase_kimg (default: kimg / 12)")
    ap.add_argument("--n", type=int, default=1000, help="images per side for the metrics")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, help="folder for runs (default: a temporary folder)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    work = a.work or Path(tempfile.mkdtemp(prefix="xraygan-quality-"))
    print(f"# torch {torch.__version__}, {platform.machine()}, device {a.device}, batch {a.batch}, width {a.width}, "
          f"{a.kimg:g} kimg per model, n={a.n}, xray features; runs in {work}")
    print(f"{'train_imgs':>10} {'model':<10} {'kimg':>6} {'seconds':>8} {'img/s':>7} {'FD':>8} {'floor':>8} {'KID':>8} {'prec':>6} {'recall':>6}")
    for n_train in a.train_images:
        data = a.data if n_train == 0 else subset_dataset(a.data, work / f"subset{n_train}", n_train, a.seed)
        for model in a.models:
            r = run_one(data, a.data, work / f"t{n_train}", model, a)
            print(f"{n_train or 'all':>10} {model:<10} {r['kimg']:>6g} {r['seconds']:>8} {r['img_per_s']:>7} "
                  f"{r['fd']:>8.3f} {r['fd_floor']:>8.3f} {r['kid']:>8.4f} {r['precision']:>6.3f} {r['recall']:>6.3f}", flush=True)
            with open(work / "results.jsonl", "a") as fh:
                fh.write(json.dumps({"train_images": n_train, **r}) + "\n")


if __name__ == "__main__":
    main()
