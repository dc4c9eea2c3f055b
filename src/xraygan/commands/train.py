"""Train a GAN on a prepared dataset and write a run folder.

The run folder holds config.yaml, checkpoints/ (latest.pt and step-numbered ones), metrics.jsonl,
samples/ (a fixed-latent grid per --sample-every steps, one row per class) and loss.png.
--steps is the total the run should reach; --max-time bounds this invocation. Continue a stopped
run with `xraygan train --resume RUN [--steps N]`.

Examples:
  xraygan train data/prepared --out runs/cxr --model dcgan --conditional --max-time 1200
  xraygan train data/prepared --out runs/normal --label NORMAL --steps 5000
  xraygan train --resume runs/cxr --steps 40000
"""
from __future__ import annotations

import argparse

from xraygan.options import arg, beta, nonneg_float, nonneg_int, positive_float, positive_int, real, seed
from xraygan.options import model_option as _model_option
from xraygan.options import model_options as _model_options
from xraygan.training.config import TrainConfig
from xraygan.training.family_options import FAMILIES, check_model

_D = TrainConfig()  # the defaults shown by --help are TrainConfig's, stated once
HELP = "train a GAN (DCGAN, ...) on a prepared dataset"
PRESETS = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `xraygan train`."""
    p.add_argument("data", nargs="?", help="prepared dataset folder (from `xraygan prepare`); not needed with --resume")
    p.add_argument("--out", help="run folder to create (refused if it exists, unless --force)")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from checkpoints/latest.pt (its saved options apply; --steps/--max-time/--device may change)")
    p.add_argument("--model", default=_D.model, type=arg(check_model),
                   help=f"GAN family: {', '.join(FAMILIES)} (dcgan-tutorial: the PyTorch tutorial's networks); list a family's options with --help-options")
    p.add_argument("--help-options", action="store_true", help="list the --model-option keys of --model (type, range, default, help) and exit")
    p.add_argument("--size", type=arg(positive_int), help="training size in pixels (power of two, at most the prepared size); default: the prepared size")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--conditional", action="store_true", help="one model for all classes (label embedding in G, projection D)")
    g.add_argument("--label", help="train on this one class only (an unconditional model per class)")
    p.add_argument("--split", default=",".join(_D.split), help="split(s) to train on, comma-separated (train, val, test)")
    p.add_argument("--loss", choices=["bce", "hinge"], default=_D.loss, help="non-saturating BCE (with --smooth) or hinge loss")
    p.add_argument("--smooth", type=arg(real(0.0, 1.0, lo_open=True)), default=_D.smooth, help="one-sided label smoothing: target for real images in the BCE loss (1 = off)")
    paper = "default: the family's (dcgan 2e-4; stylegan2 0.0025; pggan 0.001)"
    p.add_argument("--lr-g", type=arg(positive_float), help=f"generator learning rate (Adam); {paper}")
    p.add_argument("--lr-d", type=arg(positive_float), help=f"discriminator learning rate (Adam); {paper}")
    p.add_argument("--beta1", type=arg(beta), help="Adam beta1, in [0, 1); default: the family's (dcgan 0.5; stylegan2, pggan 0)")
    p.add_argument("--beta2", type=arg(beta), help="Adam beta2, in [0, 1); default: the family's (dcgan 0.999; stylegan2, pggan 0.99)")
    p.add_argument("--batch", type=arg(positive_int), default=_D.batch, help="batch size")
    p.add_argument("--latent-dim", type=arg(positive_int), default=_D.latent_dim, help="latent size (dcgan-tutorial always uses 100)")
    p.add_argument("--width", type=arg(positive_int), default=_D.width, help="base number of feature maps (channels at the highest resolution)")
    p.add_argument("--ema", type=arg(beta), default=_D.ema, help="decay of the EMA generator used for samples and generation (0 = off)")
    p.add_argument("--diffaug", default=_D.diffaug, help="DiffAugment ops, comma-separated from translation,cutout,color (brightness+contrast); 'none' disables; auto = translation,cutout below 1000 training images (color measurably cut the variety of generated images in short runs)")
    p.add_argument("--steps", type=arg(positive_int), help=f"total number of training steps the run should reach (default {_D.steps}; with --resume: the run's saved value)")
    p.add_argument("--max-time", type=arg(positive_float), help="stop this invocation after this many seconds (a checkpoint is written)")
    p.add_argument("--sample-every", type=arg(positive_int), default=_D.sample_every, help="write a sample grid every N steps")
    p.add_argument("--ckpt-every", type=arg(positive_int), default=_D.ckpt_every, help="write checkpoints every N steps")
    p.add_argument("--ckpt-minutes", type=arg(nonneg_float), default=_D.ckpt_minutes, help="also refresh checkpoints/latest.pt every this many minutes (0 = off)")
    p.add_argument("--keep-ckpts", type=arg(nonneg_int), default=_D.keep_ckpts, help="step-numbered checkpoints to keep (0 = all)")
    p.add_argument("--log-every", type=arg(positive_int), default=_D.log_every, help="append to metrics.jsonl every N steps")
    p.add_argument("--eval-every", type=arg(nonneg_int), default=_D.eval_every, help="evaluate the generator every N steps and keep checkpoints/best.pt (0 = off)")
    p.add_argument("--max-rollbacks", type=arg(nonneg_int),
                   help="when training diverges (a non-finite loss or weight, or |loss| > 1e6 for 50 steps in a row), roll back to the "
                        "last finite checkpoint with halved learning rates at most this many times, then stop with an error (0 = stop at once); "
                        f"checkpoints/latest.pt is never overwritten with non-finite weights (default {_D.max_rollbacks}; with --resume: the run's saved value)")
    p.add_argument("--tensorboard", action="store_true", help="mirror metrics and sample grids to RUN/tensorboard/ (needs the tensorboard extra)")
    p.add_argument("--model-option", action="append", type=_model_option, default=[], metavar="KEY=VALUE", help="an option of the chosen --model family (repeatable)")
    g = p.add_argument_group("StyleGAN2 / PGGAN options (shortcuts for --model-option KEY=VALUE)")
    for flag, typ, text in _FAMILY_FLAGS:
        g.add_argument(flag, type=typ, default=None, help=text)
    p.add_argument("--seed", type=arg(seed), default=_D.seed, help="random seed (data order, latents, augmentation), 0 to 2**32-1")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=arg(nonneg_int), default=_D.threads, help="CPU threads for PyTorch (0 = its default, all cores); 1 is fastest when other jobs load the machine")
    p.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 autocast) on CUDA")
    p.add_argument("--force", action="store_true", help="replace an existing run folder")


def run(args: argparse.Namespace) -> int:
    """Build a TrainConfig from the options, validate it (exit 2 on a bad value) and call xraygan.training.loop.train."""
    from xraygan.errors import UsageError
    from xraygan.training.loop import resume_config
    from xraygan.workflow import train

    if args.help_options:
        from xraygan.training.families import get_family
        from xraygan.training.family_options import describe_options

        print(describe_options(get_family(args.model).Options, args.model))
        return 0
    if args.resume:
        cfg = resume_config(args.resume, steps=args.steps, max_time=args.max_time, device=args.device, threads=args.threads or None,
                            max_rollbacks=args.max_rollbacks)
        out = train(cfg, resume=True)
    else:
        if not args.data or not args.out:
            raise UsageError("give a prepared dataset and --out RUN (or --resume RUN)")
        cfg = _config(args)  # every value checked before any input is read
        out = train(cfg)
    print(f"run: {out}")
    print(f"  samples: {out / 'samples'}   checkpoint: {out / 'checkpoints' / 'latest.pt'}")
    print(f"  generate images: xraygan generate {out} --n 500 --out SYNTHETIC_DIR")
    return 0


def _on_off(text: str) -> bool:
    if str(text).lower() in ("1", "true", "on", "yes"):
        return True
    if str(text).lower() in ("0", "false", "off", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")


# (flag, type, help): each sets the model option named like the flag (stylegan2 and pggan families)
_FAMILY_FLAGS = [
    ("--r1-gamma", arg(nonneg_float), "StyleGAN2: R1 weight (default: the paper's heuristic 0.0002 * size^2 / batch)"),
    ("--ada", _on_off, "StyleGAN2: adaptive discriminator augmentation on|off (default on)"),
    ("--ada-target", arg(real(0.0, 1.0)), "StyleGAN2: ADA target of r_t = E[sign(D(real))] (default 0.6)"),
    ("--pl-weight", arg(nonneg_float), "StyleGAN2: path-length regularisation weight (default 0 = off; paper 2)"),
    ("--phase-kimg", arg(positive_float), "PGGAN: thousand images per fade-in and per stabilisation phase (default 20)"),
    ("--feature-matching", arg(nonneg_float), "all models: weight of the feature-matching loss on D's features (default 0 = off)"),
    ("--perceptual", arg(nonneg_float), "all models: weight of the VGG16 feature-statistics loss (needs --vgg-weights)"),
    ("--vgg-weights", str, "all models: local torchvision VGG16 state dict for --perceptual"),
]


def check(args: argparse.Namespace) -> None:
    """Check the options without running (for --print-config): a bad value is a UsageError (exit 2)."""
    if not args.resume and not args.help_options:
        _config(args)


def _config(args: argparse.Namespace):
    """The validated TrainConfig of a new run, its family options parsed by their declared types."""
    from xraygan.training.config import config_from_options
    from xraygan.training.families import check_model_options

    opts = {k: v for k, v in vars(args).items() if k not in _FLAG_DESTS}
    opts["model_option"] = _family_options(args)
    cfg = config_from_options(opts)
    check_model_options(cfg)
    return cfg


_FLAG_DESTS = {flag.lstrip("-").replace("-", "_") for flag, _, _ in _FAMILY_FLAGS}


def _family_options(args: argparse.Namespace) -> dict:
    """``--model-option`` pairs plus the shortcut flags that were given (the flags win)."""
    opts = _model_options(args.model_option)
    for flag, _, _ in _FAMILY_FLAGS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            opts[flag.lstrip("-").replace("-", "_")] = value
    return opts
