"""xraygan.training.rollback on its own, on a real loop context of a tiny DCGAN run (loop._setup):
the loss rules (NaN/inf at once, |loss| > LOSS_LIMIT for LOSS_LIMIT_STEPS steps in a row), a NaN
weight found, a rollback restoring the remembered weights, step and optimizer state with the
learning rates halved and the abandoned metric records dropped, and the last rollback raising
TrainingDiverged after writing the finite state as latest.pt."""
from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from xraygan.errors import TrainingDiverged, XrayganError
from xraygan.training.checkpoint import load_checkpoint
from xraygan.training.config import TrainConfig
from xraygan.training.rollback import (
    LOSS_LIMIT,
    LOSS_LIMIT_STEPS,
    ROLLBACK_LR_FACTOR,
    _cpu_copy,
    _loss_divergence,
    _remember_good,
    _restore,
    _rollback,
    _weights_divergence,
)
from xraygan.training.tracking import Tracker


def test_loss_rules():
    assert _loss_divergence({"loss_d": 0.7, "loss_g": 1.2}, 0) == (None, 0)
    why, _ = _loss_divergence({"loss_d": 0.7, "d_real": float("nan")}, 0)  # any non-finite number, not only losses
    assert why == "d_real = nan"
    assert _loss_divergence({"loss_g": -math.inf}, 3)[0] == "loss_g = -inf"
    big = {"loss_g": -2 * LOSS_LIMIT, "grad_norm": 1e9, "ok": True, "note": "text"}
    streak, why = 0, None
    for _ in range(LOSS_LIMIT_STEPS - 1):
        why, streak = _loss_divergence(big, streak)
        assert why is None
    assert streak == LOSS_LIMIT_STEPS - 1
    assert _loss_divergence({"loss_g": 1.0}, streak) == (None, 0)  # one normal step resets the count
    why, streak = _loss_divergence(big, LOSS_LIMIT_STEPS - 1)
    assert streak == LOSS_LIMIT_STEPS and why.startswith(f"|loss_g| > {LOSS_LIMIT:g} for {LOSS_LIMIT_STEPS} steps in a row")
    assert _loss_divergence({"grad_norm": 1e9}, 10) == (None, 0)  # only losses count towards the limit


def test_cpu_copy_shares_nothing():
    t = torch.ones(3)
    state = {"a": [t, (t, 2)], "b": {"c": t}, "d": "x"}
    copy = _cpu_copy(state)
    t.fill_(5)
    assert copy["a"][0].tolist() == [1, 1, 1] and copy["b"]["c"].tolist() == [1, 1, 1]
    assert isinstance(copy["a"][1], tuple) and copy["a"][1][1] == 2 and copy["d"] == "x"


@pytest.fixture
def ctx(tiny_prepared, tmp_path):
    from xraygan.training.loop import _setup

    threads = torch.get_num_threads()
    cfg = TrainConfig(data=str(tiny_prepared), out=str(tmp_path / "run"), model="dcgan", steps=10, batch=8, latent_dim=8,
                      width=4, device="cpu", threads=1, max_rollbacks=1, ema=0.5)
    c = _setup(cfg, resume=False)
    c.tracker = Tracker(c.run.root)
    yield c
    torch.set_num_threads(threads)


def _train_steps(c, n):
    for _ in range(n):
        real, labels = c.data.batch(8, c.gens["data"])
        c.family.train_step(real, labels, c.step, c.gens["noise"])
        c.step += 1
        c.images_seen += 8
        c.tracker.log(c.step, {"loss": 1.0})


def _poison(c):
    with torch.no_grad():
        next(c.family.G.parameters()).view(-1)[0] = float("nan")


def test_rollback_restores_the_remembered_state_with_halved_learning_rates(ctx, caplog):
    fam = ctx.family
    _train_steps(ctx, 1)
    _remember_good(ctx)
    good_g = {k: v.clone() for k, v in fam.G.state_dict().items()}
    good_opt = fam.opt_d.state_dict()["state"][0]["exp_avg"].clone()
    lr_g, lr_d = fam.opt_g.param_groups[0]["lr"], fam.opt_d.param_groups[0]["lr"]
    _train_steps(ctx, 2)  # real updates move the weights on
    assert any(not torch.equal(good_g[k], v) for k, v in fam.G.state_dict().items())
    assert _weights_divergence(ctx) is None
    _poison(ctx)
    assert _weights_divergence(ctx).endswith("holds NaN or inf")
    with caplog.at_level(logging.WARNING, logger="xraygan.training.loop"):
        _rollback(ctx, "a test NaN", at_step=3)
    assert all(torch.equal(good_g[k], v) for k, v in fam.G.state_dict().items())
    assert torch.equal(fam.opt_d.state_dict()["state"][0]["exp_avg"], good_opt)
    assert (ctx.step, ctx.images_seen, ctx.rollbacks, ctx.lr_scale) == (1, 8, 1, ROLLBACK_LR_FACTOR)
    assert fam.opt_g.param_groups[0]["lr"] == pytest.approx(lr_g * ROLLBACK_LR_FACTOR)
    assert fam.opt_d.param_groups[0]["lr"] == pytest.approx(lr_d * ROLLBACK_LR_FACTOR)
    assert "rolled back to step 1" in caplog.text and "rollback 1 of at most 1" in caplog.text
    records = [json.loads(line) for line in ctx.run.metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 1]  # steps 2 and 3 were abandoned
    assert records[-1]["rollback"] == 1 and records[-1]["diverged_at"] == 3 and records[-1]["reason"] == "a test NaN"
    assert records[-1]["lr_scale"] == ROLLBACK_LR_FACTOR and records[-1]["lr_g"] == pytest.approx(lr_g * ROLLBACK_LR_FACTOR)
    # the remembered state was not handed to the optimizers: training on does not change it
    _train_steps(ctx, 1)
    assert torch.equal(ctx.good[0]["optimizers"]["D"]["state"][0]["exp_avg"], good_opt)


def test_no_rollback_left_raises_and_keeps_the_finite_state(ctx):
    _remember_good(ctx)
    _train_steps(ctx, 2)
    _rollback(ctx, "first", at_step=2)  # the one allowed rollback
    _train_steps(ctx, 1)
    _poison(ctx)
    assert not ctx.run.latest.is_file()
    with pytest.raises(TrainingDiverged, match=r"training diverged at step 1 \(second\) again after 1 rollback\(s\) .*x0\.5.*step 0\)"):
        _rollback(ctx, "second", at_step=1)
    ck = load_checkpoint(ctx.run.latest)  # written (finite) because the run had no checkpoint yet
    assert ck["step"] == 0 and ctx.step == 0
    assert all(torch.isfinite(v).all() for v in ck["modules"]["G"].values() if v.is_floating_point())


def test_restore_refuses_a_checkpoint_of_another_model(ctx):
    state = _cpu_copy(ctx.state())
    state["model"] = "stylegan2"
    with pytest.raises(XrayganError, match="checkpoint is for --model stylegan2, the run config says dcgan"):
        _restore(ctx, state)
