"""`xraygan train --resume` refuses what it cannot honour, writers nested in a locked folder are
refused, and Ctrl-C / SIGTERM stop training (checkpoint written) with exit status 130 / 143."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import make_prepared
from xraygan.cli import main

TINY = ["--size", "16", "--batch", "8", "--width", "8", "--latent-dim", "16", "--device", "cpu", "--threads", "1", "-q"]


def _train(prepared: Path, out: Path, *extra: str) -> int:
    return main(["train", str(prepared), "--out", str(out), *TINY, *extra])


def _step(run: Path) -> int:
    return int(torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["step"])


def test_resume_refuses_another_out_folder(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    run, other = tmp_path / "r1", tmp_path / "r_other"
    assert _train(tiny_prepared, run, "--steps", "2") == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--out", str(other), "--steps", "4", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"--out {other} with --resume {run}" in err and "new run" in err
    assert not other.exists() and _step(run) == 2  # nothing trained, nothing created


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A 2-step conditional run (width 8, batch 8, latent 16, 16 px), shared by the refusals (which never write)."""
    tmp = tmp_path_factory.mktemp("resume")
    run = tmp / "run"
    assert _train(make_prepared(tmp / "p", size=16, n_per_class=8), run, "--steps", "2") == 0
    return run


@pytest.mark.parametrize("args, message", [
    (["--width", "16"], "--width 16 differs from the run's --width 8"),
    (["--batch", "4", "--lr-g", "0.1"], "--lr-g 0.1 differs from the run's --lr-g 0.0002; --batch 4 differs from the run's --batch 8"),
    (["--model", "stylegan2"], "--model stylegan2 differs from the run's --model dcgan"),
    (["--unconditional"], "--unconditional differs from the run's --conditional"),
    (["--size", "8"], "--size 8 differs from the run's --size 16"),
    (["--latent-dim", "128"], "--latent-dim 128 differs from the run's --latent-dim 16"),  # the parser's default, given explicitly
    (["--model-option", "d_norm=sn"], "--model-option d_norm=sn differs from the run's d_norm=bn"),
])
def test_resume_refuses_options_that_define_the_run(trained_run: Path, capsys, args: list[str], message: str) -> None:
    run = trained_run
    assert main(["train", "--resume", str(run), "--steps", "3", *args, "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and "xraygan train DATA --out NEW_RUN" in err, err
    assert _step(run) == 2


def test_resume_applies_runtime_options_and_accepts_the_runs_own_values(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(tiny_prepared, run, "--steps", "2") == 0
    # the same data, --out and model values as the run's are fine; --sample-every (runtime) now applies
    assert main(["train", str(tiny_prepared), "--resume", str(run), "--out", str(run), "--width", "8", "--conditional",
                 "--steps", "4", "--sample-every", "1", "--threads", "1", "-q"]) == 0
    assert _step(run) == 4
    assert {"step_00000003.png", "step_00000004.png"} <= {p.name for p in (run / "samples").iterdir()}
    other = make_prepared(tmp_path / "other", size=16, n_per_class=8)
    capsys.readouterr()
    assert main(["train", str(other), "--resume", str(run), "--steps", "6", "-q"]) == 2  # another data folder
    assert f"the run trains on {tiny_prepared.resolve()}" in capsys.readouterr().err and _step(run) == 4


def test_resume_refuses_data_prepared_again_with_other_classes(tmp_path: Path, capsys) -> None:
    prepared = make_prepared(tmp_path / "p", size=16, n_per_class=8)
    run = tmp_path / "run"
    assert _train(prepared, run, "--steps", "2") == 0
    shutil.rmtree(prepared)
    make_prepared(prepared, size=16, n_per_class=8, classes=("A", "B"))  # prepared again, other classes
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "4", "-q"]) == 1
    err = capsys.readouterr().err
    assert f"cannot resume {run}" in err and str(prepared) in err and "NORMAL, PNEUMONIA" in err and "A, B" in err, err
    assert _step(run) == 2


def _hold_lock(folder: Path) -> subprocess.Popen:
    """A second process holding ``folder``'s output lock (like `xraygan experiment`) until its stdin closes."""
    code = ("import sys\nfrom xraygan.utils.locks import output_lock\n"
            f"with output_lock({str(folder)!r}, 'experiment'):\n    print('held', flush=True)\n    sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_inside_a_folder_another_process_writes_is_refused(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    ex = tmp_path / "EX"
    run = ex / "gans" / "fold0" / "class0"
    assert _train(tiny_prepared, run, "--steps", "2") == 0
    proc = _hold_lock(ex)
    try:
        capsys.readouterr()
        assert main(["train", "--resume", str(run), "--steps", "100000", "-q"]) == 1
        err = capsys.readouterr().err
        assert f"{run} is inside {ex}" in err and "another xraygan process is writing" in err, err
        assert _train(tiny_prepared, ex / "gans" / "fold0" / "class1", "--steps", "2") == 1  # a new run in there too
        assert not (ex / "gans" / "fold0" / "class1").exists()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert _step(run) == 2
    assert main(["train", "--resume", str(run), "--steps", "3", "-q"]) == 0  # the writer is gone: allowed
    assert _step(run) == 3


def _logged_steps(metrics: Path) -> list[int]:
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(int(json.loads(line).get("step", -1)))
        except (ValueError, AttributeError):
            pass  # a line being written
    return out


def _start_then_signal(cmd: list[str], started, sig: int, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``cmd`` (an xraygan command line), send ``sig`` once ``started`` (a Path) exists or
    ``started()`` is true, return its result."""
    ready = started if callable(started) else started.is_file
    proc = subprocess.Popen([sys.executable, "-m", "xraygan", *cmd], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_ctrl_c_and_sigterm_checkpoint_then_exit_130_and_143(tiny_prepared: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = _start_then_signal(["train", str(tiny_prepared), "--out", str(run), *TINY, "--steps", "100000", "--log-every", "1"],
                             run / "metrics.jsonl", signal.SIGINT, tmp_path)
    assert res.returncode == 130, res.stderr
    assert "interrupted by SIGINT" in res.stderr and f"--resume {run}" in res.stderr and "Traceback" not in res.stderr
    step = _step(run)
    assert 1 <= step < 100000
    res = _start_then_signal(["train", "--resume", str(run), "-q"],  # once the resumed run has logged a step beyond
                             lambda: max(_logged_steps(run / "metrics.jsonl"), default=-1) > step, signal.SIGTERM, tmp_path)
    assert res.returncode == 143, res.stderr
    assert "stopped by SIGTERM" in res.stderr and "Traceback" not in res.stderr
    assert _step(run) > step


def test_ctrl_c_stops_the_demo_and_a_rerun_needs_no_force(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    res = _start_then_signal(["demo", "--out", str(out), "--quick", "--steps", "100000", "--device", "cpu", "--threads", "1", "-q"],
                             out / "run" / "metrics.jsonl", signal.SIGINT, tmp_path)
    assert res.returncode == 130, res.stderr
    assert "interrupted" in res.stderr and f"xraygan demo --out {out}" in res.stderr and "finished" not in res.stdout
    assert not (out / "synthetic").exists()  # it stopped at training
    assert main(["demo", "--out", str(out), "--quick", "--device", "cpu", "--threads", "1", "-q"]) == 0  # no --force needed
    assert "xraygan demo finished" in capsys.readouterr().out
    assert main(["demo", "--out", str(out), "--quick", "--device", "cpu", "--threads", "1", "-q"]) == 2  # a finished demo is kept
