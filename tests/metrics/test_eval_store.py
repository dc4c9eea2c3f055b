"""xraygan.metrics.eval_store on its own: library versions read without importing, the provenance
block, the run named by a generated folder's manifest (with its checkpoint's step), and where a
result is stored (``--out``, ``RUN/eval/``, the generating run; a run that is gone is a warning)."""
from __future__ import annotations

import calendar
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from xraygan.metrics.eval_store import _pairs_path, _store, generated_from, package_version, provenance

FIXTURE_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "formats" / "run-v2"


def _manifest(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "label", "run", "checkpoint"])
        w.writeheader()
        w.writerows(rows)
    return folder


def test_package_version_reads_files_without_importing(tmp_path, monkeypatch):
    assert package_version("numpy") == np.__version__ and package_version("torch") == torch.__version__
    assert package_version("no_such_package_xg") is None
    pkg = tmp_path / "xg_probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "version.py").write_text("__version__ = '1.2.3+cpu'\n")
    (tmp_path / "xg_probe_nover").mkdir()
    (tmp_path / "xg_probe_nover" / "__init__.py").write_text("")
    (tmp_path / "xg_probe_module.py").write_text("__version__ = '9'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert package_version("xg_probe_pkg") == "1.2.3+cpu" and "xg_probe_pkg" not in sys.modules
    assert package_version("xg_probe_nover") is None  # no version file, no installed distribution
    assert package_version("xg_probe_module") is None  # a plain module is no package


def test_provenance_names_the_extractor_and_versions():
    from xraygan.metrics.features import get_extractor

    ex = get_extractor("random")
    p = provenance(ex)
    assert p["features"] == ex.describe() and p["features"]["name"] == "random"
    assert p["versions"]["torch"] == torch.__version__ and p["versions"]["numpy"] == np.__version__
    assert p["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    import scipy

    assert p["versions"]["scipy"] == scipy.__version__
    created = calendar.timegm(time.strptime(p["created"], "%Y-%m-%dT%H:%M:%SZ"))  # UTC
    assert abs(created - time.time()) < 120


def test_generated_from_reads_the_manifest_and_the_checkpoint_step(tmp_path):
    ckpt = FIXTURE_RUN / "checkpoints" / "latest.pt"
    step = int(torch.load(ckpt, map_location="cpu", weights_only=False)["step"])
    one = _manifest(tmp_path / "one", [{"file": f"a/{i}.png", "label": "a", "run": "/runs/r1", "checkpoint": str(ckpt)} for i in range(3)])
    assert generated_from(one) == {"path": "/runs/r1", "checkpoint": str(ckpt), "step": step}
    gone = _manifest(tmp_path / "gone", [{"file": "a.png", "label": "a", "run": "/runs/r1", "checkpoint": str(tmp_path / "x.pt")}])
    assert generated_from(gone)["step"] is None
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    bad = _manifest(tmp_path / "bad", [{"file": "a.png", "label": "a", "run": "/runs/r1", "checkpoint": str(tmp_path / "bad.pt")}])
    assert generated_from(bad) == {"path": "/runs/r1", "checkpoint": str(tmp_path / "bad.pt"), "step": None}
    two_ckpts = _manifest(tmp_path / "two_ckpts", [{"file": "a.png", "label": "a", "run": "/r", "checkpoint": "x.pt"},
                                                   {"file": "b.png", "label": "a", "run": "/r", "checkpoint": "y.pt"}])
    assert generated_from(two_ckpts) == {"path": "/r", "checkpoint": "", "step": None}
    two_runs = _manifest(tmp_path / "two_runs", [{"file": "a.png", "label": "a", "run": "/r1", "checkpoint": ""},
                                                 {"file": "b.png", "label": "a", "run": "/r2", "checkpoint": ""}])
    no_run = _manifest(tmp_path / "no_run", [{"file": "a.png", "label": "a", "run": "", "checkpoint": ""}])
    assert generated_from(two_runs) is None and generated_from(no_run) is None
    assert generated_from(tmp_path / "no_manifest") is None
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / "manifest.csv").write_bytes(b"\xff\xfe\x00garbage")
    assert generated_from(tmp_path / "binary") is None


def _res(source=None):
    return {"features": {"name": "random"}, "warnings": [], "value": 1.5, **({"generated_from": source} if source else {})}


def test_store_writes_out_and_run_eval(tmp_path):
    out = tmp_path / "res" / "eval.json"
    out.parent.mkdir()
    res = _store(_res(), out, None, None)
    assert res["stored"] == [str(out)] and json.loads(out.read_text())["value"] == 1.5
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    res = _store(_res(), None, run, {"step": 7})
    path = run / "eval" / "step_00000007_random.json"
    assert res["stored"] == [str(path)] and json.loads(path.read_text())["features"] == {"name": "random"}
    assert _pairs_path(out, None, None) == tmp_path / "res" / "eval.pairs.png"
    assert _pairs_path(None, run, {"step": 7}) == run / "eval" / "step_00000007.pairs.png"
    assert _pairs_path(None, None, None) is None


def test_store_records_in_the_generating_run_or_warns(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run)
    shutil.rmtree(run / "eval")
    out = tmp_path / "eval.json"
    res = _store(_res({"path": str(run), "checkpoint": "", "step": 12}), out, None, None)
    recorded = run / "eval" / "step_00000012_random_generated.json"
    assert res["stored"] == [str(recorded), str(out)] and json.loads(recorded.read_text())["value"] == 1.5
    res = _store(_res({"path": str(run), "checkpoint": "", "step": None}), None, None, None)
    assert res["stored"] == [str(run / "eval" / "random_generated.json")]
    # a folder that is not a run, a run that is gone, a shipped model: nothing recorded, the first two say why
    (tmp_path / "plain").mkdir()
    for path in (tmp_path / "plain", tmp_path / "gone"):
        res = _store(_res({"path": str(path), "checkpoint": "", "step": 1}), out, None, None)
        assert res["stored"] == [str(out)] and len(res["warnings"]) == 1
        assert res["warnings"][0].startswith(f"not recorded in the generating run {path}")
    assert not (tmp_path / "plain" / "eval").exists()
    res = _store(_res({"path": "pretrained:pediatric-cxr-64", "checkpoint": "", "step": 1}), out, None, None)
    assert res["stored"] == [str(out)] and res["warnings"] == []
