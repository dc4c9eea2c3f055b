"""The modules xraygan.utils.fs is split into, each tested directly: atomic writes, output ownership,
locks and stale-staging cleanup; their public names stay importable from xraygan.utils.fs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from xraygan.errors import UsageError, XrayganError
from xraygan.utils import atomic, fs, locks, ownership


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_fs_reexports_the_split_modules():
    split = {m.__name__: m for m in (atomic, ownership, locks)}
    for name in fs.__all__:
        obj = getattr(fs, name)
        home = getattr(obj, "__module__", None)
        if name == "staged_output_dir":
            assert home == fs.__name__
        elif home is not None:  # a function or class: defined in one split module, the same object here
            assert home in split and getattr(split[home], name) is obj, (name, home)
        else:  # a constant
            assert any(getattr(m, name, None) is obj for m in split.values()), name


def test_atomic_writes_keep_the_old_file_on_failure(tmp_path):
    path = tmp_path / "a.json"
    atomic.atomic_write_json(path, {"p": Path("x/y"), "n": np.float32(0.5), "v": np.arange(3)})
    assert json.loads(path.read_text()) == {"p": "x/y", "n": 0.5, "v": [0, 1, 2]}
    with pytest.raises(TypeError):
        atomic.atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text())["p"] == "x/y" and not _leftovers(tmp_path)
    copy = atomic.atomic_copy(path, tmp_path / "sub" / "b.json")
    assert copy.read_bytes() == path.read_bytes() and not _leftovers(tmp_path / "sub")
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~atomic._umask())


def test_ownership_markers_legacy_formats_and_overlap(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    assert ownership.output_kind(out) is None and ownership.is_nonempty_dir(out) is False
    (out / "config.yaml").write_text("format: xraygan-run\n")  # a run written before the marker existed
    assert ownership.output_kind(out) == "run"
    ownership.write_marker(out, "experiment")  # the marker wins
    assert ownership.output_kind(out) == "experiment"
    with pytest.raises(UsageError, match="holds an xraygan experiment, not a training run"):
        ownership.check_output_dir(out, force=True, what="--out", kind="run")
    with pytest.raises(UsageError, match="inside the input"):
        ownership.refuse_overlap(out / "x", [out])
    ownership.remove_output(out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_locks_are_exclusive_reentrant_and_clean_stale_staging(tmp_path):
    out = tmp_path / "out"
    stale = tmp_path / ".out.abcd1234.partial"
    stale.mkdir()
    old = tmp_path / ".out.efgh5678.old"
    (old / "x").mkdir(parents=True)
    (old / "x" / "kept.txt").write_text("previous output")
    with locks.output_lock(out) as held:
        assert held == out.resolve() and locks.held_by_this_process(out / "inner")
        assert locks.lock_path(out).is_file() and locks.lock_path(out).parent == tmp_path.resolve()
        assert (out / "kept.txt").read_text() == "previous output" and not stale.exists() and not old.exists()
        with locks.output_lock(out / "inner"):  # re-entrant inside a held folder
            pass
    assert not locks.held_by_this_process(out) and not locks.lock_path(out).exists()
    assert os.listdir(tmp_path) == ["out"]


def test_sigterm_inside_a_lock_raises_terminated(tmp_path):
    import signal

    with pytest.raises(XrayganError, match="SIGTERM"):
        with locks.sigterm_raises("stopped by SIGTERM in the test"):
            os.kill(os.getpid(), signal.SIGTERM)
    assert issubclass(locks.Terminated, XrayganError)


def test_a_lock_file_that_cannot_be_created_is_not_reported_as_another_writer():
    from xraygan.utils.locks import output_lock

    with pytest.raises(XrayganError, match=r"cannot create the lock file /proc/\.xraygan-nowhere\.lock"):
        with output_lock("/proc/xraygan-nowhere", "output folder /proc/xraygan-nowhere"):
            pass
