"""xraygan.experiments.execute on its own, with a trivial real Jobs (a small torch computation per
unit): the sequential backend's order (a fold's GAN job before its units, groups without units
skipped), one torch thread per job, the context loaded once, per-group Jobs, errors stopping the
run, the progress wrapper's log lines, the worker-side context cache and the backends' names.
The local-process backend against the sequential one is a slow test (it spawns processes)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
import torch

from xraygan.errors import XrayganError
from xraygan.experiments import execute as X
from xraygan.experiments.execute import Backend, Group, one_thread, run_groups, run_with_progress


@dataclass
class TinyJobs:
    """Each unit: a seeded matrix product (its value depends on fold, seed and label); ``fail`` makes
    the unit of that seed raise."""

    name: str = "tiny"
    fail: int | None = None

    def key(self) -> str:
        return self.name

    def context(self) -> dict:
        return {"events": [], "loads": 1, "scale": 3.0}

    def gan(self, ctx, fold) -> None:
        ctx["events"].append(("gan", fold, torch.get_num_threads()))

    def unit(self, ctx, fold, seed, label) -> dict:
        if seed == self.fail:
            raise XrayganError(f"unit {fold}/{seed} failed")
        ctx["events"].append(("unit", fold, seed, torch.get_num_threads()))
        g = torch.Generator().manual_seed(1000 * fold + seed)
        a = torch.randn(32, 32, generator=g, dtype=torch.float64)
        value = float((a @ a.T).trace()) * ctx["scale"] + sum(label)
        return {"fold": fold, "seed": seed, "label": label, "value": value, "jobs": self.name,
                "line": f"fold {fold} seed {seed}: {value:.3f}", "wall_s": 0.0}


def _expected(fold, seed, label, scale=3.0):
    """The unit's value computed here, independently of the backend."""
    g = torch.Generator().manual_seed(1000 * fold + seed)
    a = torch.randn(32, 32, generator=g, dtype=torch.float64)
    return float((a * a).sum()) * scale + sum(label)  # trace(A A^T) = sum of squares


def _groups():
    return [Group(0, True, [(0, (1,)), (1, (1,))]), Group(1, False, [(0, (2,))]), Group(2, True, [])]


def test_sequential_runs_each_folds_gan_before_its_units_on_one_thread():
    threads_before = torch.get_num_threads()
    ctx = TinyJobs().context()
    results, gans = [], []
    run_groups(TinyJobs(), _groups(), Backend(), results.append, on_gan=gans.append, ctx=ctx)
    assert gans == [0]  # fold 2 has no pending units: its GAN job is skipped too
    assert [e[:3] for e in ctx["events"]] == [("gan", 0, 1), ("unit", 0, 0), ("unit", 0, 1), ("unit", 1, 0)]
    assert all(e[-1] == 1 for e in ctx["events"])  # every job on one torch thread
    assert torch.get_num_threads() == threads_before  # restored afterwards
    assert [(r["fold"], r["seed"]) for r in results] == [(0, 0), (0, 1), (1, 0)]
    for r in results:
        assert r["value"] == pytest.approx(_expected(r["fold"], r["seed"], r["label"]), rel=1e-12)


def test_context_is_loaded_when_not_given_and_groups_may_carry_their_own_jobs():
    loads = []

    class Counting(TinyJobs):
        def context(self):
            loads.append(self.name)
            return super().context()

    results = []
    groups = [Group(0, False, [(0, (0,))]), Group(1, False, [(0, (0,))], jobs=TinyJobs(name="other"))]
    run_groups(Counting(), groups, Backend(workers=1), results.append)
    assert loads == ["tiny"] and [r["jobs"] for r in results] == ["tiny", "other"]
    run_groups(Counting(), [Group(0, True, [])], Backend(), results.append)  # nothing pending: nothing loaded
    assert loads == ["tiny"] and len(results) == 2


def test_a_failing_unit_stops_the_run_and_one_thread_is_restored():
    threads_before = torch.get_num_threads()
    results = []
    with pytest.raises(XrayganError, match="unit 0/1 failed"):
        run_groups(TinyJobs(fail=1), [Group(0, False, [(0, ()), (1, ()), (2, ())])], Backend(), results.append)
    assert [r["seed"] for r in results] == [0] and torch.get_num_threads() == threads_before
    with pytest.raises(RuntimeError), one_thread():
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == threads_before


def test_run_with_progress_logs_one_line_per_unit_without_a_terminal(caplog, monkeypatch):
    monkeypatch.setattr("xraygan.utils.progress.enabled", lambda: False)  # no terminal, as under pytest without -s
    caplog.set_level(logging.INFO, logger="xraygan")
    run_with_progress(TinyJobs(), _groups(), Backend(), total=5, done_before=2, progress=True)
    lines = [r.getMessage() for r in caplog.records if r.name == X.log.name]
    assert len(lines) == 3 and lines[0].startswith("fold 0 seed 0: ") and lines[0].endswith("(0.0s)")
    caplog.clear()
    run_with_progress(TinyJobs(), _groups(), Backend(), total=5, done_before=2, progress=False)
    assert not [r for r in caplog.records if r.name == X.log.name]


def test_worker_context_is_cached_per_experiment(monkeypatch):
    threads, level = torch.get_num_threads(), logging.getLogger("xraygan").level
    monkeypatch.setattr(X, "_CONTEXTS", {})
    try:
        r1 = X._worker_unit(TinyJobs(), 3, 4, (1, 2))
        ctx = X._CONTEXTS["tiny"]
        X._worker_unit(TinyJobs(), 3, 5, ())
        assert X._CONTEXTS["tiny"] is ctx and [e[2] for e in ctx["events"]] == [4, 5]  # loaded once
        X._worker_gan(TinyJobs(name="next"), 7)
        assert list(X._CONTEXTS) == ["next"]  # one experiment's context at a time
        assert r1["value"] == pytest.approx(_expected(3, 4, (1, 2)), rel=1e-12)
    finally:
        torch.set_num_threads(threads)
        logging.getLogger("xraygan").setLevel(level)


def test_backend_names():
    assert Backend().name == "sequential" and Backend(workers=3).name == "3 local processes"
    assert Backend(ray="local").name == "ray (local cluster)" and Backend(ray="10.0.0.5:6379", workers=4).name == "ray (10.0.0.5:6379)"


@pytest.mark.slow
def test_two_local_processes_give_the_sequential_results():
    seq, par, gans = [], [], []
    run_groups(TinyJobs(), _groups(), Backend(), seq.append)
    run_groups(TinyJobs(), _groups(), Backend(workers=2), par.append, on_gan=gans.append)
    key = lambda r: (r["fold"], r["seed"])  # noqa: E731 - completion order differs
    assert sorted(par, key=key) == sorted(seq, key=key) and gans == [0]
