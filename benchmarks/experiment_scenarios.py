"""The issue-14 measurement: experiments that can show something (3 classes, learning curve, scarce pneumonia).

On ``../shared/data/chest-xray-pneumonia`` prepared at 64 px, small CNN, 3 folds x 2 seeds, arms
``real``, ``real+classic``, ``real+synthetic`` (ratio 1) plus the ``oracle`` and ``noise`` controls,
one conditional width-32 DCGAN per (fold, fraction) of ``--gan-steps`` steps at batch 32:

- ``curve``: 3 classes (the ``subtype`` column: bacteria, normal, virus), real fractions
  0.02, 0.1, 0.25 nested on the same folds; verdicts on macro one-vs-rest AUC;
- ``scarce``: the binary label with ``--class-fraction PNEUMONIA=0.05`` (5% of the pneumonia
  patients kept, every normal patient), real fraction 1.

Both run through the ``xraygan experiment`` command exactly as a user would; the script prints
each scenario's verdict lines (``verdicts.txt``) and wall time. Where the oracle is detected, the
experiment has the power to see a gain of that size.

    python benchmarks/experiment_scenarios.py [--work DIR] [--scenarios curve scarce] [--gan-steps 1000] [--workers 2]

Resumable: re-running with the same --work skips every finished GAN and classifier unit.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "chest-xray-pneumonia"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_line  # noqa: E402

SCENARIOS = {
    "curve": ("subtype", ["--real-fraction", "0.02,0.1,0.25"]),
    "scarce": ("label", ["--class-fraction", "PNEUMONIA=0.05"]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/xraygan-bench/scenarios"))
    ap.add_argument("--data", type=Path, default=SHARED, help="the shared chest X-ray folder (labels.csv)")
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--gan-steps", type=int, default=1000)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bootstrap", type=int, default=500)
    args = ap.parse_args()
    exe = [sys.executable, "-m", "xraygan"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args.work.mkdir(parents=True, exist_ok=True)
    print(cpu_line())
    gan = args.work / "gan.yaml"
    gan.write_text(f"model: dcgan\nsize: {args.size}\nconditional: true\nwidth: 32\nbatch: 32\n"
                   f"steps: {args.gan_steps}\nsample_every: 100000\nckpt_every: 100000\n")
    for name in args.scenarios:
        col, extra = SCENARIOS[name]
        prep = args.work / f"prepared{args.size}_{col}"
        if not (prep / "dataset.json").is_file():
            subprocess.run([*exe, "prepare", str(args.data / "labels.csv"), str(prep), "--size", str(args.size),
                            "--patient-col", "patient_id", "--label-col", col, "-q"], check=True, env=env)
        out = args.work / name
        cmd = [*exe, "experiment", str(prep), "--gan-config", str(gan), "--out", str(out),
               "--arms", "real,real+classic,real+synthetic", "--ratios", "1", "--controls", "oracle,noise",
               "--folds", str(args.folds), "--seeds", str(args.seeds), "--input-size", str(args.size),
               "--bootstrap", str(args.bootstrap), "--workers", str(args.workers), "--device", "cpu", "-q", *extra]
        print("$ " + " ".join(cmd[2:]), flush=True)
        t = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        print(r.stdout[-20000:], r.stderr[-3000:] if r.returncode else "", sep="\n")
        print(f"=== {name}: rc {r.returncode}, wall {wall:.0f} s this invocation ===\n", flush=True)


if __name__ == "__main__":
    main()
