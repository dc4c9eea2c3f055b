"""The training loop: run folder, exact resume, EMA, stopping, hooks and option errors (CLI in-process)."""
from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

from xraygan.cli import main
from xraygan.training.config import TrainConfig
from xraygan.training.ema import ema_decay, make_ema, refresh_batchnorm, update_ema
from xraygan.workflow import train

TINY = ["--batch", "8", "--width", "8", "--latent-dim", "16", "--device", "cpu", "-q"]


def _train(prepared: Path, out: Path, *extra: str) -> int:
    return main(["train", str(prepared), "--out", str(out), *TINY, *extra])


def _ckpt(run: Path, name: str = "latest.pt") -> dict:
    return torch.load(run / "checkpoints" / name, weights_only=True)


def test_run_folder_contents(tiny_prepared: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _train(tiny_prepared, run, "--conditional", "--steps", "4", "--sample-every", "2", "--ckpt-every", "2", "--log-every", "1") == 0
    assert (run / "config.yaml").is_file() and (run / "loss.png").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.pt", "step_00000002.pt", "step_00000004.pt"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000002.png", "step_00000004.png"]
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3, 4] and all("loss_d" in r and "img_per_s" in r for r in recs)
    ck = _ckpt(run)
    assert ck["step"] == 4 and ck["images_seen"] == 32 and ck["classes"] == ["NORMAL", "PNEUMONIA"] and ck["n_classes"] == 2
    assert ck["config"]["diffaug"] == "none"  # auto: on below 1000 training images only in runs of >= 10,000 steps
    from PIL import Image

    grid = Image.open(run / "samples" / "step_00000004.png")
    assert grid.mode == "L" and grid.size[1] == 2 * 16 + 3 * 2  # one row per class


def test_resume_equals_uninterrupted_bitwise(tiny_prepared: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--conditional", "--diffaug", "translation,cutout,color", "--ckpt-every", "3", "--sample-every", "3"]
    assert _train(tiny_prepared, a, *common, "--steps", "8") == 0
    assert _train(tiny_prepared, b, *common, "--steps", "4") == 0
    assert _ckpt(b)["step"] == 4
    assert main(["train", "--resume", str(b), "--steps", "8", "-q"]) == 0
    ca, cb = _ckpt(a), _ckpt(b)
    assert cb["step"] == 8
    import yaml

    assert yaml.safe_load((b / "config.yaml").read_text())["options"]["steps"] == 8  # config.yaml follows --steps
    for key in ("G", "D"):
        for name, t in ca["modules"][key].items():
            assert torch.equal(t, cb["modules"][key][name]), f"{key}.{name} differs after resume"
    for name, t in ca["ema"].items():
        assert torch.equal(t, cb["ema"][name]), f"ema.{name} differs after resume"
    assert torch.equal(ca["rng"]["generators"]["data"], cb["rng"]["generators"]["data"])
    steps = [json.loads(x)["step"] for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert steps == [8] or steps == sorted(set(steps))  # no duplicated records after resume


def test_existing_run_is_refused_without_force(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(tiny_prepared, run, "--steps", "1") == 0
    assert _train(tiny_prepared, run, "--steps", "1") == 2  # exit 2: an --out that needs --force is a usage error
    assert "--force" in capsys.readouterr().err
    assert _train(tiny_prepared, run, "--steps", "2", "--force") == 0 and _ckpt(run)["step"] == 2
    other = tmp_path / "notarun"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    assert _train(tiny_prepared, other, "--steps", "1", "--force") == 2
    assert (other / "precious.txt").is_file()


def test_label_trains_one_class_unconditionally(tiny_prepared: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _train(tiny_prepared, run, "--label", "PNEUMONIA", "--steps", "2", "--loss", "hinge", "--diffaug", "none", "--size", "8") == 0
    ck = _ckpt(run)
    assert ck["n_classes"] == 0 and ck["classes"] == ["PNEUMONIA"] and ck["config"]["size"] == 8
    assert ck["config"]["diffaug"] == "none" and ck["config"]["loss"] == "hinge"


@pytest.mark.parametrize("args, message, status", [
    (["--size", "32"], "above the prepared size", 1),  # 1: needs the data to tell
    (["--label", "COVID"], "unknown label", 1),
    (["--conditional", "--model", "dcgan-tutorial"], "unconditional", 2),  # 2: an invalid command line
    (["--model", "nope"], "unknown model", 2),
    (["--model-option", "foo=1"], "not known to --model dcgan", 2),
    (["--smooth", "0"], "--smooth", 2),
    (["--diffaug", "flip"], "unknown op", 2),
])
def test_option_errors_are_clear(tiny_prepared: Path, tmp_path: Path, capsys, args: list[str], message: str, status: int) -> None:
    assert _train(tiny_prepared, tmp_path / "run", "--steps", "1", *args) == status
    assert message in capsys.readouterr().err


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path), "-q"]) == 1
    assert "not an xraygan run" in capsys.readouterr().err


def test_max_time_stops_and_checkpoints(tiny_prepared: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _train(tiny_prepared, run, "--steps", "100000", "--max-time", "0.5") == 0
    step = _ckpt(run)["step"]
    assert 1 <= step < 100000


def test_a_non_finite_loss_rolls_back_then_stops_with_a_finite_checkpoint_and_a_clear_error(tiny_prepared: Path, tmp_path: Path,
                                                                                         monkeypatch, capsys) -> None:
    from xraygan.training.families import DCGANFamily

    real_step = DCGANFamily.train_step

    def step_that_diverges_at_3(self, real, labels, step, gen):
        logs = real_step(self, real, labels, step, gen)
        return {**logs, "loss_d": float("nan")} if step == 2 else logs

    monkeypatch.setattr(DCGANFamily, "train_step", step_that_diverges_at_3)
    run = tmp_path / "run"
    assert _train(tiny_prepared, run, "--steps", "10", "--ckpt-every", "100", "--max-rollbacks", "1") == 1
    err = capsys.readouterr().err
    assert "rolled back to step 0" in err and "training diverged at step 3" in err  # see tests/training/test_divergence.py
    assert _ckpt(run)["step"] == 0  # the last finite state, never the diverged one


def test_sigterm_finishes_the_step_and_checkpoints(tiny_prepared: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(data=str(tiny_prepared), out=str(tmp_path / "run"), batch=8, width=8, latent_dim=16,
                      device="cpu", steps=1000, conditional=True)
    seen, before = [], signal.getsignal(signal.SIGTERM)

    def hook(ctx) -> dict:
        seen.append(ctx.step)
        if ctx.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return {"hook_value": float(ctx.step)}

    from xraygan.training.loop import TrainingTerminated

    with pytest.raises(TrainingTerminated, match="step 3 of 1000") as stopped:  # after the checkpoint: callers stop too
        train(cfg, callbacks=[hook])
    run = stopped.value.run
    assert seen == [1, 2, 3] and _ckpt(run)["step"] == 3
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["hook_value"] for r in recs] == [1.0, 2.0, 3.0]  # callback results land in metrics.jsonl
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored


def test_ema_moves_toward_g_with_warmup() -> None:
    torch.manual_seed(0)
    g = nn.Linear(4, 4)
    ema = make_ema(g)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    dist = lambda: sum((a - b).abs().sum().item() for a, b in zip(ema.parameters(), g.parameters()))
    d0 = dist()
    update_ema(ema, g, 0.9)
    assert dist() == pytest.approx(0.9 * d0, rel=1e-5)
    assert ema_decay(0.999, 0) == pytest.approx(0.1) and ema_decay(0.999, 10**6) == 0.999
    assert not any(p.requires_grad for p in ema.parameters())


def test_refresh_batchnorm_recomputes_statistics_from_outputs() -> None:
    bn = nn.BatchNorm2d(1)
    model = nn.Sequential(bn)
    bn.running_mean.fill_(123.0)  # stale statistics, as copied from another network
    batches = []

    def forward(gen: torch.Generator) -> None:
        x = torch.randn(16, 1, 2, 2, generator=gen) * 3 + 5
        batches.append(x)
        model(x)

    refresh_batchnorm(model, forward, seed=0, batches=4)
    means = torch.stack([b.mean() for b in batches])
    assert bn.running_mean.item() == pytest.approx(means.mean().item(), rel=1e-5)
    assert not model.training and bn.momentum == 0.1


def test_keep_ckpts_split_threads_and_amp_switches(tiny_prepared: Path, tmp_path: Path) -> None:
    import yaml

    threads = torch.get_num_threads()
    run = tmp_path / "run"
    try:
        assert _train(tiny_prepared, run, "--steps", "4", "--ckpt-every", "1", "--keep-ckpts", "2",
                      "--split", "train,val", "--threads", "1", "--amp") == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.pt", "step_00000003.pt", "step_00000004.pt"]
    info = yaml.safe_load((run / "config.yaml").read_text())
    # 24 images per class, 2 per patient: 2 val and 2 test patients per class -> 40 train+val images
    assert info["n_train_images"] == 40 and info["options"]["split"] == ["train", "val"]
    assert info["options"]["amp"] is True  # a no-op on CPU, recorded as given


def test_tensorboard_switch(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        assert _train(tiny_prepared, tmp_path / "run", "--steps", "1", "--tensorboard") == 1
        assert "tensorboard" in capsys.readouterr().err
        return
    assert _train(tiny_prepared, tmp_path / "run", "--steps", "2", "--tensorboard", "--log-every", "1") == 0
    assert list((tmp_path / "run" / "tensorboard").glob("events.*"))


def test_relative_data_path_is_saved_absolute(tiny_prepared: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tiny_prepared.parent)
    assert main(["train", tiny_prepared.name, "--out", "run", *TINY, "--conditional", "--steps", "1"]) == 0
    monkeypatch.chdir(tmp_path.parent)  # generating from elsewhere still finds the run's data
    import yaml

    conf = yaml.safe_load((tiny_prepared.parent / "run" / "config.yaml").read_text())
    assert Path(conf["options"]["data"]) == tiny_prepared.resolve()
    assert main(["generate", str(tiny_prepared.parent / "run"), "--n", "2", "--out", str(tmp_path / "g"), "-q"]) == 0


def test_mode_seeking_option_trains_and_logs_its_term(tiny_prepared: Path, tmp_path: Path) -> None:
    run = tmp_path / "ms"
    assert _train(tiny_prepared, run, "--conditional", "--steps", "3", "--log-every", "1", "--model-option", "mode_seeking=1") == 0
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss_d"' in x]
    assert recs and all(r["loss_ms"] > 0 and math.isfinite(r["loss_ms"]) for r in recs)
    assert _ckpt(run)["config"]["model_options"]["mode_seeking"] == 1.0


@pytest.mark.parametrize("size,conditional,options,weight", [
    (16, True, {}, 1.0), (32, True, {}, 1.0), (64, True, {}, 2.0), (128, True, {}, 2.0),
    (64, False, {}, 0.0), (64, True, {"mode_seeking": 0.5}, 0.5)])
def test_default_mode_seeking_weight_by_size(size: int, conditional: bool, options: dict, weight: float) -> None:
    """Unset, the weight is 2 from 64 px and 1 below when conditional (measured, docs/benchmarks.md), 0 without labels;
    what the user sets is kept."""
    from xraygan.training.config import config_from_options
    from xraygan.training.families import get_family

    cfg = config_from_options({"model": "dcgan", "size": size, "width": 4, "latent_dim": 8, "model_options": options})
    fam = get_family("dcgan")(cfg, 2 if conditional else 0, torch.device("cpu"))
    assert fam.options.mode_seeking == weight


def test_mode_seeking_is_on_by_default_when_conditional_and_old_runs_resume_without_it(tiny_prepared: Path, tmp_path: Path) -> None:
    import yaml

    cond, per_class = tmp_path / "cond", tmp_path / "one"
    assert _train(tiny_prepared, cond, "--conditional", "--steps", "2", "--log-every", "1") == 0
    assert _train(tiny_prepared, per_class, "--label", "NORMAL", "--steps", "2") == 0
    assert "loss_ms" in json.loads((cond / "metrics.jsonl").read_text().splitlines()[0])
    assert _ckpt(cond)["config"]["model_options"]["mode_seeking"] == 1.0
    assert _ckpt(per_class)["config"]["model_options"]["mode_seeking"] == 0.0
    # a run written before the option existed (its resolved options lack the key) resumes without the term
    doc = yaml.safe_load((cond / "config.yaml").read_text())
    del doc["options"]["model_options"]["mode_seeking"]
    (cond / "config.yaml").write_text(yaml.safe_dump(doc))
    assert main(["train", "--resume", str(cond), "--steps", "3", "-q"]) == 0
    assert _ckpt(cond)["config"]["model_options"]["mode_seeking"] == 0.0
    resumed = [json.loads(x) for x in (cond / "metrics.jsonl").read_text().splitlines()]
    resumed = [r for r in resumed if r.get("step") == 3 and "loss_d" in r]
    assert resumed and "loss_ms" not in resumed[0]
