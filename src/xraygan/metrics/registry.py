"""The metric registry: one entry per score xraygan computes, saying which way is better.

Each :class:`Metric` has its key (the last part of its name in ``xraygan evaluate``'s JSON, the
``pc_<key>_<class>`` training records and ``metrics.jsonl``), a label, a direction (``lower`` or
``higher`` is better, or ``target``: best near a reference value, such as the real data's), how
its floor is computed, the inputs it needs and its citation. Evaluation tables, checkpoint
selection, the run report and the model card read directions and labels from here.

    from xraygan.metrics.registry import METRICS, better
    METRICS["fd"].direction           # "lower"
    better("per_class/NORMAL/recall")  # "higher"
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

REAL_HALVES_FLOOR = "the same metric between two disjoint halves of the real images at the same n"


@dataclass(frozen=True)
class Metric:
    """One score: see the module docstring."""

    key: str
    label: str
    direction: str  # "lower", "higher" or "target"
    floor: str  # how its floor (the value real data reaches) is computed
    inputs: tuple[str, ...]  # real, fake, labels, train (the GAN's training images), heldout, features, encoder_head
    citation: str
    target: str = ""  # direction "target": where the best value is ("~1", "near real", ...)

    def __post_init__(self) -> None:
        if self.direction not in ("lower", "higher", "target"):
            raise ValueError(f"metric {self.key}: direction must be lower, higher or target")
        if (self.direction == "target") != bool(self.target):
            raise ValueError(f"metric {self.key}: give target exactly when direction is target")

    @property
    def better(self) -> str:
        """What a table's "better" column shows: ``lower``, ``higher`` or the target (``~1``, ``near real``)."""
        return self.target if self.direction == "target" else self.direction

    @property
    def phrase(self) -> str:
        """``lower is better``, ``higher is better`` or ``best near real``."""
        return f"best {self.target}" if self.direction == "target" else f"{self.direction} is better"

    def improves(self, new: float, old: float) -> bool:
        """True when ``new`` is strictly better than ``old`` (only for lower/higher metrics)."""
        if self.direction == "lower":
            return new < old
        if self.direction == "higher":
            return new > old
        raise ValueError(f"metric {self.key} has a target, not a direction; compare distances to {self.target}")


_PRDC = "Kynkäänniemi et al. 2019, Improved precision and recall metric for assessing generative models (NeurIPS)"
_DC = "Naeem et al. 2020, Reliable fidelity and diversity metrics for generative models (ICML)"

METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("fd", "Frechet distance", "lower", REAL_HALVES_FLOOR, ("real", "fake", "features"),
           "Heusel et al. 2017, GANs trained by a two time-scale update rule converge to a local Nash equilibrium (NeurIPS)"),
    Metric("kid", "KID", "lower", REAL_HALVES_FLOOR, ("real", "fake", "features"),
           "Binkowski et al. 2018, Demystifying MMD GANs (ICLR)"),
    Metric("precision", "precision (k=3)", "higher", REAL_HALVES_FLOOR, ("real", "fake", "features"), _PRDC),
    Metric("recall", "recall (k=3)", "higher", REAL_HALVES_FLOOR, ("real", "fake", "features"), _PRDC),
    Metric("density", "density (k=5)", "target", REAL_HALVES_FLOOR, ("real", "fake", "features"), _DC, target="~1"),
    Metric("coverage", "coverage (k=5)", "higher", REAL_HALVES_FLOOR, ("real", "fake", "features"), _DC),
    Metric("ssim", "mean SSIM (diversity)", "target", "the mean SSIM of random pairs of real images", ("real", "fake"),
           "Wang et al. 2004, Image quality assessment: from error visibility to structural similarity (IEEE TIP)", target="near real"),
    Metric("pixel_std", "intra-class diversity (pixel std)", "target", "the same score of a disjoint set of real training images of the class",
           ("real", "fake", "labels"), "xraygan (the mean per-pixel standard deviation across a class's images)", target="near real"),
    Metric("class_consistency", "class consistency (encoder head)", "higher",
           "the share of held-out real images of the class the encoder head reads as their class", ("heldout", "fake", "labels", "encoder_head"),
           "xraygan (a classifier head on the X-ray encoder)"),
    Metric("fake_below_share", "share closer to training than held-out's 1st percentile", "lower",
           "the same share for held-out real images", ("train", "heldout", "fake"),
           "memorisation by nearest-neighbour distances, as in Meehan et al. 2020 (AISTATS)"),
    Metric("fake_median_nn", "median distance to the nearest training image", "target", "the same for held-out real images",
           ("train", "heldout", "fake"), "memorisation by nearest-neighbour distances, as in Meehan et al. 2020 (AISTATS)", target="near held-out"),
    Metric("authenticity", "authenticity", "higher", "the same score for held-out real images", ("train", "heldout", "fake"),
           "Alaa et al. 2022, How faithful is your synthetic data? (ICML)"),
    Metric("select_score", "selection score (FD / floor / min recall ratio)", "lower",
           "1 for a generator as close to the training images as a second real set, as diverse in every class",
           ("real", "fake", "labels", "features"), "xraygan (documented in xraygan.metrics.training_hook)"),
)}
ALIASES = {"fid": "fd"}


def metric_of(name: str) -> Optional[Metric]:
    """The registry entry of a metric path such as ``per_class/NORMAL/fd``, ``pc_recall_NORMAL`` or
    ``class_consistency/NORMAL`` (None if unknown)."""
    parts = str(name).split("/")
    if parts[0] == "class_consistency":
        return METRICS["class_consistency"]
    last = ALIASES.get(parts[-1], parts[-1])
    if last in METRICS:
        return METRICS[last]
    if last.startswith("pc_"):
        body = last[3:]
        for key in sorted(METRICS, key=len, reverse=True):
            if body == key or body.startswith(key + "_"):
                return METRICS[key]
    return None


def better(name: str) -> str:
    """``lower``, ``higher``, ``~1``, ``near real``... for a metric path; '' if unknown."""
    m = metric_of(name)
    return m.better if m else ""
