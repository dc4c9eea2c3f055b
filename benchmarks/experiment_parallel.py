"""Wall time of one small experiment sequentially, with ``--workers N`` and on a local Ray cluster (issue 16).

A tiny prepared dataset from the shared chest X-rays (``--images`` images, half per class, sampled
by a seed, at ``--size`` px), 2 folds x 2 seeds, arms ``real``, ``real+classic`` and
``real+synthetic`` x1; the synthetic source is the oracle control (held-back real images, real
fraction 0.5), or with ``--gan-steps N`` a conditional DCGAN of N steps per fold. The same
experiment runs into three fresh folders: sequentially (the reference), with ``--workers N``, and
with ``--ray`` (a local cluster of N CPUs; skipped when Ray is not installed). Printed: each wall
time, its ratio to the sequential one, and whether every unit file (scores, thresholds, counts;
all but the unit's own timing) is identical to the sequential run's, and the units' own time per
second of wall time (how many ran at once, on average, start-up included); with the CPU model, its
AVX2/AVX-512/avx512_bf16/AMX flags and the load average beside them.

    python benchmarks/experiment_parallel.py [--work /tmp/xraygan-bench/parallel] [--workers 2] [--gan-steps 0]

Outputs (prepared data, experiment folders) go under --work; nothing is written in the checkout.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from pathlib import Path
from _machine import cpu_line  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "chest-xray-pneumonia"


def tiny_prepared(data: Path, work: Path, n_images: int, size: int) -> Path:
    """Copy ``n_images`` seeded images (half per class) with their labels.csv rows, and prepare them."""
    import numpy as np

    from xraygan.data.prepare import prepare

    prep = work / f"prepared{size}_{n_images}"
    if (prep / "dataset.json").is_file():
        return prep
    with open(data / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(0)
    pick = []
    for label in sorted({r["label"] for r in rows}):
        cls = [r for r in rows if r["label"] == label]
        pick += [cls[i] for i in sorted(rng.choice(len(cls), n_images // 2, replace=False))]
    src = work / "source"
    shutil.rmtree(src, ignore_errors=True)
    for r in pick:
        (src / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data / r["path"], src / r["path"])
    with open(src / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(pick[0]))
        w.writeheader()
        w.writerows(pick)
    prepare(src / "labels.csv", prep, size=size, patient_col="patient_id", seed=0)
    return prep


def unit_records(out: Path) -> tuple[dict[str, dict], float]:
    """Every unit file's record without its timing, and the sum of the units' own wall times."""
    recs, busy = {}, 0.0
    for p in sorted((out / "units").glob("*.json")):
        rec = json.loads(p.read_text())
        busy += rec.pop("wall_s", 0.0)
        recs[p.name] = rec
    return recs, busy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/xraygan-bench/parallel"), help="work folder (wiped experiment folders)")
    ap.add_argument("--data", type=Path, default=SHARED, help="the shared chest X-ray folder (labels.csv)")
    ap.add_argument("--images", type=int, default=200, help="images in the tiny prepared dataset (half per class)")
    ap.add_argument("--size", type=int, default=32, help="prepared and classifier input size in px")
    ap.add_argument("--workers", type=int, default=2, help="local processes, and the CPUs of the local Ray cluster")
    ap.add_argument("--steps", type=int, default=60, help="classifier optimiser steps per unit")
    ap.add_argument("--gan-steps", type=int, default=0, help="0: the oracle control; N: a conditional DCGAN of N steps per fold")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    args = ap.parse_args()

    from xraygan.experiments.classifier import ClassifierConfig
    from xraygan.experiments.runner import ExperimentConfig, run_experiment

    args.work.mkdir(parents=True, exist_ok=True)
    prep = tiny_prepared(args.data, args.work, args.images, args.size)
    gan = "oracle"
    if args.gan_steps:
        gan = str(args.work / "gan.yaml")
        Path(gan).write_text(f"model: dcgan\nsize: {args.size}\nconditional: true\nwidth: 16\nbatch: 16\nsteps: {args.gan_steps}\n"
                             "ema: 0\nsample_every: 100000\nckpt_every: 100000\n")
    base = dict(prepared=str(prep), gan_config=gan, arms=("real", "real+classic", "real+synthetic"), ratios=(1.0,),
                folds=2, seeds=2, real_fraction=0.5 if gan == "oracle" else 1.0, n_boot=200, device="cpu",
                classifier=ClassifierConfig(classifier="small", input_size=args.size, steps=args.steps, batch=32))
    backends = [("sequential", {}), (f"--workers {args.workers}", {"workers": args.workers})]
    if not args.no_ray:
        try:
            import ray  # noqa: F401

            backends.append((f"--ray (local cluster, {args.workers} CPUs)", {"ray": "local", "workers": args.workers}))
        except ImportError:
            print("ray: not installed (pip install 'xraygan[ray]'); the Ray run is skipped")
    print(cpu_line())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"experiment: {args.images} images at {args.size} px, 2 folds x 2 seeds x 3 arms = 12 units, "
          f"{args.steps} classifier steps each, synthetic source {'oracle' if gan == 'oracle' else f'DCGAN {args.gan_steps} steps/fold'}")
    ref, ref_units = None, None
    for name, kw in backends:
        out = args.work / ("exp_" + name.split()[0].strip("-"))
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        res = run_experiment(ExperimentConfig(out=str(out), **base, **kw), progress=False)
        wall = time.perf_counter() - t
        units, busy = unit_records(out)
        ref = ref or wall
        ref_units = ref_units if ref_units is not None else units
        same = "identical" if units == ref_units else "DIFFERENT"
        print(f"{name:34s} wall {wall:7.1f} s  ratio to sequential {wall / ref:5.2f}  units run {res['units_run_this_invocation']:3d}  "
              f"unit files vs sequential: {same}  (units' own time {busy:.1f} s: {busy / wall:.2f} units at once on average)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":  # the guard matters: --workers starts processes with the spawn method
    main()
