"""Never lose a user's data (issue 15): --force replaces only xraygan's own outputs, no output
inside an input, one writer per output folder, atomic step checkpoints, clean restarts after a
kill, and SIGTERM during prepare/generate leaves nothing behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import make_prepared
from xraygan.cli import main
from xraygan.utils import fs
from tests.helpers import file_tree, random_class_folder

TINY = ["--batch", "8", "--width", "8", "--latent-dim", "16", "--device", "cpu", "--threads", "1", "-q"]
REPO = Path(__file__).resolve().parents[2]


def _class_folder(root: Path, n: int = 6) -> Path:
    return random_class_folder(root, n)


_tree = file_tree


def _prepare(src: Path, out: Path, *extra: str) -> int:
    return main(["prepare", str(src), str(out), "--size", "16", "--val", "0.2", "--test", "0.2", "-q", *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("safety")
    prep = make_prepared(root / "prepared", size=16, n_per_class=12)
    out = root / "run"
    assert main(["train", str(prep), "--out", str(out), "--steps", "2", "--conditional", *TINY]) == 0
    return out


# --- 1. --force removes only what xraygan wrote; outputs never overlap inputs ------------------------

def test_prepare_into_its_own_source_is_refused_even_with_force(tmp_path, capsys):
    src = _class_folder(tmp_path / "src")
    before = _tree(src)
    assert _prepare(src, src, "--force") != 0
    err = capsys.readouterr().err
    assert "input" in err and len(err.strip().splitlines()) == 1
    assert _tree(src) == before
    assert _prepare(src, src / "prepared") != 0 and "inside the input" in capsys.readouterr().err
    assert _tree(src) == before and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_prepare_into_the_csv_folder_is_refused(tmp_path, capsys):
    src = _class_folder(tmp_path / "src")
    (src / "labels.csv").write_text("path,label\n" + "".join(f"{p.relative_to(src)},{p.parent.name}\n" for p in sorted(src.rglob("*.png"))))
    assert _prepare(src / "labels.csv", src / "prep") != 0
    assert "inside the input" in capsys.readouterr().err and not (src / "prep").exists()


def test_force_on_a_foreign_folder_is_refused_and_it_stays_intact(tmp_path, run, capsys):
    src = _class_folder(tmp_path / "src")
    foreign = tmp_path / "mine"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "thesis.tex").write_text("years of work")
    (foreign / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before = _tree(foreign)
    assert _prepare(src, foreign, "--force") != 0
    assert "not written by xraygan" in capsys.readouterr().err
    assert main(["generate", str(run), "--n", "2", "--out", str(foreign), "--force", "--device", "cpu"]) != 0
    assert "not written by xraygan" in capsys.readouterr().err
    assert main(["train", str(run.parent / "prepared"), "--out", str(foreign), "--steps", "1", "--force", *TINY]) != 0
    assert "not written by xraygan" in capsys.readouterr().err
    assert main(["demo", "--out", str(foreign), "--quick", "--force", "--device", "cpu", "-q"]) != 0
    assert "not written by xraygan" in capsys.readouterr().err
    assert _tree(foreign) == before


def test_force_replaces_xraygan_outputs_of_the_same_kind_only(tmp_path, run, capsys):
    src = _class_folder(tmp_path / "src")
    out = tmp_path / "prep"
    assert _prepare(src, out) == 0 and fs.output_kind(out) == "prepared"
    assert _prepare(src, out, "--force") == 0 and fs.output_kind(out) == "prepared"
    syn = tmp_path / "syn"
    gen = ["generate", str(run), "--n", "2", "--device", "cpu"]
    assert main([*gen, "--out", str(syn)]) == 0 and fs.output_kind(syn) == "generated"
    assert main([*gen, "--out", str(syn), "--force"]) == 0
    # an xraygan output of another kind is not replaced either
    assert _prepare(src, syn, "--force") != 0 and "generated image set" in capsys.readouterr().err
    assert fs.output_kind(syn) == "generated"
    # a folder written before the marker existed is still recognised
    os.remove(out / fs.MARKER)
    assert fs.output_kind(out) == "prepared" and _prepare(src, out, "--force") == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no lock files, no staging leftovers


def test_outputs_inside_inputs_are_refused_for_every_command(tmp_path, run, capsys):
    prep = run.parent / "prepared"
    before = _tree(prep), _tree(run)
    cases = [
        ["train", str(prep), "--out", str(prep / "run"), "--steps", "1", *TINY],
        ["train", str(prep), "--out", str(prep), "--steps", "1", "--force", *TINY],
        ["generate", str(run), "--n", "2", "--out", str(run / "syn"), "--device", "cpu"],
        ["generate", str(run), "--n", "2", "--out", str(run), "--force", "--device", "cpu"],
        ["experiment", str(prep), "--out", str(prep / "exp"), "--gan-config", "noise", "--folds", "2", "--seeds", "1"],
        ["evaluate", "--real", str(prep), "--fake", str(prep), "--out", str(prep / "eval.json"), "--device", "cpu"],
        ["report", str(run), "--out", str(run / "config.yaml"), "--force"],
    ]
    for argv in cases:
        assert main(argv) != 0, argv
        err = capsys.readouterr().err
        assert "input" in err or "not an HTML report" in err, (argv, err)
    assert (_tree(prep), _tree(run)) == before


def test_report_force_replaces_only_its_own_page(tmp_path, run, capsys):
    (tmp_path / "images").mkdir()
    assert main(["report", str(tmp_path / "images")]) == 1  # not a run: nothing written into it
    assert "not an xraygan training run" in capsys.readouterr().err and not list((tmp_path / "images").iterdir())
    page = tmp_path / "mine.html"
    page.write_text("<html><body>my notes</body></html>")
    assert main(["report", str(run), "--out", str(page), "--force"]) == 1
    assert "did not write" in capsys.readouterr().err and page.read_text() == "<html><body>my notes</body></html>"
    ours = tmp_path / "r.html"
    assert main(["report", str(run), "--out", str(ours)]) == 0
    first = ours.stat().st_mtime_ns
    assert main(["report", str(run), "--out", str(ours)]) == 1  # exists: needs --force
    assert main(["report", str(run), "--out", str(ours), "--force"]) == 0 and ours.stat().st_mtime_ns >= first


# --- 3. one writer per output folder ------------------------------------------------------------------

def _hold_lock(path: Path) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        from xraygan.utils.fs import output_lock
        with output_lock({str(path)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_while_the_lock_is_held(tmp_path, run, capsys):
    src = _class_folder(tmp_path / "src")
    out = tmp_path / "prep"
    holder = _hold_lock(out)
    try:
        t = time.monotonic()
        assert _prepare(src, out) != 0
        err = capsys.readouterr().err
        assert "is being written by another xraygan process (lock file" in err and ".prep.lock" in err
        assert time.monotonic() - t < 10 and not out.exists()  # immediately, nothing written
    finally:
        holder.kill()
        holder.wait()
    assert _prepare(src, out) == 0  # the killed holder's lock file is reused, then removed
    assert not (tmp_path / ".prep.lock").exists()


def test_generate_and_report_into_a_folder_being_written_are_refused(tmp_path, run, capsys):
    busy = tmp_path / "busy"
    holder = _hold_lock(busy)
    try:
        assert main(["generate", str(run), "--n", "2", "--out", str(busy / "syn"), "--device", "cpu"]) == 1
        assert "which another xraygan process is writing now" in capsys.readouterr().err
        assert main(["report", str(run), "--out", str(busy / "r.html")]) == 1
        assert "which another xraygan process is writing now" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert not (busy / "syn").exists() and not (busy / "r.html").exists()


def test_resume_and_force_are_refused_while_a_run_is_being_written(run, capsys):
    metrics = (run / "metrics.jsonl").read_bytes()
    holder = _hold_lock(run)
    try:
        assert main(["train", "--resume", str(run), "--steps", "4", "-q"]) != 0
        assert "being written by another xraygan process" in capsys.readouterr().err
        assert main(["train", str(run.parent / "prepared"), "--out", str(run), "--steps", "1", "--force", *TINY]) != 0
        assert "being written by another xraygan process" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert (run / "metrics.jsonl").read_bytes() == metrics and (run / "config.yaml").is_file()


def test_nested_outputs_go_through_the_held_lock(tmp_path):
    outer = tmp_path / "exp"
    with fs.output_lock(outer):
        assert fs.held_by_this_process(outer / "gans" / "fold0")
        with fs.output_lock(outer / "gans" / "fold0"):  # no deadlock, no second lock file
            pass
        assert not (outer / "gans" / ".fold0.lock").exists()
    assert not fs.held_by_this_process(outer) and not (tmp_path / ".exp.lock").exists()


# --- 4. atomic step checkpoints, clean restarts, SIGTERM ---------------------------------------------

def test_step_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    from xraygan.training.config import TrainConfig
    from xraygan.workflow import train

    prep = make_prepared(tmp_path / "prepared", size=16, n_per_class=8)
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        if Path(dst).name.startswith("step_"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    cfg = TrainConfig(data=str(prep), out=str(tmp_path / "run"), steps=2, ckpt_every=2, batch=8, width=8, latent_dim=16,
                      device="cpu", threads=1)
    with pytest.raises(OSError):
        train(cfg)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["latest.pt"]  # no step_*.pt before it is complete, no temporary file left


def test_stale_leftovers_of_a_killed_writer_are_cleaned(tmp_path, run):
    src = _class_folder(tmp_path / "src")
    out = tmp_path / "prep"
    stale = [tmp_path / ".prep.abcd1234.partial", tmp_path / ".prep.wxyz_789.old"]
    for d in stale:
        (d / "images").mkdir(parents=True)
        (d / "images" / "x.png").write_bytes(b"partial")
    others = [tmp_path / ".prep2.abcd1234.partial", tmp_path / ".prep.notmine"]  # not this output's staging
    for d in others:
        d.mkdir()
    assert _prepare(src, out) == 0
    assert not any(d.exists() for d in stale) and all(d.exists() for d in others)
    # a run: a temporary checkpoint from a killed writer is removed by the next resume
    tmp = run / "checkpoints" / ".latest.pt.k1ll3d00.tmp"
    tmp.write_bytes(b"half a checkpoint")
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 99, "loss')  # an append cut short by the kill
    assert main(["train", "--resume", str(run), "--steps", "3", "-q"]) == 0
    assert not tmp.exists()
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()][-1] == 3


def test_a_commit_cut_between_its_renames_puts_the_old_output_back(tmp_path):
    out = tmp_path / "syn"
    old = tmp_path / ".syn.q1w2e3r4.old"
    (old / "x").mkdir(parents=True)
    (old / "x" / "manifest.csv").write_text(fs.GENERATED_MANIFEST_HEADER + "\n")
    with fs.output_lock(out):
        pass
    assert (out / "manifest.csv").is_file() and not old.exists()


def _sigterm_during(tmp_path: Path, setup: str, call: str, slow: str) -> subprocess.CompletedProcess:
    """Run ``call`` in a child whose ``slow`` function announces itself and sleeps; SIGTERM it then."""
    code = textwrap.dedent(f"""
        import sys, time
        import torch; torch.set_num_threads(1)
        {setup}
        mod, name = {slow!r}.rsplit(".", 1)
        import importlib
        m = importlib.import_module(mod)
        real = getattr(m, name)
        def slow(*a, **k):
            print("staging", flush=True)
            time.sleep(30)
            return real(*a, **k)
        setattr(m, name, slow)
        from xraygan.cli import main
        sys.exit(main({call}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    line = proc.stdout.readline().strip()
    assert line == "staging", proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_sigterm_during_prepare_leaves_nothing_behind(tmp_path):
    src = _class_folder(tmp_path / "src")
    out = tmp_path / "prep"
    res = _sigterm_during(tmp_path, "", repr(["prepare", str(src), str(out), "--size", "16", "--val", "0.2", "--test", "0.2", "-q"]),
                          "xraygan.data.prepare._save_png")
    assert res.returncode == 143 and "SIGTERM" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists() and not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_pool_workers_are_not_given_the_staging_sigterm_handler(tmp_path):
    """Pool.terminate() stops workers with SIGTERM: they must die quietly, not raise (nor hang)."""
    src = _class_folder(tmp_path / "src", n=40)  # >= 64 images: PNGs are written by a pool
    res = subprocess.run([sys.executable, "-m", "xraygan", "prepare", str(src), str(tmp_path / "prep"), "--size", "16",
                          "--workers", "2", "-q"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0 and "Traceback" not in res.stderr and "Terminated" not in res.stderr, res.stderr


def test_sigterm_during_generate_leaves_nothing_behind_and_keeps_the_old_set(tmp_path, run):
    out = tmp_path / "syn"
    assert main(["generate", str(run), "--n", "2", "--out", str(out), "--device", "cpu"]) == 0
    before = _tree(out)
    res = _sigterm_during(tmp_path, "", repr(["generate", str(run), "--n", "3", "--out", str(out), "--force", "--device", "cpu"]),
                          "xraygan.generate._png_bytes")
    assert res.returncode == 143 and "SIGTERM" in res.stderr and "Traceback" not in res.stderr
    assert _tree(out) == before and not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_staged_outputs_get_the_usual_permissions_not_the_staging_folders_0700(tmp_path):
    src = _class_folder(tmp_path / "src")
    out = tmp_path / "prep"
    assert _prepare(src, out) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask
