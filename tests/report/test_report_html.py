"""The HTML report: built in-process from constructed run and experiment folders; a browser test."""
from __future__ import annotations

import argparse
import base64
import io
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.report_fixtures import make_experiment, make_run
from xraygan.errors import XrayganError
from xraygan.report.figures import grid_rows, pick_evenly
from xraygan.report.html import render_report, write_report
from xraygan.report.model_card import write_model_card


def _images(html: str) -> list[Image.Image]:
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return [Image.open(io.BytesIO(base64.b64decode(u))) for u in uris]


def _assert_self_contained(html: str) -> None:
    for attr, value in re.findall(r'\b(src|href)\s*=\s*"([^"]*)"', html):
        assert value.startswith(("data:", "#")), f"external reference {attr}={value[:60]}"
    assert "<script" not in html.lower() and "@import" not in html and "url(" not in html
    assert not re.search(r"<link(?![^>]*href=\"data:)", html)


def _run_report(argv: list[str]) -> int:
    from xraygan.commands import report

    p = argparse.ArgumentParser()
    report.add_arguments(p)
    return report.run(p.parse_args(argv))


def test_run_report_has_every_part(tmp_path):
    run = make_run(tmp_path / "run1")
    write_model_card(run)
    html = render_report(run)
    _assert_self_contained(html)
    imgs = _images(html)
    # 2 classes x 4 steps strips + latest grid + loss curve + FD curve + closest pairs (loss.png not shown twice)
    assert len(imgs) == 8 + 1 + 2 + 1
    strips = imgs[:8]
    assert all(im.height >= 64 and im.width == 4 * im.height for im in strips)  # one row of 4 cells, enlarged
    for title in ("Samples over training time", "Training curves", "Evaluation", "Config and provenance", "Memorisation"):
        assert title in html
    assert html.count("<h3>NORMAL</h3>") == 1 and html.count("<h3>PNEUMONIA</h3>") == 1
    assert all(f"step {s}" in html for s in (10, 20, 30, 40))
    assert re.search(r"<td>overall/fd</td><td class=num>12.5</td><td class=num>3.25</td><td>lower</td>", html)  # value beside floor
    assert "<h3>eval/step_00000040_xray.json</h3>" in html and "Earlier evaluations (1)" in html
    assert "n=64 is small" in html  # the evaluation's warnings are shown
    assert "CC BY 4.0" in html and "Kermany" in html and "MODEL_CARD.md" in html
    assert "last 7.5 at step 40; best 3.333 at step 30; floor 1.5" in html and "dashed: the floor" in html
    assert "not available" not in html
    assert "Experiment" not in re.sub(r"<pre>.*?</pre>", "", html, flags=re.S).split("<h2 id=config>")[0].split("</nav>")[1]


def test_one_label_run_shows_whole_grids(tmp_path):
    run = make_run(tmp_path / "runp", with_eval=False, label="PNEUMONIA")
    html = render_report(run)
    assert html.count("<h3>PNEUMONIA</h3>") == 1 and "<h3>NORMAL</h3>" not in html
    strips = _images(html)[:4]
    assert all(im.height == im.width >= 64 for im in strips)  # the whole square 4x4 grid, not one row of it
    assert "rows top to bottom" not in html


def test_strips_are_the_class_rows_of_the_grid(tmp_path):
    # a torchvision-style grid: 2 rows of 3 cells of 8 px with 2 px padding of value 255
    a = np.full((2 * 8 + 3 * 2, 3 * 8 + 4 * 2), 255, np.uint8)
    for r in range(2):
        for c in range(3):
            a[2 + r * 10: 2 + r * 10 + 8, 2 + c * 10: 2 + c * 10 + 8] = 40 + 100 * r + c
    Image.fromarray(a).save(tmp_path / "g.png")
    top, bottom = grid_rows(tmp_path / "g.png", 2)
    assert top.shape == bottom.shape == (8, a.shape[1])
    assert set(np.unique(top)) == {40, 41, 42, 255} and set(np.unique(bottom)) == {140, 141, 142, 255}
    assert pick_evenly(list(range(20)), 4) == [0, 6, 13, 19] and pick_evenly([1, 2], 8) == [1, 2]


def test_experiment_report(tmp_path):
    prepared = make_run(tmp_path / "run1").parent / "run1-prepared"
    exp = make_experiment(tmp_path / "exp", prepared=prepared)
    html = render_report(exp)
    _assert_self_contained(html)
    assert len(_images(html)) == 2  # ROC + CI chart
    assert "<h3>Verdicts</h3>" in html and "real+synthetic x1 vs real" in html
    assert 'class="badge no">no detectable difference' in html and "corrected t-test p=0.21" in html
    assert "Metrics on the fold test sets (95% CI)" in html and "Metrics on the held-out set test (95% CI)" in html
    assert "<td>0.830 [0.790, 0.870]</td>" in html  # value with its CI
    assert "<td>verdict: real+synthetic x1 vs real</td><td>no detectable difference</td>" in html  # summary
    assert "roc.png" in html and "ci.png" in html and "results.json" in html
    assert "CC BY 4.0" in html  # provenance through the protocol's prepared dataset
    assert "protocol config" in html and "Samples over training time" not in html  # not a run


@pytest.mark.parametrize("word", ["improves", "harms", "equivalent", "inconclusive"])
def test_experiment_report_shows_the_issue13_verdict_words(tmp_path, word):
    exp = make_experiment(tmp_path / "exp", verdict=word)
    html = render_report(exp)
    assert f'class="badge {word}">{word}</span>' in html and f".{word}{{background:" in html
    assert f"<td>verdict: real+synthetic x1 vs real</td><td>{word}</td>" in html


def test_missing_parts_say_not_available(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss_d": 1.0}\n{"step": 2, "loss_d": 0.9}\n')
    html = render_report(run)
    _assert_self_contained(html)
    for what in ("Sample grids", "FD curve", "Evaluation tables", "Closest synthetic-real pairs", "Data provenance", "Config"):
        assert f"{what}: not available" in html, what
    assert len(_images(html)) == 1  # the loss curve still works
    empty = tmp_path / "empty"
    empty.mkdir()
    html = render_report(empty)
    assert "Experiment results: not available" in html and "Sample grids: not available" in html
    make_run(empty / "sub" / "r")  # a folder holding runs (like `xraygan demo`'s output) points to them
    assert f"Report on one of these instead: <code>{empty / 'sub' / 'r'}</code>" in render_report(empty)


def test_command_writes_refuses_and_forces(tmp_path, capsys):
    run = make_run(tmp_path / "run1", with_eval=False)
    out = tmp_path / "r.html"
    assert _run_report([str(run), "--out", str(out)]) == 0
    assert out.is_file() and out.read_text().startswith("<!DOCTYPE html>")
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(XrayganError, match="--force"):
        _run_report([str(run), "--out", str(out)])
    assert _run_report([str(run), "--out", str(out), "--force"]) == 0
    assert _run_report([str(run)]) == 0 and (run / "report.html").is_file()  # default: inside the folder
    with pytest.raises(XrayganError, match="no such folder"):
        write_report(tmp_path / "nope", tmp_path / "x.html")


@pytest.mark.browser
def test_report_loads_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("`chromium` is not on PATH (Debian: apt-get install -y chromium); this test runs with -m browser")
    run = make_run(tmp_path / "run1")
    write_model_card(run)
    page = write_report(run, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--window-size=1200,1600", f"--screenshot={shot}", "--enable-logging=stderr", "--v=0", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Failed to load resource" in line]
    assert console == [], console
    im = np.asarray(Image.open(shot).convert("L"))
    assert im.shape == (1600, 1200)
    assert len(np.unique(im)) > 50 and im.std() > 10  # the grids and plots rendered, not a blank page


def test_cli_with_config_file(tmp_path, capsys):
    from xraygan.cli import main

    run = make_run(tmp_path / "run1", with_eval=False)
    cfg = tmp_path / "report.yaml"
    cfg.write_text(f"path: {run}\nout: {tmp_path / 'from-config.html'}\n")
    assert main(["report", "--config", str(cfg), "-q"]) == 0
    assert (tmp_path / "from-config.html").read_text().startswith("<!DOCTYPE html>")
    assert main(["report", "-q"]) == 2
    assert "give the folder to report on" in capsys.readouterr().err
