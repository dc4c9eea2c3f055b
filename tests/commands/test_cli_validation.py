"""Bad command-line and config values are one-line errors naming the option, never tracebacks, and
the exit status says what went wrong: 2 for an invalid command line or config, 1 for anything else
(issue 15)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xraygan import cli
from xraygan.cli import main
from xraygan.errors import UsageError, XrayganError
from xraygan.training.config import TrainConfig

TINY = ["--batch", "8", "--width", "8", "--latent-dim", "16", "--device", "cpu", "--threads", "1", "-q"]


def _status(argv: list[str]) -> int:
    """main()'s exit status, whether it returns it or argparse raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("option, value, says", [
    ("--seed", "-1", "must be from 0 to"),
    ("--lr-g", "nan", "finite"),
    ("--lr-g", "-1", "positive"),
    ("--lr-g", "inf", "finite"),
    ("--lr-d", "nan", "finite"),
    ("--lr-d", "0", "positive"),
    ("--beta1", "1.5", "[0, 1)"),
    ("--beta2", "1", "[0, 1)"),
    ("--steps", "0", "at least 1"),
    ("--steps", "-5", "at least 1"),
    ("--batch", "0", "at least 1"),
    ("--ema", "1", "[0, 1)"),
    ("--max-time", "nan", "finite"),
    ("--max-rollbacks", "-1", "at least 0"),
    ("--r1-gamma", "nan", "finite"),
])
def test_train_rejects_bad_numbers_before_reading_anything(tmp_path: Path, capsys, option, value, says) -> None:
    run = tmp_path / "run"
    assert _status(["train", str(tmp_path / "no-such-data"), "--out", str(run), *TINY, option, value]) == 2
    line = _one_error_line(capsys)
    assert option in line and says in line, line
    assert not run.exists()


def test_train_size_advises_the_nearest_powers_of_two_the_model_supports(tmp_path: Path, capsys) -> None:
    assert _status(["train", str(tmp_path / "no-such-data"), "--out", str(tmp_path / "r"), *TINY, "--size", "100"]) == 2
    line = _one_error_line(capsys)
    assert "--size 100" in line and "power of two" in line and "use --size 64 or 128" in line, line
    assert _status(["train", str(tmp_path / "d"), "--out", str(tmp_path / "r"), *TINY, "--size", "512"]) == 2
    assert "use --size 256" in _one_error_line(capsys)  # dcgan stops at 256 px
    assert _status(["train", str(tmp_path / "d"), "--out", str(tmp_path / "r"), *TINY, "--size", "100", "--model", "stylegan2"]) == 2
    assert "use --size 64 or 128" in _one_error_line(capsys)


@pytest.mark.parametrize("yaml_text, option", [
    ("lr_g: .nan\n", "lr_g"), ("seed: -1\n", "seed"), ("steps: 0\n", "steps"), ("beta1: 1.5\n", "beta1"),
    ("batch: many\n", "batch"), ("loss: huber\n", "loss"), ("lr_d: -0.1\n", "lr_d"),
])
def test_config_file_values_are_checked_like_typed_ones(tmp_path: Path, capsys, yaml_text, option) -> None:
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml_text)
    assert _status(["train", str(tmp_path / "d"), "--out", str(tmp_path / "r"), *TINY, "--config", str(cfg)]) == 2
    line = _one_error_line(capsys)
    assert "train.yaml" in line and option in line, line


def test_train_config_validate_is_the_one_place_for_library_calls_too() -> None:
    for bad in (dict(seed=-1), dict(lr_g=float("nan")), dict(lr_d=-1.0), dict(beta1=1.5), dict(steps=0), dict(size=100),
                dict(max_rollbacks=-1), dict(lr_g="fast")):
        with pytest.raises(UsageError):
            TrainConfig(**bad).validate()
    cfg = TrainConfig(lr_g="1e-3", steps=5.0).validate()  # YAML-ish values are converted
    assert cfg.lr_g == 1e-3 and cfg.steps == 5 and isinstance(cfg.steps, int)


@pytest.mark.parametrize("argv, option", [
    (["generate", "RUN", "--out", "o", "--n", "0"], "--n"),
    (["generate", "RUN", "--out", "o", "--seed", "-1"], "--seed"),
    (["generate", "RUN", "--out", "o", "--batch", "0"], "--batch"),
    (["generate", "RUN", "--out", "o", "--truncation", "nan"], "--truncation"),
    (["evaluate", "--real", "r", "--fake", "f", "--n", "0"], "--n"),
    (["evaluate", "--real", "r", "--fake", "f", "--kid-subsets", "0"], "--kid-subsets"),
    (["evaluate", "--real", "r", "--fake", "f", "--seed", "-2"], "--seed"),
    (["experiment", "P", "--gan-config", "noise", "--out", "o", "--folds", "1"], "--folds"),
    (["experiment", "P", "--gan-config", "noise", "--out", "o", "--seeds", "0"], "--seeds"),
    (["experiment", "P", "--gan-config", "noise", "--out", "o", "--real-fraction", "0"], "--real-fraction"),
    (["experiment", "P", "--gan-config", "noise", "--out", "o", "--real-fraction", "nan"], "--real-fraction"),
    (["experiment", "P", "--gan-config", "noise", "--out", "o", "--ratios", "1,nan"], "--ratios"),
    (["experiment", "P", "--gan-config", "noise", "--out", "o", "--lr", "-1"], "--lr"),
    (["prepare", "SRC", "OUT", "--val", "nan"], "--val"),
    (["prepare", "SRC", "OUT", "--seed", "-1"], "--seed"),
    (["demo", "--steps", "0"], "--steps"),
])
def test_other_commands_reject_bad_numbers_with_status_2(capsys, argv, option) -> None:
    assert _status(argv) == 2
    assert option in _one_error_line(capsys)


def test_experiment_ratios_from_a_config_file_are_checked(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("ratios: [1, .nan]\n")
    assert _status(["experiment", str(tmp_path / "p"), "--gan-config", "noise", "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    assert "--ratios" in _one_error_line(capsys)


def _tiny_run(tiny_prepared: Path, run: Path) -> None:
    assert main(["train", str(tiny_prepared), "--out", str(run), *TINY, "--steps", "2", "--log-every", "1"]) == 0


def test_resume_drops_a_truncated_last_metrics_line_with_a_warning(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    _tiny_run(tiny_prepared, run)
    metrics = run / "metrics.jsonl"
    with open(metrics, "a") as fh:
        fh.write('{"step": 3, "loss_d": 0.6')  # a kill in the middle of an append
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "3", "--threads", "1", "-q"]) == 0
    err = capsys.readouterr().err
    assert "metrics.jsonl" in err and "last line" in err
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_resume_with_a_corrupt_middle_metrics_line_names_file_and_line(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    _tiny_run(tiny_prepared, run)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], "{garbage", *lines[1:]]) + "\n")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "3", "--threads", "1", "-q"]) == 1
    line = _one_error_line(capsys)
    assert str(metrics) in line and "line 2" in line


def test_a_pickled_encoder_file_is_refused_in_one_line(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    pickled = tmp_path / "encoder.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a whole pickled module, not a state dict
    fake = tmp_path / "fake" / "NORMAL"
    fake.mkdir(parents=True)
    from PIL import Image

    for i in range(4):
        Image.new("L", (16, 16), 30 * i).save(fake / f"{i}.png")
    assert main(["evaluate", "--real", str(tiny_prepared), "--fake", str(fake.parent), "--encoder", str(pickled),
                 "--n", "4", "--no-cache", "--device", "cpu", "--out", str(tmp_path / "e.json")]) == 1
    line = _one_error_line(capsys)
    assert str(pickled) in line and "pickled" in line


def test_exit_status_2_for_usage_1_for_input_and_internal_errors(tmp_path: Path, capsys, monkeypatch) -> None:
    assert _status(["train", "--no-such-option"]) == 2
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "r")]) == 2  # no dataset given: a usage error
    assert "give a prepared dataset" in _one_error_line(capsys)
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), *TINY]) == 1  # input problem
    assert "missing" in _one_error_line(capsys)
    assert main(["prepare", str(tmp_path / "missing"), ""]) == 2  # "$OUT" unset: not the current folder
    assert "argument 3 is empty" in _one_error_line(capsys)

    import xraygan.commands.presets as presets

    def boom(args):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(presets, "run", boom)
    assert main(["presets"]) == 1
    line = _one_error_line(capsys)
    assert line == "xraygan presets: internal error: RuntimeError: a bug over two lines (rerun with -v for the traceback)"
    with pytest.raises(RuntimeError):
        main(["presets", "-v"])
    assert issubclass(UsageError, XrayganError)


def test_an_os_refusal_and_a_damaged_pixel_array_are_one_line_errors(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    import shutil

    # the machine says no: /proc takes no new folders, even for root
    assert main(["evaluate", "--real", str(tiny_prepared), "--fake", str(tiny_prepared), "--features", "random", "--n", "8",
                 "--ssim-pairs", "4", "--kid-subsets", "2", "--no-cache", "--device", "cpu",
                 "--out", "/proc/xraygan-no/e.json", "-q"]) == 1
    line = _one_error_line(capsys)
    assert "/proc/xraygan-no" in line and "internal error" not in line
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_prepared, damaged)
    arr = (damaged / "pixels.npy").read_bytes()
    (damaged / "pixels.npy").write_bytes(arr[: len(arr) // 2])  # truncated
    assert main(["train", str(damaged), "--out", str(tmp_path / "r"), *TINY, "--steps", "1"]) == 1
    line = _one_error_line(capsys)
    assert "pixels.npy: damaged" in line and "xraygan prepare" in line and not (tmp_path / "r").exists()


def test_help_documents_the_exit_statuses(capsys) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "exit status" in out and "2    an invalid command line" in out
    assert cli.EXIT_CODES in out
