"""What defines an experiment: :class:`ExperimentConfig` (saved in ``OUT/protocol.json`` and
``results.json``; its unit fingerprint decides whether an ``--out`` may be resumed) and the arm names."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xraygan.errors import XrayganError
from xraygan.experiments.classifier import ClassifierConfig

ARMS = ("real", "real+classic", "real+synthetic", "real+classic+synthetic", "synthetic")
DEFAULT_ARMS = ("real", "real+classic", "real+synthetic", "synthetic")
GAN_ARMS = ("real+synthetic", "real+classic+synthetic", "synthetic")  # arms that need the fold's GAN source
MIN_STEPS = 200  # --min-steps default: the classifier's step floor when steps come from --epochs


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines an experiment; saved in ``OUT/protocol.json`` and results.json."""

    prepared: str
    out: str
    gan_config: str = "oracle"
    test: str | None = None
    arms: tuple[str, ...] = DEFAULT_ARMS
    controls: tuple[str, ...] = ()  # control arms on the same folds: oracle, noise
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    balance: bool = False
    folds: int = 5
    seeds: int = 3
    repeats: int = 1
    real_fraction: float | tuple[float, ...] = 1.0  # several: a learning curve on nested subsamples of the same folds
    class_fraction: tuple[tuple[str, float], ...] = ()  # (label, F): class kept at real_fraction x F
    min_steps: int = MIN_STEPS
    fold_seed: int = 0
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    gan_steps: int | None = None
    device: str = "auto"
    n_boot: int = 1000
    alpha: float = 0.05
    margin: float = 0.01
    workers: int = 1  # local worker processes for the units (how a run executes, not what it computes)
    ray: str | None = None  # run the units as Ray tasks: 'local' (a local cluster) or a cluster address

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arms"], d["ratios"], d["controls"] = list(self.arms), list(self.ratios), list(self.controls)
        d["class_fraction"] = {k: v for k, v in self.class_fraction}
        if isinstance(self.real_fraction, (tuple, list)):
            d["real_fraction"] = list(self.real_fraction)
        return d

    def fractions(self) -> tuple[float, ...]:
        """The real fraction(s), ascending and distinct."""
        f = self.real_fraction
        return tuple(sorted({float(x) for x in f})) if isinstance(f, (tuple, list)) else (float(f),)

    def class_fractions(self, classes: list[str]) -> dict[int, float]:
        """``--class-fraction`` as {class index: F}; an unknown label is a clear error."""
        out = {}
        for label, f in self.class_fraction:
            if label not in classes:
                raise XrayganError(f"--class-fraction {label}={f:g}: no class {label!r}; the classes are {', '.join(classes)}")
            if not 0 < f <= 1:
                raise XrayganError(f"--class-fraction {label}={f:g}: the fraction must be in (0, 1]")
            out[classes.index(label)] = float(f)
        return out

    def unit_fingerprint(self) -> str:
        """Hash of the options a unit's result depends on (not arms, ratios, seed or repeat count, nor
        the summary's options), so more seeds or repeats resume an experiment."""
        d = self.to_dict()
        for k in ("out", "arms", "ratios", "seeds", "repeats", "device", "n_boot", "alpha", "margin", "test", "controls",
                  "workers", "ray"):  # how a run executes, not what it computes
            d.pop(k)
        if not self.class_fraction:  # options added later leave older folders' fingerprints as they were
            d.pop("class_fraction")
        if self.classifier.steps or not self.min_steps:
            d.pop("min_steps")
        if len(self.fractions()) > 1:  # unit and GAN names carry the fraction, so more fractions resume
            d["real_fraction"] = "nested-list"
        elif isinstance(self.real_fraction, (tuple, list)):
            d["real_fraction"] = self.fractions()[0]
        d["step_rule"] = "epochs-of-real"  # --epochs count epochs of the real images in every arm
        d["threshold_rule"] = "youden-inner-15"  # classifiers train without the inner threshold split (inner_split)
        gan_file = Path(self.gan_config)
        if gan_file.is_file():  # a GAN config file's content, not just its name, and the defaults it leaves to xraygan
            from xraygan.training.config import GAN_DEFAULTS_RULE

            d["gan_config_sha256"] = hashlib.sha256(gan_file.read_bytes()).hexdigest()
            d["gan_defaults"] = GAN_DEFAULTS_RULE
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]
