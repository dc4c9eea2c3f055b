"""Committed files of every versioned on-disk format (tests/fixtures/formats/, rebuilt by
tests/fixtures/make_format_fixtures.py) load today; a newer, older or missing format_version is
refused with a one-line error naming the file and what to do (docs/formats.md). The experiment's
protocol.json (read on resume) is tested in tests/experiments/test_protocol_version.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from xraygan.cli import main
from xraygan.errors import XrayganError
from xraygan.utils.formats import FormatVersionError, check_format_version

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "formats"


@pytest.fixture(autouse=True)
def _from_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the fixtures name each other relative to the repository root


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIX / name, tmp_path / name))


def _edit_json(path: Path, **changes) -> None:
    doc = json.loads(path.read_text())
    for k, v in changes.items():
        doc.pop(k, None) if v is None else doc.update({k: v})
    path.write_text(json.dumps(doc))


def _refused(exc: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_every_current_format_version_has_its_fixture_and_the_folder_is_small():
    from xraygan.data.dataset import FORMAT_VERSION as DATASET
    from xraygan.experiments.summary import RESULTS_FORMAT_VERSION
    from xraygan.metrics.eval_store import EVAL_FORMAT_VERSION as EVALUATION
    from xraygan.metrics.eval_store import check_evaluation
    from xraygan.pretrained import FORMAT_VERSION as PRETRAINED
    from xraygan.report.rundir import RESULTS_FORMATS
    from xraygan.training.checkpoint import FORMAT_VERSION as CHECKPOINT
    from xraygan.training.rundir import RUN_FORMAT_VERSION
    from xraygan.utils.formats import GENERATED_FORMAT_VERSION as GENERATED
    from xraygan.utils.formats import check_generated_set

    # a bumped format_version needs a fixture of the new format (make_format_fixtures.py) beside the old ones
    assert json.loads((FIX / f"prepared-v{DATASET}" / "dataset.json").read_text())["format_version"] == DATASET
    for v in range(1, RUN_FORMAT_VERSION + 1):
        assert yaml.safe_load((FIX / f"run-v{v}" / "config.yaml").read_text())["format_version"] == v
    assert RESULTS_FORMATS == tuple(range(1, RESULTS_FORMAT_VERSION + 1))  # the report shows every results format
    for v in RESULTS_FORMATS:
        assert json.loads((FIX / f"experiment-v{v}" / "results.json").read_text())["format_version"] == v
    assert torch.load(FIX / "run-v2" / "checkpoints" / "latest.pt", weights_only=True)["format_version"] == CHECKPOINT
    assert torch.load(FIX / "pretrained-v1" / "tiny.pt", weights_only=True)["format_version"] == PRETRAINED
    for v in range(1, GENERATED + 1):  # format 1: generated/ and its evaluation; a later one: generated-vN/
        name = "generated" if v == 1 else f"generated-v{v}"
        assert check_generated_set(FIX / name) == v
    for v in range(1, EVALUATION + 1):
        path = FIX / ("generated.eval-random.json" if v == 1 else f"generated-v{v}.eval-random.json")
        assert check_evaluation(path, json.loads(path.read_text())) == v
    total = sum(p.stat().st_size for p in FIX.rglob("*") if p.is_file())
    assert total < 300 * 1024, f"tests/fixtures/formats holds {total} bytes; keep it under 300 KB"


def test_the_version_rule():
    assert check_format_version("f", 2, what="x", current=2, oldest=1, rerun="redo") == 2
    assert check_format_version("f", 1, what="x", current=2, oldest=1, rerun="redo") == 1
    for bad, cls, word in ((3, FormatVersionError, "newer"), (0, FormatVersionError, "older"), (None, FormatVersionError, "without"),
                           ("2", XrayganError, "damaged"), (True, XrayganError, "damaged"), (2.0, XrayganError, "damaged")):
        with pytest.raises(cls) as e:
            check_format_version("dir/f.json", bad, what="x", current=2, oldest=1, rerun="redo it")
        _refused(e, Path("dir/f.json"), word, "upgrade xraygan" if word == "newer" else "redo it")


# --- prepared dataset ----------------------------------------------------------------------------
def test_prepared_dataset_v1_loads_and_other_versions_are_refused(tmp_path, capsys):
    from xraygan.data.dataset import PreparedDataset

    ds = PreparedDataset.open(FIX / "prepared-v1")
    assert len(ds) == 8 and ds.classes == ["NORMAL", "PNEUMONIA"] and ds.size == 16
    prep = _copy("prepared-v1", tmp_path)
    meta = prep / "dataset.json"
    for version, words in ((2, ("newer", "upgrade xraygan")), (0, ("older", "xraygan prepare")), (None, ("without", "xraygan prepare"))):
        _edit_json(meta, format_version=version)
        with pytest.raises(FormatVersionError) as e:
            PreparedDataset.open(prep)
        _refused(e, meta, *words)
    _edit_json(meta, format_version=2)  # through the command line: exit 1, one line naming the file, nothing written
    assert main(["train", str(prep), "--out", str(tmp_path / "run"), "--steps", "1", "--device", "cpu", "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(meta) in err and "upgrade xraygan" in err
    assert not (tmp_path / "run").exists()


# --- run folder: config.yaml (formats 1 and 2) and checkpoint (format 1) -------------------------
def test_run_v2_loads_samples_and_reports():
    from xraygan.report.html import render_report
    from xraygan.run import Run

    run = Run.open(FIX / "run-v2")
    assert run.config["format_version"] == 2 and run.options.model == "dcgan" and run.options.lr_g == 2e-4
    a = run.sample(4, seed=1, device="cpu")
    assert a.shape == (4, 1, 16, 16) and torch.equal(a, run.sample(4, seed=1, device="cpu"))
    assert [r["step"] for r in run.metrics if "loss_d" in r] == [1, 2]
    assert run.dataset_dir == Path("tests/fixtures/formats/prepared-v1")
    assert list(run.evaluations()) == ["step_00000002_random_generated"]  # evaluate recorded the generated set here
    html = render_report(FIX / "run-v2")
    assert "Evaluation tables: not available" not in html and "step_00000002_random_generated" in html


def test_run_v1_config_is_migrated_and_fed_back():
    from xraygan.report.rundir import load_run
    from xraygan.run import Run
    from xraygan.training.config import config_from_options

    doc = Run(FIX / "run-v1").config
    assert doc["format_version"] == 1 and doc["options"]["lr_g"] == 2e-4 and doc["model"] == "stylegan2"
    cfg = config_from_options(doc)  # format 1 wrote DCGAN's optimizer defaults for StyleGAN2: read back as unset
    assert cfg.model == "stylegan2" and cfg.lr_g is None and cfg.lr_d is None and cfg.beta1 is None
    assert load_run(FIX / "run-v1").config["format_version"] == 1


def test_run_config_fed_back_as_config(tmp_path, capsys):
    assert main(["train", "--config", str(FIX / "run-v1" / "config.yaml"), "--out", str(tmp_path / "new"), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"] == "stylegan2" and printed["lr_g"] is None and printed["model_option"] == {"mapping_layers": 2, "channel_base": 64, "channel_max": 8}
    future = tmp_path / "config.yaml"
    future.write_text((FIX / "run-v2" / "config.yaml").read_text().replace("format_version: 2", "format_version: 3"))
    assert main(["train", "--config", str(future), "--out", str(tmp_path / "new"), "--print-config"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(future) in err and "upgrade xraygan" in err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("version, words", [(3, ("newer", "upgrade xraygan")), (0, ("older", "xraygan train")),
                                            (None, ("without", "xraygan train"))])
def test_run_config_of_another_version_is_refused_everywhere(tmp_path, capsys, version, words):
    from xraygan.report.rundir import load_run
    from xraygan.run import Run

    run = _copy("run-v2", tmp_path)
    cfg = run / "config.yaml"
    doc = yaml.safe_load(cfg.read_text())
    doc.pop("format_version") if version is None else doc.update(format_version=version)
    cfg.write_text(yaml.safe_dump(doc))
    for read in (lambda: Run(run).config, lambda: Run(run).sample(1, device="cpu"), lambda: load_run(run)):
        with pytest.raises(FormatVersionError) as e:
            read()
        _refused(e, cfg, *words)
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(cfg) in err and not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("version, words", [(2, ("newer", "upgrade xraygan")), (0, ("older", "another checkpoint")),
                                            (None, ("without", "another checkpoint"))])
def test_checkpoint_of_another_version_is_refused(tmp_path, version, words):
    from xraygan.training.checkpoint import load_checkpoint

    state = load_checkpoint(FIX / "run-v2" / "checkpoints" / "latest.pt")
    assert state["step"] == 2 and state["classes"] == ["NORMAL", "PNEUMONIA"]
    state.pop("format_version") if version is None else state.update(format_version=version)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(FormatVersionError) as e:
        load_checkpoint(bad)
    _refused(e, bad, *words)


# --- pretrained model file (format 1) ------------------------------------------------------------
def test_pretrained_v1_loads_and_a_newer_one_is_refused(tmp_path):
    from xraygan.pretrained import load_pretrained
    from xraygan.run import Run

    path = FIX / "pretrained-v1" / "tiny.pt"
    run = Run.pretrained(path)
    assert run.config["size"] == 16 and run.config["description"] == "16-px format fixture"
    assert torch.equal(run.sample(3, seed=2, device="cpu"), load_pretrained(path, "cpu").sample(3, seed=2))
    state = torch.load(path, weights_only=True)
    state["format_version"] = 2
    torch.save(state, tmp_path / "new.pt")
    with pytest.raises(FormatVersionError) as e:
        Run.pretrained(tmp_path / "new.pt").config
    _refused(e, tmp_path / "new.pt", "newer", "upgrade xraygan")


# --- experiment results.json (formats 1 to 3) -------------------------------------------------
def test_results_of_every_format_are_reported():
    from xraygan.report.html import render_report
    from xraygan.report.rundir import RESULTS_FORMATS, load_run

    for v in RESULTS_FORMATS:
        info = load_run(FIX / f"experiment-v{v}")
        assert info.results["format_version"] == v and not info.problems
        assert "Experiment results: not available" not in render_report(FIX / f"experiment-v{v}")
    assert "no detectable difference" in render_report(FIX / "experiment-v1")


@pytest.mark.parametrize("version, words", [(4, ("newer", "upgrade xraygan")), (0, ("older", "xraygan experiment")),
                                            (None, ("without", "xraygan experiment"))])
def test_results_of_another_version_are_refused(tmp_path, version, words):
    from xraygan.report.rundir import load_run

    exp = _copy("experiment-v3", tmp_path)
    _edit_json(exp / "results.json", format_version=version)
    with pytest.raises(FormatVersionError) as e:
        load_run(exp)
    _refused(e, exp / "results.json", *words)


# --- generated set (format 1, in its .xraygan marker) and its evaluation JSON (format 1) ---------
def test_generated_set_names_its_run_and_its_evaluation_is_read():
    from xraygan.metrics.evaluate import check_evaluation, generated_from
    from xraygan.report.rundir import eval_rows, load_run
    from xraygan.utils.formats import check_generated_set
    from xraygan.utils.fs import output_kind

    assert output_kind(FIX / "generated") == "generated"
    assert check_generated_set(FIX / "generated") == 1  # committed before the marker carried a version: format 1
    src = generated_from(FIX / "generated")
    assert src["path"] == "tests/fixtures/formats/run-v2" and src["step"] == 2
    path = FIX / "generated.eval-random.json"
    for data in (json.loads(path.read_text()), load_run(FIX / "run-v2").evals["step_00000002_random_generated"]):
        assert check_evaluation(path, data) == 1
        legacy = {k: v for k, v in data.items() if k not in ("format", "format_version")}
        assert check_evaluation(path, legacy) == 1  # written before evaluations carried a version: format 1
        rows = dict((m, (v, f)) for m, v, f in eval_rows(data))
        assert "overall/fd" in rows and all(isinstance(x, float) for x in rows["overall/fd"])


def _stamp(folder: Path, **changes) -> Path:
    marker = folder / ".xraygan"
    _edit_json(marker, **changes)
    return marker


def test_generated_set_of_a_newer_format_is_refused_by_every_reader(tmp_path, capsys):
    from xraygan.data.sources import open_image_set
    from xraygan.metrics.evaluate import generated_from
    from xraygan.utils.formats import GENERATED_FORMAT, GENERATED_FORMAT_VERSION

    gen = _copy("generated", tmp_path)
    marker = _stamp(gen, format=None, format_version=None)  # as committed: written before sets carried a version
    unversioned = open_image_set(gen)  # read as format 1
    assert len(unversioned.pixels) == 4 and unversioned.classes == ["NORMAL", "PNEUMONIA"]
    _stamp(gen, format=GENERATED_FORMAT, format_version=GENERATED_FORMAT_VERSION)
    assert np.array_equal(open_image_set(gen).pixels, unversioned.pixels) and generated_from(gen)["step"] == 2
    _stamp(gen, format_version=GENERATED_FORMAT_VERSION + 1)
    for read in (lambda: open_image_set(gen), lambda: generated_from(gen)):
        with pytest.raises(FormatVersionError) as e:
            read()
        _refused(e, marker, "newer", "upgrade xraygan")
    _stamp(gen, format_version=None)  # a format without a version: refused, not guessed
    with pytest.raises(FormatVersionError) as e:
        open_image_set(gen)
    _refused(e, marker, "without", "xraygan generate")
    _stamp(gen, format="xraygan-run", format_version=1)
    with pytest.raises(XrayganError) as e:
        open_image_set(gen)
    _refused(e, marker, "damaged", "xraygan generate")
    _stamp(gen, format=GENERATED_FORMAT, format_version=GENERATED_FORMAT_VERSION + 1)
    out = tmp_path / "e.json"  # through the command line: exit 1, one line naming the marker, nothing written
    assert main(["evaluate", "--real", str(FIX / "prepared-v1"), "--fake", str(gen), "--features", "random", "--n", "4",
                 "--no-cache", "--device", "cpu", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(marker) in err and "upgrade xraygan" in err
    assert not out.exists()


def test_generate_writes_the_set_format_and_evaluate_the_evaluation_format(tmp_path):
    """generate -> evaluate -> report on a copy of the 16-px run: every file carries today's formats,
    and manifest.csv stays a plain CSV (header as before, pandas and csv read it)."""
    import csv

    import pandas as pd

    from xraygan.metrics.evaluate import EVAL_FORMAT, EVAL_FORMAT_VERSION, check_evaluation
    from xraygan.report.rundir import load_run
    from xraygan.run import Run
    from xraygan.utils.formats import GENERATED_FORMAT, GENERATED_FORMAT_VERSION, check_generated_set
    from xraygan.utils.ownership import GENERATED_MANIFEST_HEADER

    run, gen, out = _copy("run-v2", tmp_path), tmp_path / "gen", tmp_path / "e.json"
    shutil.rmtree(run / "eval")
    assert main(["generate", str(run), "--n", "4", "--out", str(gen), "--device", "cpu", "-q"]) == 0
    marker = json.loads((gen / ".xraygan").read_text())
    assert marker == {**marker, "kind": "generated", "format": GENERATED_FORMAT, "format_version": GENERATED_FORMAT_VERSION}
    assert check_generated_set(gen) == GENERATED_FORMAT_VERSION
    assert (gen / "manifest.csv").read_text().splitlines()[0] == GENERATED_MANIFEST_HEADER
    df = pd.read_csv(gen / "manifest.csv")
    with open(gen / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(df.columns) == GENERATED_MANIFEST_HEADER.split(",") and len(df) == len(rows) == 4
    assert main(["evaluate", "--real", str(FIX / "prepared-v1"), "--fake", str(gen), "--features", "random", "--n", "4",
                 "--no-cache", "--device", "cpu", "--out", str(out), "-q"]) == 0
    res = json.loads(out.read_text())
    assert (res["format"], res["format_version"]) == (EVAL_FORMAT, EVAL_FORMAT_VERSION) and check_evaluation(out, res) == 1
    stored = Run(run).evaluations()  # also recorded in the generating run, read back through the version check
    assert list(stored) == ["step_00000002_random_generated"] and stored["step_00000002_random_generated"]["format_version"] == 1
    assert not load_run(run).problems


@pytest.mark.parametrize("changes, cls, words", [
    (dict(format="xraygan-evaluation", format_version=2), FormatVersionError, ("newer", "upgrade xraygan")),
    (dict(format="xraygan-evaluation", format_version=0), FormatVersionError, ("older", "xraygan evaluate")),
    (dict(format="xraygan-evaluation"), FormatVersionError, ("without", "xraygan evaluate")),
    (dict(format="xraygan-experiment-results", format_version=1), XrayganError, ("not an xraygan evaluation", "xraygan evaluate")),
])
def test_evaluation_of_another_format_is_refused_and_the_report_says_so(tmp_path, changes, cls, words):
    from xraygan.report.html import render_report
    from xraygan.report.rundir import load_run
    from xraygan.run import Run

    run = _copy("run-v2", tmp_path)
    path = run / "eval" / "step_00000002_random_generated.json"
    _edit_json(path, **changes)
    with pytest.raises(cls) as e:
        Run(run).evaluations()
    _refused(e, path, *words)
    info = load_run(run)  # the report reads the rest of the run and names the file it skipped
    assert info.evals == {} and len(info.problems) == 1 and path.name in info.problems[0] and words[0] in info.problems[0]
    assert "Problems reading the folder" in render_report(run)
