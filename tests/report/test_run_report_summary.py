"""The run report tells the truth at a glance: steps reached vs planned, elapsed time, why training
stopped (recorded in metrics.jsonl by the loop), the latest evaluation with a plain sentence when it
is far from the floor, and no figure twice."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.report_fixtures import make_run
from xraygan.cli import main
from xraygan.report.html import render_report
from xraygan.report.rundir import far_from_real, load_run, run_status

TINY = ["--size", "16", "--batch", "8", "--width", "8", "--latent-dim", "16", "--device", "cpu", "--threads", "1", "-q",
        "--sample-every", "1000", "--ckpt-every", "1000", "--log-every", "1"]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _summary(html: str) -> str:
    return html.split("<h2 id=summary>")[1].split("<h2 ")[0]


def test_a_finished_run_records_done_and_the_report_says_so(tiny_prepared, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(tiny_prepared), "--out", str(run), "--steps", "3", *TINY]) == 0
    last = _records(run)[-1]
    assert last["stopped"] == "done" and last["step"] == 3 and last["steps_planned"] == 3 and last["elapsed"] > 0
    st = run_status(load_run(run))
    assert st["reached"] == 3 and st["planned"] == 3 and st["stopped"] == "done" and st["rollbacks"] == 0
    summary = _summary(render_report(run))
    assert "3 of 3 planned (100%)" in summary and "elapsed training time" in summary
    assert "finished: reached the planned steps" in summary


def test_max_time_is_recorded_as_the_reason(tiny_prepared, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(tiny_prepared), "--out", str(run), "--steps", "500", "--max-time", "0.001", *TINY]) == 0
    last = _records(run)[-1]
    assert last["stopped"] == "max_time" and last["step"] < 500 and last["steps_planned"] == 500
    summary = _summary(render_report(run))
    assert f"{last['step']} of 500 planned" in summary and "stopped by --max-time" in summary


def test_divergence_is_recorded_as_the_reason(tiny_prepared, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(tiny_prepared), "--out", str(run), "--steps", "20", "--lr-g", "1e38", "--max-rollbacks", "1", *TINY]) == 1
    recs = _records(run)
    assert recs[-1]["stopped"] == "diverged" and recs[-1]["rollbacks"] == 1
    summary = _summary(render_report(run))
    assert "training diverged" in summary and "1 rollback(s)" in summary


def test_a_run_without_stop_record_is_not_called_finished(tmp_path):
    run = make_run(tmp_path / "run", steps=40)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:25]) + "\n")  # killed at step 25 of 40
    summary = _summary(render_report(run))
    assert "25 of 40 planned" in summary and "unknown: no stop record" in summary


def test_latest_evaluation_far_from_the_floor_gets_a_plain_sentence(tmp_path):
    run = make_run(tmp_path / "run", steps=40)  # latest eval: FD 12.5 against a floor of 3.25 (3.8x)
    summary = _summary(render_report(run))
    assert "eval/step_00000040_xray.json" in summary and "Far from real data" in summary and "3.8x" in summary
    data = json.loads((run / "eval" / "step_00000040_xray.json").read_text())
    data["overall"]["fd"]["value"] = 4.0
    data["per_class"] = {"NORMAL": {"fd": {"value": 5.0, "floor": 4.0}, "recall": {"value": 0.2, "floor": 0.8}},
                         "PNEUMONIA": {"fd": {"value": 5.0, "floor": 4.5}, "recall": {"value": 0.7, "floor": 0.8}}}
    assert far_from_real(data) == ["class NORMAL: recall 0.2 is below half its floor 0.8 (modes of the class are missing)"]
    data["per_class"]["NORMAL"]["recall"]["value"] = 0.6
    assert far_from_real(data) == []
    (run / "eval" / "step_00000040_xray.json").write_text(json.dumps(data))
    summary = _summary(render_report(run))
    assert "Far from real data" not in summary and "Within 3x the floor" in summary


def test_no_figure_is_shown_twice(tmp_path):
    run = make_run(tmp_path / "run", steps=40)
    html = render_report(run)
    uris = [u for u in html.split('src="')[1:]]
    uris = [u.split('"', 1)[0] for u in uris]
    assert len(uris) == len(set(uris))
    assert "loss.png" not in html.split("<h2 id=config>")[0]  # drawn once, under Training curves
    assert "Other figures" not in html


@pytest.mark.parametrize("seconds, text", [(5.2, "5 s"), (125, "2 min 05 s"), (3725, "1 h 02 min 05 s")])
def test_elapsed_time_reads_plainly(seconds, text):
    from xraygan.report.rundir import fmt_seconds

    assert fmt_seconds(seconds) == text
