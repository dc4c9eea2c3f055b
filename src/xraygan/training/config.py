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

from xraygan.errors import XrayganError

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
    model_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        """Raise :class:`XrayganError` for inconsistent options; returns self."""
        if self.conditional and self.label is not None:
            raise XrayganError("--conditional and --label exclude each other: a conditional model learns every class; --label trains one class only")
        if self.loss not in ("bce", "hinge"):
            raise XrayganError(f"--loss {self.loss}: choose bce or hinge")
        if not 0.0 < self.smooth <= 1.0:
            raise XrayganError(f"--smooth {self.smooth}: must be in (0, 1]; 1 disables smoothing")
        if not 0.0 <= self.ema < 1.0:
            raise XrayganError(f"--ema {self.ema}: must be in [0, 1); 0 disables the EMA generator")
        for name in ("batch", "steps", "sample_every", "ckpt_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise XrayganError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if self.eval_every < 0:
            raise XrayganError(f"--eval-every {self.eval_every}: must be 0 (off) or positive")
        if self.max_time is not None and self.max_time <= 0:
            raise XrayganError(f"--max-time {self.max_time}: must be positive seconds")
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
        unknown = sorted(set(d) - names - {"format_version"})
        if unknown:
            raise XrayganError(f"config: unknown option(s) {', '.join(unknown)}")
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
        raise XrayganError(f"model option(s) {', '.join(unknown)} are not known to --model {model}; its options are: {known}")
    return options_cls(**given)
