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
  never replaces a training run). ``--force`` removes only what xraygan itself wrote: an xraygan
  folder that also holds a file or folder xraygan did not write (one no pattern of
  :data:`~xraygan.utils.ownership.OWN_FILES` for its kind describes, see
  :func:`~xraygan.utils.ownership.foreign_entries`) is refused too, naming them, and nothing is deleted.
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
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

# the public names of the split modules stay importable from here
from xraygan.utils.atomic import (_json_default, _umask, atomic_copy, atomic_torch_save, atomic_write_bytes,  # noqa: F401
                                  atomic_write_json, atomic_write_text, atomic_write_yaml)
from xraygan.utils.locks import (_HELD, _HELD_GUARD, _STAGING_RE, _TMP_RE, Terminated, _deferred_sigterm,  # noqa: F401
                                 clean_stale, held_by_this_process, lock_path, locked_output, output_lock,
                                 sigterm_raises)
from xraygan.utils.ownership import (_KIND_NAMES, GENERATED_MANIFEST_HEADER, KINDS, MARKER, _read_format,  # noqa: F401
                                     _resolve, check_output_dir, is_nonempty_dir, output_kind, refuse_overlap,
                                     remove_output, write_marker)

__all__ = ["GENERATED_MANIFEST_HEADER", "KINDS", "MARKER", "Terminated", "atomic_copy", "atomic_torch_save",
           "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "atomic_write_yaml", "check_output_dir",
           "clean_stale", "held_by_this_process", "is_nonempty_dir", "lock_path", "locked_output", "output_kind",
           "output_lock", "refuse_overlap", "remove_output", "sigterm_raises", "staged_output_dir", "write_marker"]


@contextlib.contextmanager
def staged_output_dir(path: str | os.PathLike, force: bool = False, what: str = "output folder", kind: str | None = None,
                      inputs: Iterable[str | os.PathLike | None] = (), marker: dict | None = None) -> Iterator[Path]:
    """Yield a fresh staging folder; on success it replaces ``path``, on any error it is removed.

    Holds the lock of ``path`` (:func:`output_lock`) throughout, checks it with
    :func:`check_output_dir` under that lock, and writes the ``kind`` marker (with the ``marker``
    keys) into the staging folder.
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
                    write_marker(stage, kind, marker)
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
