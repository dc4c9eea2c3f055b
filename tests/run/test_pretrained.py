"""Shipped pretrained models: `xraygan pretrained`, `generate --pretrained`, the export and its fidelity."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import make_prepared
from xraygan.cli import main
from xraygan.generate import load_generator, to_uint8
from xraygan.pretrained import PRETRAINED_DIR, available, export_pretrained, load_pretrained

SHIPPED = "pediatric-cxr-64"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_pretrained.py"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A conditional 16-px run trained for 4 steps (its EMA generator differs from G)."""
    root = tmp_path_factory.mktemp("pre")
    prep = make_prepared(root / "prepared", size=16, n_per_class=16)
    assert main(["train", str(prep), "--out", str(root / "run"), "--steps", "4", "--batch", "8", "--width", "8",
                 "--latent-dim", "16", "--conditional", "--device", "cpu", "-q"]) == 0
    return root / "run"


def _manifest(d: Path) -> list[dict]:
    with open(d / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_shipped_file_is_small_and_weights_only(capsys) -> None:
    path = PRETRAINED_DIR / f"{SHIPPED}.pt"
    assert path.stat().st_size < 10 * 1024 * 1024
    s = torch.load(path, map_location="cpu", weights_only=True)
    assert s["format"] == "xraygan-pretrained" and s["name"] == SHIPPED and s["size"] == 64
    assert s["classes"] == ["NORMAL", "PNEUMONIA"] and s["n_classes"] == 2 and s["ema"] is True
    assert not {"modules", "optimizers", "rng"} & set(s)  # sampling only
    assert any(k.endswith("running_var") for k in s["generator"])  # BatchNorm statistics travel with it
    card = (PRETRAINED_DIR / f"{SHIPPED}.md").read_text()
    assert "doi:10.17632/rscbjbr9sj.2" in card and "CC BY 4.0" in card and "Not for diagnosis" in card
    assert main(["pretrained"]) == 0
    out = capsys.readouterr().out
    assert SHIPPED in out and "NORMAL,PNEUMONIA" in out and "64px" in out and "MB" in out


def test_generate_pretrained_layout_determinism_labels(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d, seed in ((a, 1), (b, 1), (c, 2)):
        assert main(["generate", "--pretrained", SHIPPED, "--n", "6", "--out", str(d), "--seed", str(seed), "--device", "cpu"]) == 0
    rows = _manifest(a)
    assert sorted(p.name for p in a.iterdir()) == [".xraygan", "NORMAL", "PNEUMONIA", "manifest.csv"]  # + the output marker
    assert [r["label"] for r in rows] == ["NORMAL", "PNEUMONIA"] * 3
    assert {r["run"] for r in rows} == {f"pretrained:{SHIPPED}"}
    assert all(r["file"].startswith(r["label"] + "/") for r in rows)
    px = {d: np.stack([np.asarray(Image.open(d / r["file"])) for r in _manifest(d)]) for d in (a, b, c)}
    assert px[a].shape == (6, 64, 64) and px[a].std() > 5  # real images, not a constant
    assert np.array_equal(px[a], px[b]) and not np.array_equal(px[a], px[c])
    assert Image.open(a / rows[0]["file"]).text["run"] == f"pretrained:{SHIPPED}"


def test_generate_needs_exactly_one_source(tmp_path: Path, tiny_run: Path, capsys) -> None:
    assert main(["generate", "--n", "2", "--out", str(tmp_path / "x")]) == 2
    assert "--pretrained NAME" in capsys.readouterr().err
    assert main(["generate", str(tiny_run), "--pretrained", SHIPPED, "--n", "2", "--out", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["generate", "--pretrained", "no-such-model", "--n", "2", "--out", str(tmp_path / "x")]) == 1
    assert SHIPPED in capsys.readouterr().err
    assert main(["generate", "--pretrained", SHIPPED, "--checkpoint", "best", "--n", "2", "--out", str(tmp_path / "x")]) == 2
    assert "drop --checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("dtype, tol", [("float32", 0), ("float16", 2)])
def test_export_matches_the_run(tiny_run: Path, tmp_path: Path, dtype: str, tol: int) -> None:
    export_pretrained(tiny_run, tmp_path / "tiny.pt", checkpoint="latest", dtype=dtype, description="tiny")
    s = torch.load(tmp_path / "tiny.pt", weights_only=True)
    assert {v.dtype for v in s["generator"].values() if v.is_floating_point()} == {getattr(torch, dtype)}
    [info] = available(tmp_path)
    assert (info.name, info.size, info.classes, info.description) == ("tiny", 16, ["NORMAL", "PNEUMONIA"], "tiny")
    run = load_generator(tiny_run, "latest", "cpu")
    raw = load_generator(tiny_run, "latest", "cpu", ema=False)
    pre = load_pretrained("tiny", "cpu", directory=tmp_path)
    want, got = to_uint8(run.sample(24, seed=3)), to_uint8(pre.sample(24, seed=3))
    assert np.abs(want.astype(int) - got.astype(int)).max() <= tol
    assert not np.array_equal(to_uint8(raw.sample(24, seed=3)), got)  # the EMA generator was exported, not G
    assert pre.label_names == ["NORMAL", "PNEUMONIA"] and pre.step == run.step


def test_make_pretrained_script_writes_card(tiny_run: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_pretrained", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(tiny_run), "--checkpoint", "latest", "--name", "tiny-16", "--out-dir", str(tmp_path)]) == 0
    card = (tmp_path / "tiny-16.md").read_text()
    assert card.startswith("# tiny-16") and "doi:10.17632/rscbjbr9sj.2" in card and "| width | 8 |" in card
    assert "Evaluation" in card and "Not recorded" in card
    assert load_pretrained(tmp_path / "tiny-16.pt", "cpu").size == 16


def test_model_card_shows_per_class_figures_with_their_intervals(tmp_path: Path) -> None:
    """The card's evaluation section: per class n (patients), precision/recall/coverage with the
    patient-bootstrap interval, and the floors (issue 12 item 3)."""
    import json

    spec = importlib.util.spec_from_file_location("make_pretrained", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    m = lambda v, f: {"value": v, "floor": f}  # noqa: E731
    per = {"n": 227, "n_patients": 180, "fd": m(0.5, 0.03), "precision": m(0.96, 0.88), "recall": m(0.28, 0.92),
           "coverage": m(0.88, 0.98), "ci95": {"precision": [0.9, 0.99], "recall": [0.2, 0.35], "coverage": [0.8, 0.93]}}
    ev = {"overall": {"fd": m(0.05, 0.03), "precision": m(0.96, 0.88), "recall": m(0.4, 0.9)}, "n": 563,
          "features": {"name": "random"}, "per_class": {"NORMAL": per, "PNEUMONIA": {**per, "n": 336, "ci95": {}}}}
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(ev))
    text = mod._eval_section(f"independent space={path}")
    assert "| NORMAL | 227 (180) | 0.96 [0.9, 0.99] | 0.28 [0.2, 0.35] | 0.88 [0.8, 0.93] | 0.88 / 0.92 / 0.98 |" in text
    assert "| PNEUMONIA | 336 (180) | 0.96 | 0.28 | 0.88 |" in text and text.startswith("### independent space")
