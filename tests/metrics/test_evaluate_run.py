"""`train --eval-every` logs the Frechet distance and keeps best.pt; `evaluate RUN` samples a run."""
from __future__ import annotations

import json

import pytest

from tests.helpers import make_prepared
from xraygan.cli import main


@pytest.fixture
def tiny_run(tmp_path):
    from xraygan.workflow import train

    data = make_prepared(tmp_path / "data", size=16, n_per_class=30)
    cfg = {"data": str(data), "out": str(tmp_path / "run"), "model": "dcgan", "steps": 4, "eval_every": 2, "batch": 8,
           "log_every": 1, "sample_every": 100, "ckpt_every": 100, "device": "cpu", "width": 8, "latent_dim": 16, "seed": 0}
    return data, train(cfg)


def test_eval_every_logs_fd_and_keeps_best_checkpoint(tiny_run):
    from xraygan.data.dataset import PreparedDataset

    data, run = tiny_run
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    fds = {r["step"]: r for r in recs if "fd_xray" in r}
    assert sorted(fds) == [2, 4]
    n_train = len(PreparedDataset.open(data).indices(split="train"))  # selection reads the training split only
    assert fds[2]["fd_xray_floor"] < fds[2]["fd_xray"] and fds[2]["fd_xray_n"] == n_train // 2
    best = min((fds[2], fds[4]), key=lambda r: r["select_score"])  # best.pt: lowest selection score
    assert fds[4]["select_best"] == best["select_score"] and fds[4]["fd_xray_best"] == best["fd_xray"]
    assert (run / "checkpoints" / "best.pt").is_file()


def test_eval_hook_reads_the_real_features_from_the_cache(tiny_run, tmp_path, monkeypatch):
    from xraygan.metrics.training_hook import make_eval_hook
    from xraygan.training.config import TrainConfig

    data, run = tiny_run
    cache = tmp_path / "cache"
    monkeypatch.setenv("XRAYGAN_CACHE", str(cache))
    cfg = TrainConfig(data=str(data), out=str(run), model="dcgan", size=16, eval_every=2, device="cpu", seed=0)
    first = make_eval_hook(cfg, run)
    files = {p: p.stat().st_mtime_ns for p in cache.glob("xray-*.npy")}
    assert len(files) == 2  # the two disjoint real halves
    calls = []
    monkeypatch.setattr(first.extractor.__class__, "features", lambda self, x: calls.append(len(x)))
    second = make_eval_hook(cfg, run)
    assert calls == [] and second.floor == first.floor
    assert {p: p.stat().st_mtime_ns for p in cache.glob("xray-*.npy")} == files


def test_evaluate_run_samples_the_generator_and_stores_in_the_run(tiny_run, capsys):
    data, run = tiny_run
    rc = main(["evaluate", str(run), "--real", str(data), "--n", "20", "--kid-subsets", "3", "--ssim-pairs", "20", "--no-cache", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and "Frechet distance" in out
    stored = list((run / "eval").glob("step_*_xray.json"))
    assert len(stored) == 1
    res = json.loads(stored[0].read_text())
    from xraygan.data.dataset import PreparedDataset

    held_out = len(PreparedDataset.open(data).indices(split=["val", "test"]))  # a run is reported on held-out patients only
    assert res["report_splits"] == {"NORMAL": "val+test", "PNEUMONIA": "val+test"}
    assert res["run"]["step"] in (2, 4) and res["n"] == min(20, held_out // 2) and res["memorisation"]["pixel"]["n_fake"] == res["n"]
    # a synthetic sample from 4 training steps is far from real: above the real-vs-real floor
    assert res["overall"]["fd"]["value"] > res["overall"]["fd"]["floor"]
