"""Divergence never costs the user their last good checkpoint (issue 15, item 5).

A NaN/inf loss, |loss| > 1e6 for 50 steps in a row, or a non-finite weight rolls training back to the
last finite state with halved learning rates (at most --max-rollbacks times), then stops with a
one-line error and exit status 1; latest.pt is never overwritten with non-finite weights, and
generate / evaluate RUN refuse a checkpoint that has them.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from xraygan.cli import main
from xraygan.training.checkpoint import first_nonfinite, load_checkpoint
from xraygan.training.families import DCGANFamily

TINY = ["--batch", "8", "--width", "8", "--latent-dim", "16", "--device", "cpu", "--threads", "1", "-q"]


def _train(prepared: Path, out: Path, *extra: str) -> int:
    return main(["train", str(prepared), "--out", str(out), *TINY, *extra])


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _assert_finite_checkpoint(path: Path) -> dict:
    ck = load_checkpoint(path)  # refuses non-finite weights itself
    assert first_nonfinite({"m": ck["modules"], "e": ck["ema"], "o": ck["optimizers"]}) is None
    return ck


def test_a_huge_learning_rate_rolls_back_then_stops_with_one_clear_line(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(tiny_prepared, run, "--steps", "20", "--lr-g", "1e38", "--max-rollbacks", "2") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert sum("rolled back to step 0" in line for line in err) == 2  # each rollback is logged (a warning)
    assert "Traceback" not in "".join(err) and len([line for line in err if "error" in line]) == 1
    assert err[-1].startswith("xraygan train: error: training diverged") and "--max-rollbacks" in err[-1] and "latest.pt" in err[-1]
    rollbacks = [r for r in _records(run) if "rollback" in r]
    assert [r["rollback"] for r in rollbacks] == [1, 2]
    assert [r["lr_scale"] for r in rollbacks] == [0.5, 0.25]
    assert rollbacks[0]["lr_g"] == pytest.approx(0.5e38) and rollbacks[1]["lr_g"] == pytest.approx(0.25e38)
    # never overwritten with non-finite weights; a run that never checkpointed keeps its last finite state
    ck = _assert_finite_checkpoint(run / "checkpoints" / "latest.pt")
    assert ck["step"] == 0
    assert not list((run / "checkpoints").glob("step_*.pt"))


def test_a_transient_nan_rolls_back_lowers_the_learning_rates_and_training_finishes(tiny_prepared: Path, tmp_path: Path,
                                                                                    monkeypatch, capsys) -> None:
    real_step, fired = DCGANFamily.train_step, []

    def nan_once_at_step_6(self, real, labels, step, gen):
        logs = real_step(self, real, labels, step, gen)
        if step == 5 and not fired:
            fired.append(step)
            return {**logs, "loss_g": float("inf")}
        return logs

    monkeypatch.setattr(DCGANFamily, "train_step", nan_once_at_step_6)
    run = tmp_path / "run"
    assert _train(tiny_prepared, run, "--steps", "10", "--ckpt-every", "4", "--log-every", "1", "--lr-g", "4e-4") == 0
    err = capsys.readouterr().err
    assert "training diverged at step 6 (loss_g = inf): rolled back to step 4 with learning rates x0.5" in err
    recs = _records(run)
    rb = [r for r in recs if "rollback" in r]
    assert len(rb) == 1 and rb[0]["step"] == 4 and rb[0]["diverged_at"] == 6 and rb[0]["lr_scale"] == 0.5
    assert rb[0]["lr_g"] == pytest.approx(2e-4) and rb[0]["lr_d"] == pytest.approx(1e-4)
    steps = [r["step"] for r in recs if "loss_d" in r]
    assert steps == list(range(1, 11))  # the abandoned step's record was dropped; steps 5.. logged once
    ck = _assert_finite_checkpoint(run / "checkpoints" / "latest.pt")
    assert ck["step"] == 10
    # the lowered learning rates live in the optimizer states, so a resumed run keeps them
    assert ck["optimizers"]["G"]["param_groups"][0]["lr"] == pytest.approx(2e-4)
    assert ck["optimizers"]["D"]["param_groups"][0]["lr"] == pytest.approx(1e-4)


def test_non_finite_weights_are_never_written_to_a_checkpoint(tiny_prepared: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    real_step = DCGANFamily.train_step

    def poison_weights_at_step_4(self, real, labels, step, gen):
        logs = real_step(self, real, labels, step, gen)
        if step == 3:  # finite losses, but G now holds an inf weight
            with torch.no_grad():
                next(self.G.parameters()).view(-1)[0] = float("inf")
        return logs

    monkeypatch.setattr(DCGANFamily, "train_step", poison_weights_at_step_4)
    run = tmp_path / "run"
    assert _train(tiny_prepared, run, "--steps", "10", "--ckpt-every", "1", "--max-rollbacks", "0") == 1
    err = capsys.readouterr().err
    assert "training diverged at step 4" in err and "NaN or inf" in err
    ck = _assert_finite_checkpoint(run / "checkpoints" / "latest.pt")
    assert ck["step"] == 3
    for p in (run / "checkpoints").glob("step_*.pt"):
        _assert_finite_checkpoint(p)


def test_losses_above_1e6_for_50_steps_count_as_divergence(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(tiny_prepared, run, "--steps", "200", "--lr-g", "1e6", "--lr-d", "1e6", "--max-rollbacks", "0", "--diffaug", "translation,cutout") == 1
    err = capsys.readouterr().err
    assert "training diverged at step 51" in err and "for 50 steps in a row" in err, err
    assert _assert_finite_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 0


def test_generate_and_evaluate_refuse_a_checkpoint_with_a_nan_weight(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(tiny_prepared, run, "--steps", "2") == 0
    latest = run / "checkpoints" / "latest.pt"
    ck = torch.load(latest, weights_only=True)
    name = next(iter(ck["ema"]))
    ck["ema"][name].view(-1)[0] = float("nan")
    torch.save(ck, latest)  # what an older xraygan wrote after a diverged run
    capsys.readouterr()
    assert main(["generate", str(run), "--n", "2", "--out", str(tmp_path / "synthetic"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(latest) in err[0] and "non-finite weights" in err[0] and f"ema.{name}" in err[0], err
    assert not any((tmp_path / "synthetic").glob("**/*.png"))
    assert main(["evaluate", str(run), "--real", str(tiny_prepared), "--n", "4", "--features", "random", "--no-cache",
                 "--checkpoint", "latest", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert str(latest) in err and "non-finite weights" in err
    assert main(["train", "--resume", str(run), "--steps", "4", "--threads", "1", "-q"]) == 1  # nor resumed from
    assert "non-finite weights" in capsys.readouterr().err


DIST = textwrap.dedent('''
    import json, os, sys
    from xraygan.training.config import TrainConfig
    from xraygan.training.families import DCGANFamily
    from xraygan.workflow import train

    real_step, fired = DCGANFamily.train_step, []
    def nan_on_rank1_once(self, real, labels, step, gen):
        logs = real_step(self, real, labels, step, gen)
        if step == 2 and os.environ["RANK"] == "1" and not fired:
            fired.append(step)
            return {**logs, "loss_d": float("nan")}
        return logs
    DCGANFamily.train_step = nan_on_rank1_once
    cfg = TrainConfig(data=sys.argv[1], out=sys.argv[2], batch=4, width=8, latent_dim=16, device="cpu", steps=5, log_every=1)
    train(cfg)
    print("FINISHED", os.environ["RANK"])
''')


@pytest.mark.slow
def test_torchrun_processes_roll_back_together(tiny_prepared: Path, tmp_path: Path) -> None:
    script, run = tmp_path / "dist.py", tmp_path / "run"
    script.write_text(DIST)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--tee", "3",
           "--master_port", str(29700 + os.getpid() % 1000), str(script), str(tiny_prepared), str(run)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert res.stdout.count("FINISHED") == 2
    rb = [r for r in _records(run) if "rollback" in r]
    assert len(rb) == 1 and rb[0]["step"] == 0 and rb[0]["diverged_at"] == 3
    ck = _assert_finite_checkpoint(run / "checkpoints" / "latest.pt")
    assert ck["step"] == 5 and math.isclose(ck["optimizers"]["G"]["param_groups"][0]["lr"], 1e-4)
