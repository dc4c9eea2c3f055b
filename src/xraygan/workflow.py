"""Training with the standard hooks: what ``xraygan.train`` and ``xraygan train`` run.

:func:`xraygan.training.loop.train` imports nothing above the training layer; this module passes it
the evaluation hook of ``--eval-every`` (:func:`xraygan.metrics.training_hook.make_eval_hook`) and
writes the model card at the end (:func:`xraygan.report.model_card.write_model_card`). The demo and
the experiment's per-fold GANs train through it too, so their run folders match the command's.
"""
from __future__ import annotations

from pathlib import Path

from xraygan.training.config import TrainConfig
from xraygan.training.loop import Callback, resume_config
from xraygan.training.loop import train as _train_loop

__all__ = ["resume_config", "train"]


def _eval_hook(cfg: TrainConfig, run: Path) -> Callback:
    from xraygan.metrics.training_hook import make_eval_hook  # only with --eval-every: evaluation code loads on demand

    return make_eval_hook(cfg, run)


def _write_model_card(run: Path) -> None:
    from xraygan.report.model_card import write_model_card

    write_model_card(run)


def train(config: TrainConfig | dict, resume: bool = False, callbacks: list[Callback] | None = None) -> Path:
    """Train as ``config`` says (see :func:`xraygan.training.loop.train`), with evaluation every
    ``eval_every`` steps and the run's model card written at the end; returns the run folder."""
    return _train_loop(config, resume, callbacks, eval_hook=_eval_hook, on_finish=_write_model_card)
