"""`evaluate --fake` reads DICOM folders (what `generate --format dicom` writes), and an evaluation
of a generated set is also recorded in the run that generated it (its manifest names the run)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.helpers import make_prepared
from xraygan.cli import main

pytest.importorskip("pydicom")

EVAL = ["--n", "20", "--kid-subsets", "3", "--ssim-pairs", "20", "--no-cache", "--device", "cpu", "--features", "random"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from xraygan.workflow import train

    tmp = tmp_path_factory.mktemp("evdicom")
    data = make_prepared(tmp / "data", size=16, n_per_class=30)
    cfg = {"data": str(data), "out": str(tmp / "run"), "model": "dcgan", "steps": 2, "batch": 8, "log_every": 1,
           "sample_every": 100, "ckpt_every": 100, "device": "cpu", "width": 8, "latent_dim": 16, "seed": 0}
    return tmp, data, train(cfg)


def _generate(run, out, fmt):
    assert main(["generate", str(run), "--n", "12", "--out", str(out), "--format", fmt, "--device", "cpu"]) == 0
    return out


def test_open_image_set_reads_generated_dicom_like_png(tiny_run):
    from xraygan.data.sources import open_image_set

    tmp, _, run = tiny_run
    png = open_image_set(_generate(run, tmp / "gen_png", "png"))
    dcm = open_image_set(_generate(run, tmp / "gen_dcm", "dicom"))
    assert len(dcm) == len(png) == 12 and dcm.classes == png.classes
    assert all(f.endswith(".dcm") for f in dcm.files)
    np.testing.assert_array_equal(dcm.pixels, png.pixels)  # same seeds, lossless 8-bit DICOM
    np.testing.assert_array_equal(dcm.labels, png.labels)


def test_evaluate_fake_dicom_is_recorded_in_the_run_and_shown_by_report(tiny_run, capsys):
    tmp, data, run = tiny_run
    gen = tmp / "gen_dcm" if (tmp / "gen_dcm").is_dir() else _generate(run, tmp / "gen_dcm", "dicom")
    shutil.rmtree(run / "eval", ignore_errors=True)
    assert main(["evaluate", "--fake", str(gen), "--real", str(data), *EVAL]) == 0
    out = capsys.readouterr().out
    stored = sorted((run / "eval").glob("*_generated.json"))
    assert [p.name for p in stored] == ["step_00000002_random_generated.json"], out
    res = json.loads(stored[0].read_text())
    assert res["generated_from"]["step"] == 2 and res["fake"] == str(gen)
    assert (gen.parent / f"{gen.name}.eval-random.json").is_file()  # still beside the images too
    assert f"wrote {stored[0]}" in out
    report = tmp / "report.html"
    assert main(["report", str(run), "--out", str(report)]) == 0
    html = report.read_text()
    assert "Evaluation tables: not available" not in html and "random_generated" in html


def test_evaluate_fake_whose_run_is_gone_warns_and_succeeds(tiny_run, tmp_path, capsys, caplog):
    tmp, data, run = tiny_run
    gen = _generate(run, tmp_path / "gen", "png")
    manifest = (gen / "manifest.csv").read_text()
    (gen / "manifest.csv").write_text(manifest.replace(str(run.resolve()), str(tmp_path / "gone")))
    out_json = tmp_path / "e.json"
    assert main(["evaluate", "--fake", str(gen), "--real", str(data), "--out", str(out_json), *EVAL]) == 0
    res = json.loads(out_json.read_text())
    assert any("not recorded in the generating run" in w for w in res["warnings"])
    assert not (tmp_path / "gone").exists()
    # a folder that exists but is not an xraygan run is left alone
    (tmp_path / "gone").mkdir()
    assert main(["evaluate", "--fake", str(gen), "--real", str(data), "--out", str(out_json), "--force", *EVAL]) == 0
    assert list((tmp_path / "gone").iterdir()) == []
