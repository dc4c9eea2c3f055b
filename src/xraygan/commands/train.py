"""Train a GAN on a prepared dataset and write a run folder.

The run folder holds config.yaml, checkpoints/ (latest.pt and step-numbered ones), metrics.jsonl,
samples/ (a fixed-latent grid per --sample-every steps, one row per class) and loss.png.
--steps is the total the run should reach; --max-time bounds this invocation. Continue a stopped
run with `xraygan train --resume RUN [--steps N]` (options that define the model or training keep the
run's values: giving other ones is refused). Ctrl-C or SIGTERM writes a checkpoint, then exits 130 / 143.

Without options, a dataset with several classes trains one conditional model (--unconditional opts
out), and on a CPU the size, width, batch and budget are chosen to fit it (a line at start says what).

Examples:
  xraygan train data/prepared --out runs/cxr
  xraygan train data/prepared --out runs/normal --label NORMAL --steps 5000
  xraygan train --resume runs/cxr --steps 40000
"""
from __future__ import annotations

import argparse
import sys

from xraygan.commands import train_shortcuts as shortcuts
from xraygan.commands.train_shortcuts import add_shortcuts
from xraygan.options import arg, beta, nonneg_float, nonneg_int, positive_float, positive_int, real, seed
from xraygan.options import model_option as _model_option
from xraygan.options import model_options as _model_options
from xraygan.training.config import CPU_AUTO, TrainConfig
from xraygan.training.family_options import FAMILIES, check_model

_D = TrainConfig()  # the defaults shown by --help are TrainConfig's, stated once
_A = CPU_AUTO  # ... except where a CPU run chooses its own (auto_settings)
_AUTO_CPU = "on a CPU (--model dcgan)"
HELP = "train a GAN (DCGAN, ...) on a prepared dataset"
PRESETS = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `xraygan train`."""
    p.add_argument("data", nargs="?", help="prepared dataset folder (from `xraygan prepare`); not needed with --resume (there: only the run's own, or its new place after it moved)")
    p.add_argument("--out", help="run folder to create (refused if it exists, unless --force)")
    p.add_argument("--resume", metavar="RUN", help="continue RUN in place from checkpoints/latest.pt with its saved options; --steps, --max-time, --device, --threads and the "
                        "logging/sample/checkpoint/eval intervals may change, options that define the model or training are refused if they differ")
    p.add_argument("--model", default=_D.model, type=arg(check_model),
                   help=f"GAN family: {', '.join(FAMILIES)} (dcgan-tutorial: the PyTorch tutorial's networks); list a family's options with --help-options")
    p.add_argument("--help-options", action="store_true", help="list the --model-option keys of --model (type, range, default, help) and exit")
    p.add_argument("--size", type=arg(positive_int), help=f"training size in pixels (power of two, at most the prepared size); default: {_AUTO_CPU} {_A['size']} px, else the prepared size")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--conditional", action="store_const", const=True, default=None,
                   help="one model for all classes (label embedding in G, projection D); the default when the data has several classes")
    g.add_argument("--unconditional", dest="conditional", action="store_const", const=False,
                   help="one unlabelled model for all classes together (images land in an all/ folder)")
    g.add_argument("--label", help="train on this one class only (an unconditional model per class)")
    p.add_argument("--split", default=",".join(_D.split), help="split(s) to train on, comma-separated (train, val, test)")
    p.add_argument("--loss", choices=["bce", "hinge"], default=_D.loss, help="non-saturating BCE (with --smooth) or hinge loss")
    p.add_argument("--smooth", type=arg(real(0.0, 1.0, lo_open=True)), default=_D.smooth, help="one-sided label smoothing: target for real images in the BCE loss (1 = off)")
    paper = "default: the family's (dcgan 2e-4; stylegan2 0.0025; pggan 0.001)"
    p.add_argument("--lr-g", type=arg(positive_float), help=f"generator learning rate (Adam); {paper}")
    p.add_argument("--lr-d", type=arg(positive_float), help=f"discriminator learning rate (Adam); {paper}")
    p.add_argument("--beta1", type=arg(beta), help="Adam beta1, in [0, 1); default: the family's (dcgan 0.5; stylegan2, pggan 0)")
    p.add_argument("--beta2", type=arg(beta), help="Adam beta2, in [0, 1); default: the family's (dcgan 0.999; stylegan2, pggan 0.99)")
    p.add_argument("--batch", type=arg(positive_int), help=f"batch size; default: {_AUTO_CPU} {_A['batch']}, else {_D.batch}")
    p.add_argument("--latent-dim", type=arg(positive_int), default=_D.latent_dim, help="latent size (dcgan-tutorial always uses 100)")
    p.add_argument("--width", type=arg(positive_int), help=f"base number of feature maps (channels at the highest resolution); default: {_AUTO_CPU} {_A['width']}, else {_D.width}")
    p.add_argument("--ema", type=arg(beta), default=_D.ema, help="decay of the EMA generator used for samples and generation (0 = off)")
    p.add_argument("--diffaug", default=_D.diffaug, help="DiffAugment ops, comma-separated from translation,cutout,color (brightness+contrast); 'none' disables; auto = translation,cutout below 1000 training images in runs of at least 10000 steps, else translation at 64 px and above for --model dcgan (there it lowered FD and copying and raised recall from the first minutes), else none (at 32 px it cost recall in short runs; color cut the variety of generated images)")
    p.add_argument("--steps", type=arg(positive_int), help=f"total number of training steps the run should reach (default: {_AUTO_CPU} {_A['steps']}, else {_D.steps}; with --resume: the run's saved value)")
    p.add_argument("--max-time", type=arg(positive_float), help=f"stop this invocation after this many seconds (a checkpoint is written; default: {_AUTO_CPU} {_A['max_time']:g}, else none)")
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
    add_shortcuts(p)  # --r1-gamma, --ada, ...: typed, ranged and described by the family options' declarations
    p.add_argument("--seed", type=arg(seed), default=_D.seed, help="random seed (data order, latents, augmentation), 0 to 2**32-1")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=arg(nonneg_int), default=_D.threads, help="CPU threads for PyTorch (0 = its default, all cores); 1 is fastest when other jobs load the machine")
    p.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 autocast) on CUDA; the same as --precision bf16 there")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=_D.precision,
                   help="bf16 = bfloat16 autocast; auto (default) = bf16 on CUDA, and on CPUs with avx512_bf16/AMX for families measured to gain from it (pggan), else fp32")
    cl = p.add_mutually_exclusive_group()
    cl.add_argument("--channels-last", action="store_const", const=True, default=None,
                    help="channels-last (NHWC) weights and activations; default: the family's measured choice (on for stylegan2 and pggan)")
    cl.add_argument("--no-channels-last", dest="channels_last", action="store_const", const=False, help="contiguous (NCHW) weights and activations")
    p.add_argument("--force", action="store_true", help="replace an existing run folder")
    _record_given(p)


# --- what the command line gave (for --resume, which refuses changes to what defines the run) -----
_GIVEN: set[str] = set()  # option dests typed in the latest parse of the train parser (see _record_given)
_DECLARED: dict[str, object] = {}  # each option's declared default (before --config/--preset change it)


def _record_given(p: argparse.ArgumentParser) -> None:
    """Make every option of ``p`` note its dest in :data:`_GIVEN` when it appears on the command line
    (argparse calls an option's action only then); values from ``--config``/``--preset`` differ from
    :data:`_DECLARED` instead. Together they tell an option the user gave from its default."""
    global _GIVEN
    given = _GIVEN = set()
    for action in p._actions:
        if action.option_strings and action.dest != "help":
            _DECLARED.setdefault(action.dest, action.default)
            action.__class__ = _recording(type(action))
            action._xraygan_given = given  # type: ignore[attr-defined]


_RECORDING: dict[type, type] = {}


def _recording(cls: type) -> type:
    if cls not in _RECORDING:
        def __call__(self, parser, namespace, values, option_string=None):  # noqa: N807
            self._xraygan_given.add(self.dest)
            return cls.__call__(self, parser, namespace, values, option_string)

        _RECORDING[cls] = type(cls.__name__, (cls,), {"__call__": __call__})
    return _RECORDING[cls]


def given_options(args: argparse.Namespace) -> set[str]:
    """The dests of the options the user set: typed on the command line, or from ``--config``/``--preset``."""
    out = {d for d in _GIVEN if hasattr(args, d)}
    for dest, default in _DECLARED.items():
        if hasattr(args, dest) and getattr(args, dest) != default:
            out.add(dest)
    return out


def run(args: argparse.Namespace) -> int:
    """Build a TrainConfig from the options, validate it (exit 2 on a bad value) and call xraygan.training.loop.train."""
    if args.help_options:  # without torch, like --help
        from xraygan.training.family_option_sets import FAMILY_OPTIONS
        from xraygan.training.family_options import describe_options

        print(describe_options(FAMILY_OPTIONS[args.model], args.model))
        print(shortcuts.for_family(FAMILY_OPTIONS[args.model]))
        return 0
    from xraygan.errors import UsageError
    from xraygan.workflow import train

    from xraygan.training.loop import TrainingInterrupted
    from xraygan.utils.locks import Terminated, refuse_locked_ancestors

    try:
        if args.resume:
            cfg = _resume(args)
            refuse_locked_ancestors(cfg.out, "run folder")
            out = train(cfg, resume=True)
        else:
            if not args.data or not args.out:
                raise UsageError("give a prepared dataset and --out RUN (or --resume RUN)")
            cfg = _config(args)  # every value checked before any input is read
            refuse_locked_ancestors(cfg.out, "run folder")
            print(_machine_defaults(cfg, args), flush=True)
            out = train(cfg)
    except (TrainingInterrupted, Terminated) as e:
        # stopped gracefully (checkpoint written) on Ctrl-C or SIGTERM: say so, and exit 130 / 143
        print(f"xraygan train: {e}", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 143
    print(f"run: {out}")
    print(f"  samples: {out / 'samples'}   checkpoint: {out / 'checkpoints' / 'latest.pt'}")
    print(f"  generate images: xraygan generate {out} --n 500 --out SYNTHETIC_DIR")
    return 0


def _machine_defaults(cfg: TrainConfig, args: argparse.Namespace) -> str:
    """Fill in what the user left unset from the data and the machine (conditional when the data has
    several classes; on a CPU a configuration that fits it) and return the line announcing it."""
    from xraygan.data.dataset import PreparedDataset
    from xraygan.training.config import auto_settings, default_conditional
    from xraygan.utils.runtime import resolve_device

    ds = PreparedDataset.open(cfg.data)
    cfg.conditional = default_conditional(cfg.model, len(ds.classes), args.conditional, cfg.label)
    given = {k for k in ("size", "width", "batch", "steps", "max_time") if getattr(args, k, None) is not None}
    chosen, line = auto_settings(resolve_device(cfg.device).type, ds.size, cfg, given)
    for key, value in chosen.items():
        setattr(cfg, key, value)
    cfg.validate()
    what = "conditional (one model, every class)" if cfg.conditional else f"one class ({cfg.label})" if cfg.label else "unconditional"
    return f"{line}; {what} --model {cfg.model}"


def check(args: argparse.Namespace) -> None:
    """Check the options without running (for --print-config): a bad value is a UsageError (exit 2)."""
    if not args.resume and not args.help_options:
        _config(args)


def _config(args: argparse.Namespace):
    """The validated TrainConfig of a new run, its family options parsed by their declared types."""
    from xraygan.training.config import config_from_options
    from xraygan.training.families import check_model_options

    opts = {k: v for k, v in vars(args).items() if k not in shortcuts.KEYS}
    opts["model_option"] = _family_options(args)
    cfg = config_from_options(opts)
    check_model_options(cfg)
    return cfg


def _family_options(args: argparse.Namespace) -> dict:
    """``--model-option`` pairs plus the shortcut flags that were given (the flags win)."""
    return {**_model_options(args.model_option), **shortcuts.given(args)}


# --- --resume: what may change, and what defines the run ----------------------------------------
# options that may change when a run is continued (applied when given; else the run's saved values)
RESUME_MAY_CHANGE = ("steps", "max_time", "device", "threads", "max_rollbacks", "sample_every", "ckpt_every", "ckpt_minutes",
                     "keep_ckpts", "log_every", "eval_every", "tensorboard", "amp", "precision", "channels_last")
# options that define the model and its training: a value that differs from the run's is refused
RESUME_FIXED = ("model", "size", "conditional", "label", "split", "loss", "smooth", "lr_g", "lr_d", "beta1", "beta2", "batch",
                "latent_dim", "width", "ema", "diffaug", "seed")


def _resume(args: argparse.Namespace):
    """The TrainConfig continuing ``--resume RUN``: the run's saved options plus the runtime options
    given (:data:`RESUME_MAY_CHANGE`). Refused (:class:`UsageError`, nothing written): ``--out`` naming
    another folder, ``--force``, a data folder other than the run's, and any option of
    :data:`RESUME_FIXED` or family option given with a value other than the run's."""
    from xraygan.errors import UsageError
    from xraygan.training.loop import resume_config
    from xraygan.utils.ownership import _resolve

    run = args.resume
    if args.out and _resolve(args.out) != _resolve(run):
        raise UsageError(f"--out {args.out} with --resume {run}: --resume continues {run} in place and writes nowhere else; "
                         f"drop --out to continue {run}, or train a new run into {args.out} with `xraygan train DATA --out {args.out}`")
    if args.force:
        raise UsageError(f"--force with --resume {run}: --force replaces a run, --resume continues it; drop --force to continue "
                         f"{run}, or start it again with `xraygan train DATA --out {run} --force`")
    given = given_options(args)
    cfg = resume_config(run, **{k: getattr(args, k) for k in RESUME_MAY_CHANGE if k in given})
    diffs = [_differs(k, getattr(args, k), getattr(cfg, k)) for k in RESUME_FIXED if k in given]
    diffs += _family_option_diffs(args, cfg)
    diffs = [d for d in diffs if d]
    if diffs:
        raise UsageError(f"--resume {run}: {'; '.join(diffs)}. These options define the model and its training, so a run "
                         f"keeps its own (see {run}/config.yaml) when continued; drop them to continue {run}, or train a new "
                         "run with them: `xraygan train DATA --out NEW_RUN ...`")
    _resume_data(args, cfg)
    return cfg


def _flag(dest: str, value: object) -> str:
    """How option ``dest`` with ``value`` is written on the command line."""
    if dest == "conditional":
        return "--conditional" if value else "--unconditional"
    if dest == "label" and value is None:
        return "no --label"
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return f"--{dest.replace('_', '-')} {value}"


def _differs(dest: str, value: object, recorded: object) -> str | None:
    """A line naming option ``dest``, the value given and the run's, when they differ; else None."""
    import math

    if dest == "split":
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        value = tuple(s.strip() for s in items if str(s).strip())
        recorded = tuple(recorded or ())
        same = value == recorded
    elif dest == "diffaug":
        from xraygan.augment.diffaug import parse_policy

        # auto resolved when the run started (config.yaml holds the policy it chose): continuing keeps it
        same = str(value).strip() == "auto" or parse_policy(str(value)) == parse_policy(str(recorded))
    elif isinstance(value, float) or isinstance(recorded, float):
        same = (value is None) == (recorded is None) and (value is None or math.isclose(float(value), float(recorded), rel_tol=1e-9))
    else:
        same = value == recorded
    if same:
        return None
    return f"{_flag(dest, value)} differs from the run's {_flag(dest, recorded)}"


def _family_option_diffs(args: argparse.Namespace, cfg) -> list[str]:
    """Family options given (``--model-option``, shortcut flags) whose value differs from the run's
    resolved one; checked against the run's ``--model`` (an option it lacks is a UsageError)."""
    import dataclasses
    import math

    from xraygan.training.family_option_sets import FAMILY_OPTIONS
    from xraygan.training.family_options import parse_options, parse_value

    ns = argparse.Namespace(**{**vars(args), "model": cfg.model})
    given = _family_options(ns)
    if not given:
        return []
    parse_options(FAMILY_OPTIONS[cfg.model], given, cfg.model)  # unknown keys and bad values: a clear error
    fields = {f.name: f for f in dataclasses.fields(FAMILY_OPTIONS[cfg.model])}
    out = []
    for key, raw in given.items():
        value = parse_value(fields[key], raw)
        if value is None or value == "auto":
            continue  # "resolve as usual": the run's value was resolved so when it started
        recorded = cfg.model_options.get(key, fields[key].default)
        try:
            recorded = parse_value(fields[key], recorded)
        except ValueError:
            pass
        if isinstance(value, float) and isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
            same = math.isclose(value, float(recorded), rel_tol=1e-9)
        else:
            same = value == recorded
        if not same:
            out.append(f"--model-option {key}={raw} differs from the run's {key}={recorded}")
    return out


def _resume_data(args: argparse.Namespace, cfg) -> None:
    """A DATA argument given with ``--resume``: the run's own data folder is fine; another one is
    refused while the run's is still there, and taken as its new place when it is gone (training
    then checks that it holds the run's classes)."""
    import logging
    from pathlib import Path

    from xraygan.errors import UsageError, XrayganError
    from xraygan.utils.ownership import _resolve

    recorded = Path(cfg.data) if cfg.data else None
    there = recorded is not None and (recorded / "dataset.json").is_file()
    if args.data is None:
        if not there:
            raise XrayganError(f"--resume {args.resume}: its prepared data {recorded} is gone; if it moved, give its new "
                               f"place: `xraygan train NEW_PLACE --resume {args.resume}` (it must hold the run's classes)")
        return
    if recorded is not None and _resolve(args.data) == _resolve(recorded):
        return
    if there:
        raise UsageError(f"{args.data} with --resume {args.resume}: the run trains on {recorded} (its config.yaml) and a "
                         f"continued run keeps its data; drop {args.data} to continue it, or train a new run on {args.data}: "
                         f"`xraygan train {args.data} --out NEW_RUN`")
    logging.getLogger(__name__).warning("%s: its prepared data %s is gone; continuing on %s", args.resume, recorded, args.data)
    cfg.data = str(args.data)
