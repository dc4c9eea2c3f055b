"""Atomic writes, output folders that never leave partial results behind, and output safety.

Every file xraygan writes goes through :func:`atomic_write_bytes` (write to a temporary file in the
same folder, then ``os.replace``), and every output folder is built in a staging folder beside its
final place and renamed into it only when complete (:func:`staged_output_dir`).

Never lose a user's data:

- **Ownership.** ``--force`` replaces only a folder xraygan wrote (:func:`output_kind`): one holding
  the marker file ``.xraygan`` (``{"kind": "prepared" | "run" | "generated" | "experiment" |
  "demo", ...}``, written by every command into its output), or, for folders written before the
  marker existed, xraygan's own ``dataset.json``, a ``config.yaml`` with format ``xraygan-run``, a
  ``manifest.csv`` written by ``generate`` or an experiment's ``protocol.json``. Anything else is
  refused even with ``--force``, and so is an xraygan folder of another kind (``prepare --force``
  never replaces a training run).
- **No overlap.** An output equal to, inside, or containing one of the command's inputs (source
  folder, a CSV's folder, prepared dataset, run) is refused by every command (:func:`refuse_overlap`).
- **One writer per output.** Every command that writes a folder holds an exclusive, non-blocking
  lock on it (:func:`output_lock`, the ``filelock`` package). The lock file sits *beside* the output,
  ``PARENT/.NAME.lock``, so it is stable while the staging folder is renamed into place; it is
  deleted on a clean exit (a killed process leaves it behind unlocked: the next run reuses it).
  Folders inside one this process already holds (an experiment's per-fold GAN runs, the demo's
  prepared/run/synthetic folders) go through the held lock.
- **Clean restarts.** Taking the lock removes what a killed earlier writer left (:func:`clean_stale`):
  xraygan's own staging folders ``PARENT/.NAME.XXXXXXXX.partial`` and ``.old`` (an ``.old`` is put
  back when the commit was cut between its two renames) and temporary files ``.FILE.XXXXXXXX.tmp``
  inside in-place outputs (runs, experiments, the demo).
- **SIGTERM** while an output is locked raises :class:`Terminated` (training installs its own
  graceful handler inside), so a staging folder and the lock file are removed and nothing partial is
  left; forked children (pool workers) get the default action back.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import yaml

from xraygan.errors import UsageError, XrayganError

MARKER = ".xraygan"
KINDS = ("prepared", "run", "generated", "experiment", "demo")
_KIND_NAMES = {"prepared": "prepared dataset", "run": "training run", "generated": "generated image set",
               "experiment": "experiment", "demo": "demo folder"}
GENERATED_MANIFEST_HEADER = "file,label,seed,run,checkpoint"
_STAGING_RE = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.(?P<what>partial|old)$")
_TMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


class Terminated(XrayganError):
    """SIGTERM arrived while an output was being built (the partial output has been removed)."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomic UTF-8 text write."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomic JSON write (indented, keys in insertion order)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def atomic_write_yaml(path: str | os.PathLike, obj: Any) -> None:
    """Atomic YAML write (block style, keys in insertion order)."""
    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False, default_flow_style=False))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file, so a crash never leaves a truncated checkpoint."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):  # numpy scalars and arrays
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def is_nonempty_dir(path: Path) -> bool:
    """True if ``path`` exists and is a folder with anything in it (or is a file)."""
    path = Path(path)
    if not path.exists():
        return False
    if not path.is_dir():
        return True
    return any(path.iterdir())



def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dst`` atomically: a hard link (or a copy) under a temporary name in ``dst``'s
    folder, then ``os.replace``; ``dst`` never exists half-written. ``src`` must never be modified
    in place afterwards (xraygan replaces files, it never rewrites them)."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:  # no hard links here (another file system, FAT, ...): a real copy
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dst


# --- what xraygan wrote ------------------------------------------------------------------------

def write_marker(folder: str | os.PathLike, kind: str) -> None:
    """Write the ``.xraygan`` marker that makes ``folder`` an xraygan output of ``kind``."""
    from xraygan import __version__

    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    atomic_write_json(Path(folder) / MARKER, {"kind": kind, "xraygan_version": __version__})


def _read_format(path: Path, loader: Callable[[str], Any]) -> Any:
    try:
        doc = loader(path.read_text())
    except Exception:  # unreadable, not JSON/YAML, a folder: not ours
        return None
    return doc.get("format") if isinstance(doc, dict) else None


def output_kind(path: str | os.PathLike) -> str | None:
    """The kind of xraygan output ``path`` is (see :data:`KINDS`), or None if xraygan did not write it."""
    path = Path(path)
    if not path.is_dir():
        return None
    marker = path / MARKER
    if marker.is_file():
        try:
            kind = json.loads(marker.read_text()).get("kind")
        except Exception:
            kind = None
        if kind in KINDS:
            return kind
    # folders written before the marker existed
    if (path / "dataset.json").is_file() and _read_format(path / "dataset.json", json.loads) == "xraygan-prepared":
        return "prepared"
    if (path / "config.yaml").is_file() and _read_format(path / "config.yaml", yaml.safe_load) == "xraygan-run":
        return "run"
    if (path / "protocol.json").is_file() and _read_format(path / "protocol.json", json.loads) == "xraygan-experiment":
        return "experiment"
    man = path / "manifest.csv"
    if man.is_file():
        with contextlib.suppress(OSError, UnicodeDecodeError), open(man, encoding="utf-8") as fh:
            if fh.readline().strip() == GENERATED_MANIFEST_HEADER:
                return "generated"
    if output_kind(path / "prepared") == "prepared" and output_kind(path / "run") == "run":
        return "demo"
    return None


def _resolve(p: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(p).expanduser())).resolve()


def refuse_overlap(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], what: str = "output folder") -> None:
    """Refuse an output equal to, inside, or containing one of ``inputs`` (a CSV input counts with its folder)."""
    o = _resolve(out)
    for inp in inputs:
        if inp is None or str(inp) == "":
            continue
        i = _resolve(inp)
        spots = [i]
        if i.is_file() and i.suffix.lower() in (".csv", ".tsv"):
            spots.append(i.parent)  # the CSV's paths are relative to its folder
        for s in spots:
            if o == s:
                raise UsageError(f"{what} {out} is the input {inp}; write to another folder (xraygan never writes into its inputs)")
            if s in o.parents:
                raise UsageError(f"{what} {out} is inside the input {s}; write to a folder outside it (xraygan never writes into its inputs)")
            if o in s.parents:
                raise UsageError(f"{what} {out} contains the input {inp}; write to a folder that does not hold the input")


def check_output_dir(path: str | os.PathLike, force: bool, what: str = "output folder", kind: str | None = None,
                     inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Check that ``path`` may be written; returns it as a Path.

    Refused: an output overlapping one of ``inputs``; an existing file; an existing non-empty folder
    unless ``force``; and even with ``force``, a folder xraygan did not write or one of another
    ``kind`` (see :func:`output_kind`).
    """
    path = Path(path)
    refuse_overlap(path, inputs, what)
    if not is_nonempty_dir(path):
        return path
    if not force:
        raise UsageError(f"{what} {path} already exists and is not empty; choose another path or pass --force to replace it")
    if not path.is_dir():
        raise UsageError(f"{what} {path} is a file, not a folder; refusing to replace it even with --force")
    found = output_kind(path)
    if found is None:
        raise UsageError(f"{what} {path} is not empty and was not written by xraygan (no {MARKER} marker); "
                           "refusing to replace it even with --force; choose another path")
    if kind is not None and found != kind:
        raise UsageError(f"{what} {path} holds an xraygan {_KIND_NAMES[found]}, not a {_KIND_NAMES[kind]}; "
                           "refusing to replace it even with --force; choose another path")
    return path


def remove_output(path: str | os.PathLike) -> None:
    """Delete an xraygan output folder: first renamed aside to ``.NAME.XXXXXXXX.old`` (atomic), then
    removed, so a kill half-way never leaves a half-deleted folder under the real name."""
    path = Path(path)
    if not path.exists():
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.replace(path, old / "x")
    shutil.rmtree(old, ignore_errors=True)


# --- one writer per output ---------------------------------------------------------------------

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
    import filelock

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
    lock = filelock.FileLock(str(lp), timeout=0)
    for attempt in range(3):
        try:
            lock.acquire(timeout=0)
            break
        except filelock.Timeout:
            # a writer that just finished unlinks the file under its lock; a brief retry tells that
            # apart from a writer that is still running
            if attempt == 2:
                _remove_made(made)
                raise XrayganError(f"{what} {path} is being written by another xraygan process (lock file {lp}); "
                                   "wait for it to finish or choose another path") from None
            import time

            time.sleep(0.05)
        except OSError as e:
            _remove_made(made)
            raise XrayganError(f"{what} {path}: cannot create the lock file {lp} ({e.strerror or e}); "
                               "check that its parent folder is writable") from None
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


# --- staged outputs -----------------------------------------------------------------------------

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


@contextlib.contextmanager
def staged_output_dir(path: str | os.PathLike, force: bool = False, what: str = "output folder", kind: str | None = None,
                      inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[Path]:
    """Yield a fresh staging folder; on success it replaces ``path``, on any error it is removed.

    Holds the lock of ``path`` (:func:`output_lock`) throughout, checks it with
    :func:`check_output_dir` under that lock, and writes the ``kind`` marker into the staging folder.
    The existing ``path`` (only allowed with ``force``) is kept untouched until the new content is
    complete, so a failure never loses the old result nor leaves a partial new one. SIGTERM while
    staging raises :class:`Terminated` (the staging folder is removed); during the final renames it
    is held back until they are done.
    """
    path = Path(path)
    inputs = list(inputs)
    with output_lock(path, what):
        path = check_output_dir(path, force, what, kind, inputs)
        path.parent.mkdir(parents=True, exist_ok=True)
        with sigterm_raises(f"stopped by SIGTERM; nothing was written to {path}"):
            stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
            os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes 0700; the output gets the usual permissions
            old: Path | None = None
            try:
                yield stage
                if kind is not None:
                    write_marker(stage, kind)
                with _deferred_sigterm() as got:
                    if path.exists():
                        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                        os.replace(path, old / "x")
                    os.replace(stage, path)
            except BaseException:
                shutil.rmtree(stage, ignore_errors=True)
                if old is not None and (old / "x").exists() and not path.exists():
                    os.replace(old / "x", path)  # put the previous result back
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
                raise
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        if got:
            raise Terminated(f"stopped by SIGTERM after {path} was complete")
