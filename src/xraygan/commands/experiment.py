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

The controls run as arms of the same experiment with --controls oracle,noise (the oracle, real
held-back training images, where the real fraction is below 1; an undetected oracle makes every
synthetic verdict inconclusive); --gan-config oracle / noise still uses one as the synthetic source.
--real-fraction 0.02,0.1,1 runs a learning curve on nested subsamples of the same folds;
--class-fraction LABEL=F makes a class scarce; more than two classes are tested on macro-AUC.
--workers N runs the units (and fold GANs) in N local processes, --ray [ADDRESS] as tasks on a Ray
cluster (extra `ray`); the results are identical to a sequential run, which either can resume.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from xraygan.options import arg, fraction, integer, positive_float, positive_int, seed

MIN_STEPS = 200  # the default of --min-steps (xraygan.experiments.config.MIN_STEPS; a test keeps them equal)

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


def _ray_address(value: "str | bool") -> str:
    """``--ray`` (no value: 'local') or a cluster address such as HEAD:6379 or auto."""
    if value is True or str(value).strip() in ("", "local"):
        return "local"
    text = str(value).strip()
    if any(ch.isspace() for ch in text):
        raise ValueError("a Ray cluster address has no spaces, e.g. 10.0.0.5:6379 or auto")
    return text


def _fractions(text: "str | float | list") -> list[float]:
    """``--real-fraction``: one number or a comma-separated list, each in (0, 1]."""
    items = text if isinstance(text, (list, tuple)) else [t for t in str(text).split(",") if t.strip()]
    try:
        vals = [fraction(t) for t in items]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text}: expected fractions in (0, 1], comma-separated ({e})") from None
    if not vals:
        raise argparse.ArgumentTypeError(f"{text}: expected at least one fraction")
    return vals


def _real_fraction(value) -> "float | tuple[float, ...]":
    """One fraction as a number (older experiment folders resume), several as a tuple."""
    from xraygan.errors import UsageError

    try:
        vals = _fractions(value)
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"--real-fraction {e}") from None
    return vals[0] if len(set(vals)) == 1 else tuple(vals)


def _class_fraction(text: str) -> tuple[str, float]:
    """``LABEL=F`` of ``--class-fraction`` -> (label, F) with F in (0, 1]."""
    from xraygan.errors import UsageError

    label, sep, value = str(text).rpartition("=")
    try:
        f = float(value)
    except ValueError:
        f = float("nan")
    if not sep or not label or not 0 < f <= 1:
        raise UsageError(f"--class-fraction {text}: expected LABEL=F with F in (0, 1], e.g. PNEUMONIA=0.05")
    return label, f


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
                   help="comma-separated subset of real, real+classic, real+synthetic, real+classic+synthetic, synthetic (real always runs)")
    p.add_argument("--controls", type=_arms, default="",
                   help="control arms on the same folds, comma-separated: oracle (held-back real images; where the real fraction "
                        "is below 1), noise; with the synthetic counts of real+synthetic; an undetected oracle makes every "
                        "synthetic verdict inconclusive")
    p.add_argument("--ratios", type=_floats, default="0.5,1,2", help="synthetic images per real image, per class, for real+synthetic")
    p.add_argument("--balance", action="store_true", help="add synthetic images only to minority classes (at most up to the majority count)")
    p.add_argument("--folds", type=arg(integer(2, what="folds split the patients in two or more parts")), default=5, help="patient-grouped stratified folds")
    p.add_argument("--seeds", type=arg(positive_int), default=3, help="classifier seeds per fold (averaged within a fold before testing; with 2 or more the t-test measures the seed noise and leaves it out of the training-set correction)")
    p.add_argument("--repeats", type=arg(positive_int), default=1,
                   help="repetitions of the k-fold split, each a fresh seeded patient-grouped partition (more repeats, more power)")
    p.add_argument("--margin", type=arg(positive_float), default=0.01,
                   help="equivalence margin in AUC: 'equivalent' when the 90%% CI of the difference lies within +-MARGIN (TOST)")
    p.add_argument("--real-fraction", type=_fractions, default="1",
                   help="fraction of each fold's training patients kept (low-data regime, e.g. 0.1); a comma-separated list "
                        "(e.g. 0.02,0.1,0.25,1) runs a learning curve on nested subsamples of the same folds")
    p.add_argument("--class-fraction", action="append", default=[], metavar="LABEL=F",
                   help="repeatable: keep class LABEL at the real fraction x F (a scarce class); the other classes as they are")
    p.add_argument("--min-steps", type=arg(integer(0)), default=MIN_STEPS,
                   help="floor on the classifier's optimiser steps when they come from --epochs (so a small real fraction "
                        "still trains); 0 for none; --steps is taken as given")
    p.add_argument("--epochs", type=arg(positive_int), default=10, help="classifier training length in epochs of the fold's real training images; "
                   "every arm takes that same number of optimiser steps, so arms differ only in their data")
    p.add_argument("--steps", type=arg(positive_int), help="classifier optimiser steps in every arm (replaces --epochs)")
    p.add_argument("--batch", type=arg(positive_int), default=32, help="classifier batch size")
    p.add_argument("--lr", type=arg(positive_float), default=1e-3, help="classifier Adam learning rate")
    p.add_argument("--gan-steps", type=arg(positive_int), help="override the GAN config's step budget")
    p.add_argument("--fold-seed", type=arg(seed), default=0, help="seed of the fold assignment and of the real-fraction subsample")
    p.add_argument("--bootstrap", type=arg(positive_int), default=1000, help="bootstrap resamples per CI")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=arg(positive_int), default=1,
                   help="run independent units (and the fold GANs) in N local processes, one thread each; results are identical to N=1")
    p.add_argument("--ray", nargs="?", const="local", type=arg(_ray_address), metavar="ADDRESS",
                   help="run the units as Ray tasks (extra `ray`): a local cluster without ADDRESS, or an existing one "
                        "(HEAD:6379 or auto); OUT and PREPARED must be at the same path on every node")


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
        controls=tuple(args.controls if isinstance(args.controls, list) else _arms(args.controls)),
        class_fraction=tuple(_class_fraction(t) for t in args.class_fraction), min_steps=args.min_steps,
        prepared=str(args.prepared), out=str(args.out), gan_config=str(args.gan_config),
        test=str(args.test) if args.test else None, arms=tuple(arms), ratios=tuple(ratios), balance=args.balance,
        folds=args.folds, seeds=args.seeds, repeats=args.repeats, margin=args.margin, real_fraction=_real_fraction(args.real_fraction), fold_seed=args.fold_seed,
        classifier=ClassifierConfig(classifier=args.classifier, input_size=args.input_size, epochs=args.epochs,
                                    steps=args.steps, batch=args.batch, lr=args.lr, imagenet_weights=args.imagenet_weights),
        gan_steps=args.gan_steps, device=args.device, n_boot=args.bootstrap,
        workers=args.workers, ray=args.ray,
    )
    results = run_experiment(cfg)
    print(results["verdicts_text"], end="")
    print(f"results: {Path(args.out) / 'results.json'} (charts: ci.png and roc.png, calibration.png or confusion.png; "
          f"`xraygan report {args.out}` for one page)")
    return 0
