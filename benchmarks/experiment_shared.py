"""The issue-5 measurement: does a per-fold GAN help the small CNN on the shared chest X-rays?

On ``../shared/data/chest-xray-pneumonia`` prepared at 64 px: small CNN, 3 folds x 2 seeds, arms
``real`` and ``real+synthetic`` (ratio 1), at real fraction 1.0 and 0.1. Prints the AUC with its
95% CI per arm (fold test sets and the prepared test split), the verdicts and the wall time; the
time of the synthetic arm is reported as a ratio to the real arm measured in the same run.

    python benchmarks/experiment_shared.py [--work DIR] [--gan-steps 1500] [--steps 500] [--threads 1] [--device auto]
        [--repeats R] [--controls oracle] [--workers N]

Every classifier of both arms takes the same number of optimiser steps (``--steps``), so only the
training data differs between arms (``--epochs`` counts epochs of the real images, also the same
steps in every arm).
The default GAN budget (1500 steps at batch 32, 48 kimg, of a width-32 conditional DCGAN per fold)
is what fits one CPU core in well under an hour for both fractions; on a GPU raise --gan-steps and
--gan-width.

Resumable: re-running with the same --work skips everything already finished.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "chest-xray-pneumonia"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/xraygan-bench/experiment"), help="work folder (prepared data, runs)")
    ap.add_argument("--data", type=Path, default=SHARED, help="the shared chest X-ray folder (labels.csv)")
    ap.add_argument("--gan-steps", type=int, default=1500, help="GAN steps per fold (conditional DCGAN)")
    ap.add_argument("--gan-width", type=int, default=32, help="DCGAN base feature maps")
    ap.add_argument("--gan-batch", type=int, default=32, help="GAN batch size")
    ap.add_argument("--steps", type=int, default=500, help="classifier optimiser steps, the same in every arm")
    ap.add_argument("--epochs", type=int, help="classifier epochs of the real images instead of --steps (every arm still takes the same steps)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--fractions", default="0.1,1.0", help="real fractions to run")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="fresh patient-grouped partitions (issue 13)")
    ap.add_argument("--controls", default="", help="control arms on the same folds, e.g. 'oracle' or 'oracle,noise' (the oracle runs where the fraction is below 1)")
    ap.add_argument("--workers", type=int, default=1, help="local worker processes for the classifier units")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)

    from xraygan.data.dataset import PreparedDataset
    from xraygan.data.prepare import prepare
    from xraygan.experiments.classifier import ClassifierConfig
    from xraygan.experiments.runner import ExperimentConfig, run_experiment

    args.work.mkdir(parents=True, exist_ok=True)
    prep = args.work / "prepared64"
    t0 = time.perf_counter()
    if not (prep / "dataset.json").is_file():
        prepare(args.data / "labels.csv", prep, size=64, patient_col="patient_id", seed=0)
    ds = PreparedDataset.open(prep)
    print(f"prepared {len(ds)} images at {ds.size} px ({time.perf_counter() - t0:.0f}s); classes {ds.classes}; counts {ds.info['counts']}")
    gan_cfg = args.work / "gan.yaml"
    gan_cfg.write_text(f"model: dcgan\nsize: 64\nconditional: true\nwidth: {args.gan_width}\nbatch: {args.gan_batch}\nsteps: {args.gan_steps}\n"
                       "sample_every: 100000\nckpt_every: 100000\n")
    summary = {}
    for frac in [float(f) for f in args.fractions.split(",")]:
        cfg = ExperimentConfig(
            prepared=str(prep), out=str(args.work / f"fraction{frac:g}"), gan_config=str(gan_cfg),
            arms=("real", "real+synthetic"), ratios=(1.0,), controls=tuple(c for c in args.controls.split(",") if c),
            workers=args.workers, folds=args.folds, seeds=args.seeds, repeats=args.repeats, real_fraction=frac,
            classifier=ClassifierConfig(classifier="small", input_size=64, batch=32,
                                        **({"epochs": args.epochs} if args.epochs else {"steps": args.steps})),
            device=args.device)
        t = time.perf_counter()
        res = run_experiment(cfg)
        wall = time.perf_counter() - t
        summary[frac] = _report(res, frac, wall)
    (args.work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"summary: {args.work / 'summary.json'}")


def _ci(r: dict) -> str:
    return f"{r['value']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"


def _report(res: dict, frac: float, wall: float) -> dict:
    print(f"\n=== real fraction {frac:g}: wall time {wall:.0f}s this invocation "
          f"({res['units_run_this_invocation']} classifier units run) ===")
    out = {"wall_s": wall}
    for label, arm in res["arms"].items():
        test = arm["test_sets"].get("test", {}).get("auc")
        print(f"{label:22s} AUC fold tests {_ci(arm['fold_tests']['auc'])}"
              + (f"   test split {_ci(test)}" if test else "") + f"   classifier time {arm['wall_s']:.0f}s")
        out[label] = {"fold_tests_auc": arm["fold_tests"]["auc"], "test_auc": test, "classifier_s": arm["wall_s"]}
    base = res["arms"]["real"]["wall_s"]
    for label, c in res["comparisons"].items():
        ratio = res["arms"][label]["wall_s"] / base if base else float("nan")
        print(f"{label}: {c['verdict']} -- {c['because']}")
        print(f"{label}: classifier time / real arm time = {ratio:.2f} (same run)")
        out[label]["verdict"] = c["verdict"]
        out[label]["because"] = c["because"]
    return out


if __name__ == "__main__":
    main()
