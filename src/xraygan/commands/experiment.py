"""Test honestly whether synthetic images help a classifier.

Patient-grouped stratified k-fold over PREPARED's train and val patients (--repeats fresh
partitions) x several seeds; arms
`real`, `real+classic` (rotation, shift, contrast; no flip), `real+synthetic` at each ratio and
`synthetic` only (train on synthetic, test on real). One GAN per fold, trained on that fold's
training patients only (refused if it saw any test patient). Every metric gets a patient-level
bootstrap 95% CI; every arm is compared with `real` by the corrected repeated k-fold t-test
(Nadeau & Bengio 2003; seeds averaged within a fold), Holm-adjusted across the experiment's
comparisons, and a patient-clustered DeLong test; the verdict is improves, harms, equivalent
(within --margin) or inconclusive. Re-running with the same --out skips finished units.

--gan-config oracle (real held-back training images; needs --real-fraction < 1) and noise are the
positive and negative controls of the protocol.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from xraygan.options import arg, fraction, integer, nonneg_float, positive_float, positive_int, seed

HELP = "does synthetic data help a classifier? folds x seeds, CIs, paired tests, verdicts"


def _floats(text: "str | list") -> list[float]:
    """``"0.5,1,2"`` (command line) or a YAML list -> positive finite numbers."""
    items = text if isinstance(text, (list, tuple)) else [t for t in str(text).split(",") if t.strip()]
    try:
        return [positive_float(t) for t in items]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text}: expected comma-separated positive numbers ({e})") from None


def _arms(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prepared", type=Path, metavar="PREPARED", help="prepared dataset (from `xraygan prepare`); folds use its train+val patients")
    p.add_argument("--gan-config", required=True, metavar="FILE_OR_PRESET",
                   help="YAML file of `xraygan train` options or a preset name (one GAN per fold; per class unless conditional); "
                        "or the controls `oracle` / `noise`")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="experiment folder; re-running with the same DIR resumes")
    p.add_argument("--test", type=Path, metavar="PREPARED_OR_DIR",
                   help="an extra held-out set, used only for evaluation: a prepared dataset, or a folder/CSV that `xraygan prepare` reads (prepared at PREPARED's size into DIR/test-prepared); refused if it shares a patient id or an image's sha256 with PREPARED's train+val")
    p.add_argument("--classifier", default="small", choices=["small", "resnet18", "resnet50", "densenet121"], help="classifier (one input channel)")
    p.add_argument("--imagenet-weights", metavar="FILE", help="local torchvision state dict of the classifier's ImageNet weights (first conv summed to one channel)")
    p.add_argument("--input-size", type=arg(positive_int), default=64, help="classifier input size in pixels")
    p.add_argument("--arms", type=_arms, default="real,real+classic,real+synthetic,synthetic",
                   help="comma-separated subset of real, real+classic, real+synthetic, synthetic (real always runs)")
    p.add_argument("--ratios", type=_floats, default="0.5,1,2", help="synthetic images per real image, per class, for real+synthetic")
    p.add_argument("--balance", action="store_true", help="add synthetic images only to minority classes (at most up to the majority count)")
    p.add_argument("--folds", type=arg(integer(2, what="folds split the patients in two or more parts")), default=5, help="patient-grouped stratified folds")
    p.add_argument("--seeds", type=arg(positive_int), default=3, help="classifier seeds per fold (averaged within a fold before testing)")
    p.add_argument("--repeats", type=arg(positive_int), default=1,
                   help="repetitions of the k-fold split, each a fresh seeded patient-grouped partition (more repeats, more power)")
    p.add_argument("--margin", type=arg(positive_float), default=0.01,
                   help="equivalence margin in AUC: 'equivalent' when the 90%% CI of the difference lies within +-MARGIN (TOST)")
    p.add_argument("--real-fraction", type=arg(fraction), default=1.0, help="fraction of each fold's training patients kept (low-data regime, e.g. 0.1)")
    p.add_argument("--epochs", type=arg(positive_int), default=10, help="classifier training length in epochs of the fold's real training images; "
                   "every arm takes that same number of optimiser steps, so arms differ only in their data")
    p.add_argument("--steps", type=arg(positive_int), help="classifier optimiser steps in every arm (replaces --epochs)")
    p.add_argument("--batch", type=arg(positive_int), default=32, help="classifier batch size")
    p.add_argument("--lr", type=arg(positive_float), default=1e-3, help="classifier Adam learning rate")
    p.add_argument("--gan-steps", type=arg(positive_int), help="override the GAN config's step budget")
    p.add_argument("--fold-seed", type=arg(seed), default=0, help="seed of the fold assignment and of the real-fraction subsample")
    p.add_argument("--bootstrap", type=arg(positive_int), default=1000, help="bootstrap resamples per CI")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def run(args: argparse.Namespace) -> int:
    from xraygan.errors import UsageError
    from xraygan.experiments.classifier import ClassifierConfig
    from xraygan.experiments.runner import ExperimentConfig, run_experiment

    arms = args.arms if isinstance(args.arms, list) else _arms(args.arms)
    try:
        ratios = _floats(args.ratios)  # a YAML list from --config is checked here
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"--ratios {e}") from None
    cfg = ExperimentConfig(
        prepared=str(args.prepared), out=str(args.out), gan_config=str(args.gan_config),
        test=str(args.test) if args.test else None, arms=tuple(arms), ratios=tuple(ratios), balance=args.balance,
        folds=args.folds, seeds=args.seeds, repeats=args.repeats, margin=args.margin, real_fraction=args.real_fraction, fold_seed=args.fold_seed,
        classifier=ClassifierConfig(classifier=args.classifier, input_size=args.input_size, epochs=args.epochs,
                                    steps=args.steps, batch=args.batch, lr=args.lr, imagenet_weights=args.imagenet_weights),
        gan_steps=args.gan_steps, device=args.device, n_boot=args.bootstrap,
    )
    results = run_experiment(cfg)
    print(results["verdicts_text"], end="")
    print(f"results: {Path(args.out) / 'results.json'} (ROC curves: roc.png, CIs: ci.png)")
    return 0
