"""Wall time of `xraygan demo` (the README's first command), in a fresh subprocess.

    python benchmarks/demo_time.py                               # the full demo
    python benchmarks/demo_time.py --threads 1                   # one thread (fastest on a busy machine)
    python benchmarks/demo_time.py --quick                       # the test-sized demo
    python benchmarks/demo_time.py --threads 1 --steps 1500 --max-time 100000 --keep /tmp/d   # its nominal steps, no cap

Reports the total wall time including Python start-up, the per-stage times the demo prints, the
steps the training reached within its time cap, and the load average (the machine may be shared).

Then it scores the demo's own output (``--no-score`` skips this): per class, the synthetic images
it wrote (``synthetic/CLASS/``) against the sample's held-out real images of the class (val+test),
in random-CNN features (:mod:`xraygan.metrics.encoder`, which nothing trains on): precision,
recall and coverage, each beside its floor (as many *training* images of the class, drawn at
random, scored against the same reference), and the intra-class pixel std beside the real one. A
class whose recall is below half its floor looks collapsed. n is small (36 per class), so
differences under ~0.15 are noise.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="time `xraygan demo --quick` instead")
    p.add_argument("--threads", type=int, default=0, help="passed to `xraygan demo --threads` (0 = PyTorch default)")
    p.add_argument("--keep", metavar="DIR", help="write the demo to DIR (must not exist) instead of a temporary folder")
    p.add_argument("--steps", type=int, help="passed to `xraygan demo --steps`")
    p.add_argument("--max-time", type=float, help="passed to `xraygan demo --max-time` (seconds of training)")
    p.add_argument("--no-score", action="store_true", help="only time the demo")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "demo"
        cmd = [sys.executable, "-m", "xraygan", "demo", "--out", str(out), "-q", "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
        cmd += (["--steps", str(args.steps)] if args.steps else []) + (["--max-time", str(args.max_time)] if args.max_time else [])
        load0 = os.getloadavg()[0]
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        load1 = os.getloadavg()[0]
        if res.returncode != 0:
            print(res.stdout, res.stderr, file=sys.stderr)
            raise SystemExit(res.returncode)
        print(f"command: {' '.join(cmd[1:])}")
        print(f"wall time: {wall:.1f} s   (1-min load average {load0:.1f} before, {load1:.1f} after, {os.cpu_count()} CPUs; shared machine)")
        print(res.stdout.strip())
        if not args.no_score:
            for line in score_demo(out):
                print(line)


def score_demo(out: Path, seed: int = 99) -> list[str]:
    """Per-class diversity of the demo's synthetic images against the sample's held-out real ones."""
    import csv

    import numpy as np
    from PIL import Image

    from xraygan.data.dataset import PreparedDataset
    from xraygan.metrics.features import get_extractor, to_tensor
    from xraygan.metrics.per_class import class_scores, collapse_warnings, random_subset

    ds = PreparedDataset.open(out / "prepared")
    ex = get_extractor("random", "cpu", seed=0)
    with open(out / "synthetic" / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng, res = np.random.default_rng(seed), {}
    for c in ds.classes:
        ref_idx = ds.indices(split=["val", "test"], label=c)
        fake = np.stack([np.asarray(Image.open(out / "synthetic" / r["file"]).convert("L")) for r in rows if r["label"] == c])
        n = min(len(ref_idx), len(fake))
        floor = np.asarray(ds.pixels()[random_subset(ds.indices(split="train", label=c), n, rng)])
        ref = np.asarray(ds.pixels()[ref_idx])
        if fake.shape[1:] != ref.shape[1:]:
            raise SystemExit(f"synthetic images are {fake.shape[1]} px, the prepared sample {ref.shape[1]} px")
        f = lambda p: ex.features(to_tensor(p))  # noqa: E731
        res[c] = class_scores(f(ref), f(fake[:n]), f(floor), fake[:n], floor)
    lines = ["per class (random-CNN features; value/floor; floor = as many real training images vs the same held-out reference):"]
    for c, e in res.items():
        v = lambda k: f"{e[k]['value']:.2f}/{e[k]['floor']:.2f}"  # noqa: E731
        lines.append(f"  {c:10s} n={e['n']:3d}  precision {v('precision')}  recall {v('recall')}  coverage {v('coverage')}  "
                     f"pixel std {v('pixel_std')}  FD {e['fd']['value']:.1f}/{e['fd']['floor']:.1f}")
    return lines + [f"  warning: {w}" for w in collapse_warnings(res)]


if __name__ == "__main__":
    main()
