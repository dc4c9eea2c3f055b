"""MODEL_CARD.md from a run folder written the way the run-dir contract says."""
from __future__ import annotations

import re

from tests.report_fixtures import make_run
from xraygan.report.model_card import write_model_card


def test_model_card_contents(tmp_path):
    run = make_run(tmp_path / "run1")
    path = write_model_card(run)
    assert path == run / "MODEL_CARD.md"
    text = path.read_text()
    assert text.split("\n---\n", 1)[1].startswith("# Model card: xraygan run `run1`")  # after the YAML front matter
    for section in ("## Model details", "## Training data", "## Metrics", "## Intended use", "## Out of scope", "## Known limits", "## Config"):
        assert section in text, section
    # provenance and licence of the shared data
    assert "Kermany" in text and "CC BY 4.0" in text and "doi:10.17632/rscbjbr9sj.2" in text
    assert "NORMAL, PNEUMONIA" in text
    assert re.search(r"\| train \| \d+ \| \d+ \|", text)  # counts per split
    # FD during training: last (step 40: 100/40+5 = 7.5) and best (step 30: 3.333)
    assert "| fd_xray | 7.5 | 40 | 3.333 | 30 | 1.5 |" in text  # with the floor logged by the eval hook
    assert "fd_xray_best |" not in text and "fd_xray_floor |" not in text and "fd_xray_n |" not in text
    # evaluation with floors
    # evaluation with floors: the newest file per extractor (step 40, not step 20)
    assert "eval/step_00000040_xray.json" in text and "step_00000020_xray" not in text
    assert "| overall/fd | 12.5 | 3.25 | lower |" in text and "| overall/precision | 0.61 | 0.8 | higher |" in text
    assert "| per_class/NORMAL/fd | 15 | 4 | lower |" in text and "| class_consistency/NORMAL | 0.7 | 0.9 | higher |" in text
    assert "| memorisation/pixel/fake_median_nn | 4.2 | 5.1 |" in text  # held-out reals as the floor
    assert "not for diagnosis" in text.lower()
    assert "conditional: true" in text and "latest.pt" in text and "| steps | 40 |" in text and "| split | train |" in text
    assert "| label |" not in text  # unset options are left out


def test_model_card_missing_parts_say_so(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss_d": 1.0}\n{"step": 2, "loss')  # truncated last line
    text = write_model_card(run).read_text()
    assert "Training data: not recorded" in text
    assert "Metrics: not recorded" in text
    assert "(no config.yaml)" in text
    assert "steps reached (last logged): 1" in text


def test_unknown_source_licence_is_not_guessed(tmp_path):
    import json

    run = make_run(tmp_path / "run2", with_eval=False)
    ds = run.parent / "run2-prepared" / "dataset.json"
    info = json.loads(ds.read_text())
    info["source"] = "/data/my-hospital"
    ds.write_text(json.dumps(info))
    text = write_model_card(run).read_text()
    assert "CC BY 4.0" not in text and "licence: unknown" in text
