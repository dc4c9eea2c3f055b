"""The options of one training run (``xraygan train``) as a dataclass, saved as ``config.yaml``.

Families (see :mod:`xraygan.training.families`) that need options of their own read them from the
free-form ``model_options`` dict, validated against the family's ``Options`` dataclass; the
resolved values are written back into ``config.yaml``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from xraygan import options as opt
from xraygan.errors import UsageError, XrayganError

CONFIG_FORMAT_VERSION = 1


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
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch: int = 64
    latent_dim: int = 128
    width: int = 64  # base number of feature maps
    ema: float = 0.999  # 0 disables the EMA generator
    diffaug: str = "auto"  # auto: translation,cutout below 1000 training images, else none
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
    amp: bool = False
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
        self.lr_g = c("--lr-g", self.lr_g, opt.positive_float)
        self.lr_d = c("--lr-d", self.lr_d, opt.positive_float)
        self.beta1 = c("--beta1", self.beta1, opt.beta)
        self.beta2 = c("--beta2", self.beta2, opt.beta)
        for name in ("batch", "steps", "sample_every", "ckpt_every", "log_every", "latent_dim", "width"):
            setattr(self, name, c(f"--{name.replace('_', '-')}", getattr(self, name), opt.positive_int))
        for name, what in (("eval_every", "0 = off"), ("keep_ckpts", "0 keeps all"), ("threads", "0 = PyTorch's default"),
                           ("max_rollbacks", "0 stops at the first divergence")):
            setattr(self, name, c(f"--{name.replace('_', '-')}", getattr(self, name), opt.integer(0, what=what)))
        self.seed = c("--seed", self.seed, opt.seed)
        self.max_time = c("--max-time", self.max_time, opt.real(0.0, lo_open=True, what="seconds"), optional=True)
        self.ckpt_minutes = c("--ckpt-minutes", self.ckpt_minutes, opt.real(0.0, what="0 = off"))
        self.size = c("--size", self.size, opt.positive_int, optional=True)
        family = _family(self.model)
        if self.size is not None:
            check_size(self.model, self.size)
        if self.conditional and not getattr(family, "supports_conditional", True):
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


def parse_options(options_cls: type, given: dict[str, Any], model: str) -> Any:
    """Build a family's ``Options`` dataclass from ``model_options``; unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(given) - names)
    if unknown:
        known = ", ".join(sorted(names)) or "none"
        raise UsageError(f"model option(s) {', '.join(unknown)} are not known to --model {model}; its options are: {known}")
    return options_cls(**given)


def _family(model: str) -> type:
    """The family class of ``--model`` (an unknown name is a :class:`UsageError`)."""
    from xraygan.training.families import FAMILIES, get_family

    if model not in FAMILIES:
        raise UsageError(f"--model {model}: unknown model; choose from {', '.join(FAMILIES)}")
    return get_family(model)


def supported_sizes(model: str) -> tuple[int, ...]:
    """Training sizes of ``--model``: the family's ``sizes`` if it declares them, else powers of two 4..1024."""
    sizes = getattr(_family(model), "sizes", None)
    if sizes is None and model in ("dcgan", "dcgan-tutorial"):
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
