"""The options of one training run (``xraygan train``) as a dataclass, saved as ``config.yaml``.

Families (see :mod:`xraygan.training.families`) that need options of their own read them from the
``model_options`` dict, parsed by the types their ``Options`` dataclass declares
(:mod:`xraygan.training.family_options`); the resolved values are written back into ``config.yaml``.
:func:`config_from_options` is the one way from command-line, YAML, preset or run-config options to
a validated :class:`TrainConfig`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from xraygan import options as opt
from xraygan.errors import UsageError, XrayganError
from xraygan.training.family_option_sets import FAMILY_OPTIONS
from xraygan.training.family_options import FAMILIES, UNCONDITIONAL_FAMILIES, legacy_options

CONFIG_FORMAT_VERSION = 1
# What unset GAN options resolve to (DCGAN mode seeking when conditional, weight 2 from 64 px and 1
# below: default_mode_seeking; `--diffaug auto` translation
# from 64 px for the DCGAN). An experiment's fingerprint carries it, so fold GANs trained under
# other defaults by an older xraygan are never mixed into one verdict. Change it with such a default.
GAN_DEFAULTS_RULE = "ms2-64-ms1-conditional-dcgan,translation-64-dcgan"


@dataclass
class TrainConfig:
    """Everything that defines a training run. Paths are stored as strings."""

    data: str = ""  # prepared dataset folder
    out: str = ""  # run folder
    model: str = "dcgan"
    size: Optional[int] = None  # None: the prepared size
    conditional: bool = False
    label: Optional[str] = None  # train on this one class only
    split: tuple[str, ...] = ("train",)
    loss: str = "bce"
    smooth: float = 0.9  # one-sided label smoothing of real targets (bce only)
    # optimizer: None = the family's paper default (dcgan: 2e-4, 2e-4, 0.5, 0.999), resolved when training starts
    lr_g: Optional[float] = None
    lr_d: Optional[float] = None
    beta1: Optional[float] = None
    beta2: Optional[float] = None
    batch: int = 64
    latent_dim: int = 128
    width: int = 64  # base number of feature maps
    ema: float = 0.999  # 0 disables the EMA generator
    diffaug: str = "auto"  # auto: translation,cutout below 1000 training images in runs of >= 10,000 steps, else translation from 64 px for the DCGAN, else none (augment.diffaug.auto_policy)
    steps: int = 20000  # total steps the run should reach
    max_time: Optional[float] = None  # seconds for this invocation
    sample_every: int = 500
    ckpt_every: int = 1000
    log_every: int = 10
    ckpt_minutes: float = 10.0  # also refresh latest.pt every this many minutes (0: off)
    tensorboard: bool = False  # mirror metrics and sample grids to RUN/tensorboard/
    keep_ckpts: int = 5  # step-numbered checkpoints kept (0: all); latest.pt is always kept
    eval_every: int = 0  # 0: off; see xraygan.training.loop for the hook
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # CPU threads for torch (0: PyTorch default); 1 is fastest on a busy shared machine
    amp: bool = False  # old spelling of --precision bf16 on CUDA
    precision: str = "auto"  # auto | fp32 | bf16 (autocast); auto: bf16 where fast (CUDA, CPU with avx512_bf16/AMX) and the family gains
    channels_last: Optional[bool] = None  # NHWC weights and activations; None: the family's measured choice (benchmarks/train_speed.py)
    force: bool = False
    max_rollbacks: int = 3  # on divergence: roll back to the last finite checkpoint with halved learning rates, this many times
    model_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        """Raise :class:`UsageError` naming the option for an invalid or inconsistent value; returns self.

        The one place that checks training options, whatever their origin (command line, ``--config``,
        preset, library call, ``experiment --gan-config``); numbers are converted to their types here.
        """
        if self.conditional and self.label is not None:
            raise UsageError("--conditional and --label exclude each other: a conditional model learns every class; --label trains one class only")
        if self.loss not in ("bce", "hinge"):
            raise UsageError(f"--loss {self.loss}: choose bce or hinge")
        c = opt.check
        self.smooth = c("--smooth", self.smooth, opt.real(0.0, 1.0, lo_open=True, what="1 disables smoothing"))
        self.ema = c("--ema", self.ema, opt.real(0.0, 1.0, hi_open=True, what="0 disables the EMA generator"))
        self.lr_g = c("--lr-g", self.lr_g, opt.positive_float, optional=True)
        self.lr_d = c("--lr-d", self.lr_d, opt.positive_float, optional=True)
        self.beta1 = c("--beta1", self.beta1, opt.beta, optional=True)
        self.beta2 = c("--beta2", self.beta2, opt.beta, optional=True)
        for name in ("batch", "steps", "sample_every", "ckpt_every", "log_every", "latent_dim", "width"):
            setattr(self, name, c(f"--{name.replace('_', '-')}", getattr(self, name), opt.positive_int))
        for name, what in (("eval_every", "0 = off"), ("keep_ckpts", "0 keeps all"), ("threads", "0 = PyTorch's default"),
                           ("max_rollbacks", "0 stops at the first divergence")):
            setattr(self, name, c(f"--{name.replace('_', '-')}", getattr(self, name), opt.integer(0, what=what)))
        self.seed = c("--seed", self.seed, opt.seed)
        if self.precision not in ("auto", "fp32", "bf16"):
            raise UsageError(f"--precision {self.precision}: choose auto, fp32 or bf16")
        self.max_time = c("--max-time", self.max_time, opt.real(0.0, lo_open=True, what="seconds"), optional=True)
        self.ckpt_minutes = c("--ckpt-minutes", self.ckpt_minutes, opt.real(0.0, what="0 = off"))
        self.size = c("--size", self.size, opt.positive_int, optional=True)
        _family(self.model)
        if self.size is not None:
            check_size(self.model, self.size)
        if self.conditional and self.model in UNCONDITIONAL_FAMILIES:
            raise UsageError(f"--model {self.model} is unconditional; drop --conditional (or train one class with --label L)")
        if self.diffaug != "auto":
            from xraygan.augment.diffaug import parse_policy

            try:
                parse_policy(self.diffaug)
            except XrayganError as e:
                raise UsageError(str(e)) from None
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-safe dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["split"] = list(self.split)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys (from a newer version) are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(d) - names - {"format_version"}))
        if unknown:
            raise UsageError(f"config: unknown option(s) {', '.join(unknown)}")
        kw = {k: v for k, v in d.items() if k in names}
        if "split" in kw:
            kw["split"] = tuple([kw["split"]] if isinstance(kw["split"], str) else kw["split"])
        kw.setdefault("model_options", {})
        kw["model_options"] = dict(kw["model_options"] or {})
        return cls(**kw)

    @property
    def out_path(self) -> Path:
        return Path(self.out)


def _family(model: str) -> str:
    """``model`` if it is a registered family (an unknown name is a :class:`UsageError`)."""
    if model not in FAMILIES:
        raise UsageError(f"--model {model}: unknown model; choose from {', '.join(FAMILIES)}")
    return model


# keys of a command line / YAML config that are not TrainConfig fields: options of the command itself
_COMMAND_KEYS = {"resume", "help_options", "config", "print_config", "preset", "command", "_run", "_check", "verbose", "quiet"}


def config_from_options(options: Mapping[str, Any]) -> TrainConfig:
    """The validated :class:`TrainConfig` of ``xraygan train`` options, from any source.

    ``options`` may be the parsed command line (``vars(args)``), a YAML config or preset, the
    ``options`` of a run's ``config.yaml`` or a whole run ``config.yaml`` (format ``xraygan-run``).
    Family options may be given as ``model_options`` (a mapping) and/or ``model_option`` (a mapping,
    ``(KEY, VALUE)`` pairs or ``KEY=VALUE`` strings); ``split`` as ``"train,val"`` or a list. Unset
    values (None) keep their defaults. Raises :class:`UsageError` naming the option.
    """
    d = dict(options)
    if d.get("format") == "xraygan-run":
        d = {**options_from_run_config(d), "force": False}  # the original run's --force is not carried over
    d.pop("format_version", None)
    fam = dict(opt.model_options(d.pop("model_options", None) or {}))
    fam.update(opt.model_options(d.pop("model_option", None) or []))
    for key in _COMMAND_KEYS:
        d.pop(key, None)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(str(k) for k in set(d) - names)
    if unknown:
        raise UsageError(f"unknown training option(s) {', '.join(unknown)}")
    kw = {k: v for k, v in d.items() if v is not None}
    if "split" in kw:
        value = kw["split"]
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        kw["split"] = tuple(str(s).strip() for s in items if str(s).strip())
    for key in ("data", "out"):
        if key in kw:
            kw[key] = str(kw[key])
    return TrainConfig(**kw, model_options=fam).validate()


def options_from_run_config(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The training options recorded in a run's ``config.yaml`` (its ``options``), upgraded to today's meaning.

    Run configs of format version 1 wrote the DCGAN optimizer defaults for every family although
    StyleGAN2 and PGGAN trained with their paper values; those are read back as unset. Resolved
    model options that predate an option declared with a ``legacy`` value (e.g. the DCGAN's
    ``mode_seeking``) get that value: the run trained without the option and resumes so.
    """
    if not isinstance(doc.get("options"), dict):
        raise UsageError("run config: no 'options' mapping")
    out = dict(doc["options"])
    mo = out.get("model_options")
    if isinstance(mo, dict) and mo and out.get("model") in FAMILY_OPTIONS:  # resolved options of a trained run
        out["model_options"] = legacy_options(FAMILY_OPTIONS[out["model"]], mo)
    if int(doc.get("format_version") or 1) < 2 and out.get("model") not in ("dcgan", "dcgan-tutorial", None):
        for key, old_default in (("lr_g", 2e-4), ("lr_d", 2e-4), ("beta1", 0.5), ("beta2", 0.999)):
            if out.get(key) == old_default:
                out[key] = None
    return out


def supported_sizes(model: str) -> tuple[int, ...]:
    """Training sizes of ``--model``: DCGAN's list, else powers of two 4..1024."""
    _family(model)
    sizes = None
    if model in ("dcgan", "dcgan-tutorial"):
        from xraygan.models.dcgan import SIZES as sizes
    return tuple(sizes or (2**k for k in range(2, 11)))


def check_size(model: str, size: int) -> int:
    """``size`` if ``--model`` trains at it, else :class:`UsageError` advising the nearest sizes it supports."""
    sizes = supported_sizes(model)
    if size in sizes:
        return size
    near = " or ".join(str(s) for s in opt.powers_of_two_near(size, sizes))
    pow2 = size > 0 and size & (size - 1) == 0
    why = "" if pow2 else "GANs need a power of two; "
    raise UsageError(f"--size {size}: {why}--model {model} trains at {', '.join(map(str, sizes))} px; use --size {near}")


# --- machine-fitted defaults of `xraygan train` (issue 12) ------------------------------------------
# On a CPU the TrainConfig defaults (64 px, width 64, batch 64, 20,000 steps) reach a few hundred steps
# in 10 minutes and give grey templates. This configuration was chosen by per-class recall per CPU-minute
# (benchmarks/quality_per_minute.py, docs/benchmarks.md): at equal CPU time, more steps of a narrower
# DCGAN beat fewer steps of the wide one. The budget is wall time (--max-time), the step count a cap.
CPU_AUTO: dict[str, Any] = {"size": 32, "width": 32, "batch": 32, "steps": 5000, "max_time": 600.0}
CPU_AUTO_FAMILIES = frozenset({"dcgan"})  # families whose CPU configuration was measured
_AUTO_FLAGS = {"size": "--size", "width": "--width", "batch": "--batch", "steps": "--steps", "max_time": "--max-time"}


def auto_settings(device_type: str, prepared_size: Optional[int], cfg: "TrainConfig", given: set[str]) -> tuple[dict[str, Any], str]:
    """The machine-fitted defaults of ``xraygan train`` for ``cfg`` and the line that announces them.

    ``device_type`` is ``cpu`` or ``cuda``; ``prepared_size`` the prepared dataset's size (never
    exceeded); ``given`` the TrainConfig field names the user set (command line, ``--config`` or
    preset): those always win and are left out of the returned dict. On CUDA (and for families whose
    CPU configuration was not measured) the TrainConfig defaults apply and the dict is empty.
    """
    chosen: dict[str, Any] = {}
    if device_type == "cpu" and cfg.model in CPU_AUTO_FAMILIES:
        chosen = {k: v for k, v in CPU_AUTO.items() if k not in given}
        if "size" in chosen and prepared_size is not None and prepared_size < chosen["size"]:
            chosen.pop("size")  # never above the prepared size: train at the prepared size
        if "steps" in given:
            chosen.pop("max_time", None)  # a step count the user asked for is not cut by a time budget
    v = {k: chosen.get(k, getattr(cfg, k)) for k in CPU_AUTO}
    size = v["size"] or prepared_size or "the prepared size"
    budget = f"up to {v['steps']} steps" + (f" or {v['max_time']:g} s" if v["max_time"] else "")
    what = f"{size} px, width {v['width']}, batch {v['batch']}, {budget}"
    kept = sorted(_AUTO_FLAGS[k] for k in given if k in _AUTO_FLAGS)
    yours = f"; yours: {', '.join(kept)}" if kept else ""
    override = "override with --size/--width/--batch/--steps/--max-time"
    if chosen or (device_type == "cpu" and cfg.model in CPU_AUTO_FAMILIES):
        return chosen, (f"CPU detected: {what} (chosen to give diverse images of every class in about 10 minutes on "
                        f"2 cores{yours}); {override}")
    kind = "CPU" if device_type == "cpu" else "CUDA"
    return chosen, f"{kind} detected: --model {cfg.model} at its defaults: {what}{yours}; {override}"


def default_conditional(model: str, n_classes: int, given: Optional[bool], label: Optional[str]) -> bool:
    """Whether ``xraygan train`` trains one conditional model: as given (``--conditional`` /
    ``--unconditional``), else when the data has several classes, no ``--label`` and the family can."""
    if given is not None:
        return bool(given)
    return label is None and n_classes > 1 and model not in UNCONDITIONAL_FAMILIES
