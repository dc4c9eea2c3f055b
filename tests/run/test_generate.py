"""`xraygan generate` and the Sampler API: determinism, prefix property, labels, refusal, metadata."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import make_prepared
from xraygan.cli import main
from xraygan.generate import load_generator, to_uint8


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gen")
    prep = make_prepared(root / "prepared", size=16, n_per_class=16)
    out = {}
    for name, extra in {"cond": ["--conditional"], "normal": ["--label", "NORMAL"], "uncond": ["--unconditional"]}.items():
        out[name] = root / name
        assert main(["train", str(prep), "--out", str(out[name]), "--steps", "3", "--batch", "8", "--width", "8",
                     "--latent-dim", "16", "--device", "cpu", "-q", *extra]) == 0
    return out


def _manifest(d: Path) -> list[dict]:
    with open(d / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _pixels(d: Path, rows: list[dict]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(d / r["file"])) for r in rows])


def test_generate_layout_manifest_and_metadata(runs, tmp_path: Path) -> None:
    out = tmp_path / "syn"
    assert main(["generate", str(runs["cond"]), "--n", "5", "--out", str(out), "--seed", "3"]) == 0
    rows = _manifest(out)
    assert list(rows[0]) == ["file", "label", "seed", "run", "checkpoint"]
    assert [r["label"] for r in rows] == ["NORMAL", "PNEUMONIA", "NORMAL", "PNEUMONIA", "NORMAL"]  # equal shares
    assert sorted(p.name for p in out.iterdir()) == [".xraygan", "NORMAL", "PNEUMONIA", "manifest.csv"]  # + the output marker
    img = Image.open(out / rows[0]["file"])
    assert img.mode == "L" and img.size == (16, 16)
    assert img.text["synthetic"] == "true" and img.text["run"] == str(runs["cond"].resolve())
    assert len({r["seed"] for r in rows}) == 5
    assert not list(tmp_path.glob(".*partial"))  # staging folder renamed into place


def test_deterministic_and_prefix_property(runs, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d, n in ((a, 37), (b, 100), (c, 37)):
        assert main(["generate", str(runs["cond"]), "--n", str(n), "--out", str(d), "--batch", "16"]) == 0
    ra, rb, rc = _manifest(a), _manifest(b), _manifest(c)
    assert ra == rb[:37] and ra == rc
    pa, pb, pc = _pixels(a, ra), _pixels(b, rb[:37]), _pixels(c, rc)
    assert np.array_equal(pa, pc)
    assert np.abs(pa.astype(int) - pb.astype(int)).max() <= 1  # same latents; batch composition may round differently
    assert pa.std() > 0


def test_other_seed_gives_other_images(runs, tmp_path: Path) -> None:
    s = load_generator(runs["cond"], device="cpu")
    assert not torch.equal(s.sample(4, seed=0), s.sample(4, seed=1))


def test_sampler_api_matches_the_files(runs, tmp_path: Path) -> None:
    out = tmp_path / "syn"
    assert main(["generate", str(runs["cond"]), "--n", "6", "--out", str(out), "--label", "PNEUMONIA"]) == 0
    rows = _manifest(out)
    assert {r["label"] for r in rows} == {"PNEUMONIA"} and sorted(p.name for p in out.iterdir()) == [".xraygan", "PNEUMONIA", "manifest.csv"]
    s = load_generator(runs["cond"], "latest", device="cpu")
    x = s.sample(6, labels="PNEUMONIA", seed=0)
    assert x.shape == (6, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(to_uint8(x), _pixels(out, rows))
    y = s.sample(6, labels=[0, 0, 0, 1, 1, 1], seed=0)
    assert torch.equal(y[3:], x[3:]) and not torch.equal(y[:3], x[:3])  # labels condition the images


def test_refuses_non_empty_output_without_force(runs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "syn"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["generate", str(runs["cond"]), "--n", "2", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and (out / "keep.txt").is_file()
    # --force replaces only a folder xraygan wrote (issue 15): never this one
    assert main(["generate", str(runs["cond"]), "--n", "2", "--out", str(out), "--force"]) != 0
    assert "not written by xraygan" in capsys.readouterr().err and (out / "keep.txt").is_file()
    ours = tmp_path / "syn2"
    assert main(["generate", str(runs["cond"]), "--n", "3", "--out", str(ours)]) == 0
    assert main(["generate", str(runs["cond"]), "--n", "2", "--out", str(ours), "--force"]) == 0 and len(_manifest(ours)) == 2


@pytest.mark.parametrize("run, label", [("cond", "COVID"), ("normal", "PNEUMONIA")])
def test_unknown_label_is_a_clear_error(runs, tmp_path: Path, capsys, run: str, label: str) -> None:
    out = tmp_path / "syn"
    assert main(["generate", str(runs[run]), "--n", "2", "--out", str(out), "--label", label]) == 1  # 1: the run tells
    err = capsys.readouterr().err
    assert f"unknown label" in err and "NORMAL" in err
    assert not out.exists()


def test_single_label_and_unconditional_runs(runs, tmp_path: Path) -> None:
    for run, folder in (("normal", "NORMAL"), ("uncond", "all")):
        out = tmp_path / run
        assert main(["generate", str(runs[run]), "--n", "3", "--out", str(out), "--truncation", "0.7"]) == 0
        assert {r["label"] for r in _manifest(out)} == {folder}


def test_checkpoint_choices(runs, tmp_path: Path, capsys) -> None:
    assert main(["generate", str(runs["cond"]), "--n", "1", "--out", str(tmp_path / "a"), "--checkpoint", "best"]) == 1
    assert "--eval-every" in capsys.readouterr().err
    ck = runs["cond"] / "checkpoints" / "latest.pt"
    assert main(["generate", str(runs["cond"]), "--n", "1", "--out", str(tmp_path / "b"), "--checkpoint", str(ck)]) == 0
    assert _manifest(tmp_path / "b")[0]["checkpoint"] == str(ck.resolve())
    (tmp_path / "notarun").mkdir()
    assert main(["generate", str(tmp_path / "notarun"), "--n", "1", "--out", str(tmp_path / "c")]) == 1
    assert "not an xraygan run" in capsys.readouterr().err


def test_public_api_functions_are_callable_after_module_import(runs, tmp_path: Path) -> None:
    import xraygan
    import xraygan.demo
    import xraygan.generate  # binds the package attribute to the module; it must stay callable

    out = xraygan.generate(runs["cond"], 2, tmp_path / "syn", seed=5)
    assert len(_manifest(out)) == 2 and callable(xraygan.demo)
    assert xraygan.load_generator(runs["cond"]).sample(1).shape == (1, 1, 16, 16)
