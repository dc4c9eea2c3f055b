"""The metric registry (issue 17 item 3): one place says which way each score is better, and the
evaluation table, checkpoint selection, report and model card read it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from xraygan.metrics.registry import METRICS, Metric, better, metric_of

SRC = Path(__file__).resolve().parents[2] / "src" / "xraygan"


def test_every_entry_is_complete():
    for key, m in METRICS.items():
        assert m.key == key and m.label and m.floor and m.inputs and m.citation
        assert m.direction in ("lower", "higher", "target")
        assert m.phrase in ("lower is better", "higher is better") or m.phrase.startswith("best ")


def test_directions_and_lookup_by_path():
    assert better("fd") == "lower" and better("per_class/NORMAL/fd") == "lower" and better("fid") == "lower"
    assert better("per_class/PNEUMONIA/recall") == "higher" and better("density") == "~1"
    assert better("class_consistency/NORMAL") == "higher"
    assert better("memorisation/pixel/fake_below_share") == "lower"
    assert metric_of("pc_recall_NORMAL") is METRICS["recall"] and metric_of("pc_pixel_std_a_b") is METRICS["pixel_std"]
    assert better("loss_g") == "" and metric_of("nonsense") is None


def test_improves_follows_the_direction():
    assert METRICS["fd"].improves(1.0, 2.0) and not METRICS["fd"].improves(2.0, 1.0)
    assert METRICS["recall"].improves(0.9, 0.5)
    assert METRICS["select_score"].improves(3.0, float("inf"))
    with pytest.raises(ValueError):
        METRICS["density"].improves(1.0, 2.0)
    with pytest.raises(ValueError):
        Metric("x", "x", "sideways", "f", ("real",), "c")


def test_evaluate_table_and_reports_read_the_registry():
    from xraygan.commands.evaluate import ROWS
    from xraygan.report.rundir import better as report_better

    assert {k: b for k, _, b in ROWS} == {k: METRICS[k].better for k, _, _ in ROWS}
    assert [lab for _, lab, _ in ROWS] == [METRICS[k].label for k, _, _ in ROWS]
    assert report_better("per_class/NORMAL/pixel_std") == "near real"


def test_no_direction_restated_and_no_control_flow_on_message_text():
    restated = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        text = path.read_text(encoding="utf-8")
        if rel != "metrics/registry.py" and re.search(r"\(lower is better\)|BETTER = \{", text):
            restated.append(rel)
        if re.search(r"if [^\n]*[\"'][^\"'\n]+[\"'] (not )?in str\(e", text):
            restated.append(rel + " (matches an error message)")
    assert not restated, restated


def test_evaluate_has_no_built_in_class_names():
    import ast

    tree = ast.parse((SRC / "metrics" / "evaluate.py").read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    strings = [n.value.lower() for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]
    assert not [s for s in strings if re.search(r"\b(normal|pneumonia|bacteria|virus)\b", s)]
