"""MODEL_CARD.md starts with Hugging Face-style YAML front matter that yaml.safe_load reads,
with data-derived strings (labels, dataset names, licences) quoted so they stay values."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.report_fixtures import make_run
from xraygan.report.model_card import hf_licence, write_model_card, yaml_front_matter


def split_card(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_front_matter_fields(tmp_path):
    text = write_model_card(make_run(tmp_path / "run1")).read_text()
    meta, body = split_card(text)
    assert body.startswith("# Model card: xraygan run `run1`")
    assert meta["license"] == "cc-by-4.0" and meta["library_name"] == "pytorch"
    assert meta["pipeline_tag"] == "unconditional-image-generation"
    assert {"xraygan", "gan", "dcgan", "medical-imaging", "x-ray", "synthetic-data", "not-for-clinical-use"} <= set(meta["tags"])
    assert meta["datasets"] == ["chest-xray-pneumonia"]
    assert "fd_xray" in meta["metrics"] and "precision" in meta["metrics"]
    (entry,) = meta["model-index"]
    assert entry["name"] == "run1"
    metrics = {m["name"]: m["value"] for m in entry["results"][0]["metrics"]}
    assert metrics["fd_xray during training (last)"] == 7.5
    assert metrics["fd (step_00000040_xray, floor 3.25)"] == 12.5
    assert all(isinstance(m["value"], float) and set(m) == {"type", "name", "value"} for m in entry["results"][0]["metrics"])
    assert meta["xraygan"]["classes"] == ["NORMAL", "PNEUMONIA"] and meta["xraygan"]["conditional"] is True
    assert text.split("\n---\n", 1)[0].isascii()


def test_hostile_labels_and_sources_stay_quoted_values(tmp_path):
    run = make_run(tmp_path / "run2", with_eval=False)
    ds_path = run.parent / "run2-prepared" / "dataset.json"
    info = json.loads(ds_path.read_text())
    labels = ["<script>alert(1)</script>", "*bold* | [x](javascript:alert(1))", "a\n---\nlicense: mit", "'q' \"d\" #c",
              "yes", "null", "1.5", "Pneumonie: \u00e9t\u00e9 \U0001F600", "_u_ ~s~ {x: 1} &amp;"]
    info["classes"] = labels
    info["source"] = "/secret/hospital/*ward* <7>/labels.csv"
    info["license"] = "Custom: ask <admin@example.org>"
    ds_path.write_text(json.dumps(info))
    text = write_model_card(run).read_text()
    head = text.split("\n---\n", 1)[0]
    meta, body = split_card(text)
    assert meta["xraygan"]["classes"] == labels  # exact round trip, types kept (no bool/None/float)
    assert meta["license"] == "other" and meta["license_name"] == "Custom: ask <admin@example.org>"
    assert meta["datasets"] == ["*ward* <7>"]  # the folder's name, never the whole path
    assert "/secret/hospital" not in head
    # nothing in the front matter is markup or can end it early
    for bad in ("<", ">", "&", "*", "|", "[", "`"):
        assert bad not in head, bad
    assert head.count("\n---") == 0 and head.isascii()
    markdown = pytest.importorskip("markdown")
    html = markdown.markdown(text, extensions=["tables", "fenced_code"])
    assert "<script" not in html and "<em>bold" not in html and "<em>ward" not in html


@pytest.mark.parametrize("value", ["plain", "with space: colon", "<x>", "a_b", "_a_", "\\back\\slash", "tab\tand\rcr",
                                   "\u2028line", "\x85", "\ufeffbom", "quote\"s", "", " lead", "-dash", "@at", "%pc"])
def test_yaml_front_matter_round_trips_any_string(value):
    data = {"k": value, "list": [value, 1, True, None, 2.5], "nested": {"v": value}}
    text = yaml_front_matter(data)
    assert text.startswith("---\n") and text.endswith("---\n") and text.isascii()
    assert yaml.safe_load(text[4:-4]) == data


def test_licence_ids():
    assert hf_licence("CC BY 4.0") == {"license": "cc-by-4.0"}
    assert hf_licence("unknown (check the data source's terms)") == {"license": "unknown"}
    assert hf_licence("MIT") == {"license": "mit"}
    assert hf_licence("my terms") == {"license": "other", "license_name": "my terms"}
