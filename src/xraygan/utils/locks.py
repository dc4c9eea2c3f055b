"""One writer per output: the lock beside each output folder, cleaning what a killed writer left, and SIGTERM.

See :mod:`xraygan.utils.fs` for the rules (one writer per output, clean restarts, SIGTERM).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import shutil
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from xraygan.errors import XrayganError
from xraygan.utils.ownership import _resolve, refuse_overlap

_STAGING_RE = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.(?P<what>partial|old)$")
_TMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


class Terminated(XrayganError):
    """SIGTERM arrived while an output was being built (the partial output has been removed)."""



_HELD: dict[Path, int] = {}
_HELD_GUARD = threading.Lock()


def lock_path(path: str | os.PathLike) -> Path:
    """Where the lock of output ``path`` lives: ``PARENT/.NAME.lock`` (beside the output)."""
    p = _resolve(path)
    if not p.name:
        raise XrayganError(f"{path}: cannot write to the root folder")
    return p.parent / f".{p.name}.lock"


def held_by_this_process(path: str | os.PathLike) -> bool:
    """True if this process holds the lock of ``path`` or of a folder above it."""
    p = _resolve(path)
    with _HELD_GUARD:
        return any(h == p or h in p.parents for h in _HELD)


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, what: str = "output folder", walk: bool = False,
                inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[Path]:
    """Hold the exclusive lock of output ``path`` (non-blocking; a second writer is a clear error).

    ``inputs`` are checked first (:func:`refuse_overlap`), so nothing, not even a lock file, is
    written into an input. Re-entrant: inside a folder this process already holds, it is a no-op.
    On acquiring, the stale leftovers of a killed earlier writer are cleaned (:func:`clean_stale`;
    ``walk`` also removes temporary files inside the folder). Parent folders created for the lock
    file are removed again if the output was never written.
    """
    refuse_overlap(path, inputs, what)
    p = _resolve(path)
    if held_by_this_process(p):
        yield p
        return
    lp = lock_path(p)
    made = [d for d in [lp.parent, *lp.parent.parents] if not d.exists()]
    try:
        lp.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise XrayganError(f"{what} {path}: cannot create its parent folder {lp.parent} ({e.strerror or e})") from None
    lock = _acquire(lp, made, f"{what} {path}")
    with _HELD_GUARD:
        _HELD[p] = _HELD.get(p, 0) + 1
    try:
        # SIGTERM ends the writer through this block, so its lock file (and staging) are removed
        with sigterm_raises(f"stopped by SIGTERM while writing {path}"):
            clean_stale(p, walk=walk)
            yield p
    finally:
        with _HELD_GUARD:
            _HELD[p] -= 1
            if not _HELD[p]:
                del _HELD[p]
        with contextlib.suppress(OSError):
            os.unlink(lp)  # unlinked while still held, so no other process can hold this inode
        lock.release()
        if not p.exists():
            for d in made:  # innermost first; only empty folders this call created
                with contextlib.suppress(OSError):
                    d.rmdir()


def locked_ancestor(path: str | os.PathLike) -> tuple[Path, Path] | None:
    """(folder, its lock file) of the nearest folder above ``path`` that another process is writing
    (holds the lock of), or None; folders this process holds are skipped. A non-blocking probe of the
    lock files that exist: none is created, waited on or kept."""
    p = _resolve(path)
    for folder in p.parents:
        if not folder.name:
            break
        lp = folder.parent / f".{folder.name}.lock"
        if not lp.is_file() or held_by_this_process(folder):
            continue
        if _held_elsewhere(lp):
            return folder, lp
    return None


def _held_elsewhere(lp: Path) -> bool:
    """Whether another process holds the lock file ``lp`` (which exists); False when it cannot be told."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): filelock's own non-blocking attempt, released at once
        import filelock

        lock = filelock.FileLock(str(lp), timeout=0)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            return True
        except OSError:
            return False
        lock.release()
        return False
    try:  # filelock locks with flock on POSIX; opening without O_CREAT never makes a lock file
        fd = os.open(lp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False  # gone (its writer just finished) or unreadable
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def refuse_locked_ancestors(path: str | os.PathLike, what: str = "output folder") -> None:
    """Refuse to write ``path`` while another xraygan process writes a folder above it (e.g. an
    experiment training its fold GANs in ``EX/gans/...``): two writers of one run would corrupt it.

    Call it where a user starts a writer (the commands), not inside a job whose coordinator holds
    the folder above (an experiment's worker processes write inside the experiment's folder)."""
    found = locked_ancestor(path)
    if found is None:
        return
    folder, lp = found
    from xraygan.utils.ownership import _KIND_NAMES, output_kind

    kind = output_kind(folder)
    held = f"the {_KIND_NAMES.get(kind, kind)} {folder}" if kind else f"{folder}"
    raise XrayganError(f"{what} {path} is inside {held}, which another xraygan process is writing now (lock file {lp}); "
                       "wait for that process to finish, or stop it first: two writers of one folder would corrupt it")


def _acquire(lp: Path, made: list[Path], what: str):
    """The held ``filelock.FileLock`` of lock file ``lp``; a clear error (after removing the folders
    in ``made``) when another process holds it or it cannot be created."""
    import filelock

    lock = filelock.FileLock(str(lp), timeout=0)
    for attempt in range(3):
        try:
            lock.acquire(timeout=0)
            return lock
        except filelock.Timeout:
            # a writer that just finished unlinks the file under its lock; a brief retry tells that
            # apart from a writer that is still running
            if attempt == 2:
                _remove_made(made)
                if not lp.exists():  # a holder keeps its lock file: filelock could not create it (read-only, /proc, ...)
                    raise XrayganError(f"{what}: cannot create the lock file {lp}; "
                                       "check that its parent folder exists and is writable") from None
                raise XrayganError(f"{what} is being written by another xraygan process (lock file {lp}); "
                                   "wait for it to finish or choose another path") from None
            import time

            time.sleep(0.05)
        except OSError as e:
            _remove_made(made)
            raise XrayganError(f"{what}: cannot create the lock file {lp} ({e.strerror or e}); "
                               "check that its parent folder is writable") from None
    raise AssertionError("unreachable")


def _remove_made(made: list[Path]) -> None:
    for d in made:
        with contextlib.suppress(OSError):
            d.rmdir()


def locked_output(arg: str | Callable[[dict], Any] = "out", what: str = "output folder", walk: bool = False,
                  inputs: Callable[[dict], Iterable[Any]] | None = None) -> Callable:
    """Decorator: run the function while holding :func:`output_lock` on its ``arg`` argument (a
    parameter name, or a function of the bound arguments); ``inputs(bound arguments)`` lists the
    inputs the output must not overlap."""
    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            target = arg(bound.arguments) if callable(arg) else bound.arguments[arg]
            if target is None:
                return fn(*args, **kwargs)
            with output_lock(target, what, walk=walk, inputs=inputs(bound.arguments) if inputs else ()):
                return fn(*args, **kwargs)

        return wrapper

    return deco


def clean_stale(path: str | os.PathLike, walk: bool = False) -> list[Path]:
    """Remove what a killed writer of ``path`` left (call only while holding its lock); returns the
    removed paths.

    Beside ``path``: its staging folders ``.NAME.XXXXXXXX.partial`` (incomplete: removed) and
    ``.NAME.XXXXXXXX.old`` (removed; put back as ``path`` when ``path`` is missing, i.e. the commit
    was cut between its two renames). With ``walk``, inside ``path`` as well: the same for nested
    folders, and temporary files ``.FILE.XXXXXXXX.tmp`` of :func:`atomic_write_bytes`.
    """
    p = Path(path)
    removed: list[Path] = []
    _clean_staging_of(p, removed)
    if walk and p.is_dir():
        for root, dirs, files in os.walk(p):
            r = Path(root)
            for d in list(dirs):
                m = _STAGING_RE.match(d)
                if m:
                    dirs.remove(d)
                    _clean_one_staging(r / d, r / m.group("name"), m.group("what"), removed)
            for f in files:
                if _TMP_RE.match(f):
                    with contextlib.suppress(OSError):
                        os.unlink(r / f)
                        removed.append(r / f)
    return removed


def _clean_staging_of(p: Path, removed: list[Path]) -> None:
    if not p.parent.is_dir():
        return
    for entry in sorted(p.parent.iterdir()):
        m = _STAGING_RE.match(entry.name)
        if m and m.group("name") == p.name and entry.is_dir():
            _clean_one_staging(entry, p, m.group("what"), removed)


def _clean_one_staging(stage: Path, target: Path, what: str, removed: list[Path]) -> None:
    if what == "old" and not target.exists() and (stage / "x").is_dir():
        os.replace(stage / "x", target)  # the previous output, moved aside by a commit that was cut short
    shutil.rmtree(stage, ignore_errors=True)
    removed.append(stage)


def _default_sigterm_in_child() -> None:
    """In a forked child (e.g. a multiprocessing pool worker) SIGTERM kills again: ``Pool.terminate``
    relies on it, and the staging folder belongs to the parent."""
    with contextlib.suppress(Exception):
        if getattr(signal.getsignal(signal.SIGTERM), "_xraygan_sigterm", False):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_default_sigterm_in_child)


@contextlib.contextmanager
def sigterm_raises(message: str = "stopped by SIGTERM") -> Iterator[None]:
    """Within the block (main thread only), SIGTERM raises :class:`Terminated` so that cleanup runs
    (forked children get the default action back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(message)

    handler._xraygan_sigterm = True  # type: ignore[attr-defined]
    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _deferred_sigterm() -> Iterator[list]:
    """Within the block SIGTERM is only recorded (the list gets an entry), never acted on."""
    got: list = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    def handler(signum: int, frame: Any) -> None:
        got.append(signum)

    handler._xraygan_sigterm = True  # type: ignore[attr-defined]
    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, old)
