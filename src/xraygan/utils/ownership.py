"""What xraygan wrote, and where it may write: output markers, ``--force`` ownership and input overlap.

See :mod:`xraygan.utils.fs` for the rules (ownership, no overlap).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from xraygan.errors import UsageError
from xraygan.utils.atomic import atomic_write_json

MARKER = ".xraygan"
KINDS = ("prepared", "run", "generated", "experiment", "demo")
_KIND_NAMES = {"prepared": "prepared dataset", "run": "training run", "generated": "generated image set",
               "experiment": "experiment", "demo": "demo folder"}
GENERATED_MANIFEST_HEADER = "file,label,seed,run,checkpoint"


def is_nonempty_dir(path: Path) -> bool:
    """True if ``path`` exists and is a folder with anything in it (or is a file)."""
    path = Path(path)
    if not path.exists():
        return False
    if not path.is_dir():
        return True
    return any(path.iterdir())


def write_marker(folder: str | os.PathLike, kind: str, extra: dict | None = None) -> None:
    """Write the ``.xraygan`` marker that makes ``folder`` an xraygan output of ``kind``; ``extra``
    keys go in beside it (a generated set's ``format``/``format_version``)."""
    from xraygan import __version__

    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    atomic_write_json(Path(folder) / MARKER, {**(extra or {}), "kind": kind, "xraygan_version": __version__})  # extra never overrides the kind


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
