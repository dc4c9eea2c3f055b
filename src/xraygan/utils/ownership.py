"""What xraygan wrote, and where it may write: output markers, ``--force`` ownership and input overlap.

See :mod:`xraygan.utils.fs` for the rules (ownership, no overlap).
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
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

# What xraygan writes into each kind of output, as patterns on paths relative to the output folder:
# '/'-separated segments, each an fnmatch pattern matched within one segment ('*' never crosses a
# '/'). These are the only files ``--force`` may delete (:func:`foreign_entries`); a command that
# writes a new file into an output must add it here (tests/utils/test_force_ownership.py checks
# freshly written outputs against them).
_PREPARED_FILES = (MARKER, "dataset.json", "manifest.csv", "pixels.npy", "images/[0-9][0-9][0-9][0-9][0-9]*_*.png")
_RUN_FILES = (MARKER, "config.yaml", "metrics.jsonl", "loss.png", "MODEL_CARD.md",
              "report.html",                                   # `xraygan report RUN` (default --out)
              "checkpoints/latest.pt", "checkpoints/best.pt", "checkpoints/step_*.pt",
              "samples/step_*.png",
              "eval/*.json", "eval/step_*.pairs.png",          # `xraygan evaluate` (run, or a set it generated)
              "tensorboard/events.out.tfevents.*")             # `train --tensorboard`
_GENERATED_FILES = (MARKER, "manifest.csv", "*/synthetic_[0-9][0-9][0-9][0-9][0-9][0-9]*.png",
                    "*/synthetic_[0-9][0-9][0-9][0-9][0-9][0-9]*.dcm")  # one folder per label


def _under(folder: str, patterns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{folder}/{p}" for p in patterns)


OWN_FILES: dict[str, tuple[str, ...]] = {
    "prepared": _PREPARED_FILES,
    "run": _RUN_FILES,
    "generated": _GENERATED_FILES,
    "experiment": (MARKER, "protocol.json", "results.json", "verdicts.txt", "report.html",
                   "roc.png", "calibration.png", "confusion.png", "ci.png", "learning_curve.png",
                   "units/*.json",
                   *_under("test-prepared", _PREPARED_FILES),                    # --test prepared here
                   *_under("gans/*fold*/data", _PREPARED_FILES),                 # a fold's GAN training data
                   *_under("gans/*fold*/data.partial", _PREPARED_FILES),         # ... being written
                   *_under("gans/*fold*/conditional", _RUN_FILES), *_under("gans/*fold*/class*", _RUN_FILES),
                   "gans/*fold*/*.done", "gans/*fold*/*.request.json"),
    "demo": (MARKER, "real_vs_synthetic_*.png", "report.html",
             "synthetic.eval-*.json", "synthetic.eval-*.pairs.png",             # `xraygan evaluate --fake DEMO/synthetic`
             *_under("prepared", _PREPARED_FILES), *_under("run", _RUN_FILES), *_under("synthetic", _GENERATED_FILES)),
}
# besides, anywhere inside an output, the leftovers of xraygan's own writers: staging folders
# .NAME.XXXXXXXX.partial / .old with all in them, temporary files .FILE.XXXXXXXX.tmp and lock files
# .NAME.lock (the same patterns as xraygan.utils.locks._STAGING_RE and _TMP_RE, which imports this
# module; a test keeps them equal)
_STAGING_DIR = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.(?P<what>partial|old)$")
_TMP_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_LOCK_FILE = re.compile(r"^\..+\.lock$")
_SPLIT_PATTERNS = {k: [tuple(p.split("/")) for p in v] for k, v in OWN_FILES.items()}


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


def _matches(parts: tuple[str, ...], pattern: tuple[str, ...], prefix: bool = False) -> bool:
    """True if path ``parts`` matches ``pattern`` segment by segment; with ``prefix``, if a file
    matching ``pattern`` could lie below the folder ``parts``."""
    if prefix and len(parts) >= len(pattern):
        return False
    if not prefix and len(parts) != len(pattern):
        return False
    return all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pattern))


def foreign_entries(path: str | os.PathLike, kind: str | None = None) -> list[str]:
    """What inside the xraygan output ``path`` xraygan did not write: sorted paths relative to it
    ('/'-separated, a folder with a trailing '/', whose contents are not listed).

    Owned are the files :data:`OWN_FILES` lists for ``kind`` (default: :func:`output_kind`), the
    folders that may hold them, and xraygan's own staging folders, temporary files and lock files.
    Anything else is foreign: a file or folder of another name, a symbolic link, something that
    is not a plain file, a folder that cannot be read. A folder xraygan did not write at all (no
    kind) is foreign as a whole: ``["./"]``.
    """
    root = Path(path)
    if not root.is_dir():
        return []
    kind = kind if kind is not None else output_kind(root)
    if kind not in OWN_FILES:
        return ["./"]
    patterns = _SPLIT_PATTERNS[kind]
    found: list[str] = []

    def walk(folder: Path, parts: tuple[str, ...]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            found.append(("/".join(parts) or ".") + "/")  # cannot tell what is in it: not ours to delete
            return
        for e in entries:
            rel = (*parts, e.name)
            name = "/".join(rel)
            try:
                if e.is_symlink():
                    found.append(name)
                elif e.is_dir():
                    if _STAGING_DIR.match(e.name):
                        continue
                    if any(_matches(rel, p, prefix=True) for p in patterns):
                        walk(Path(e.path), rel)
                    else:
                        found.append(name + "/")
                elif e.is_file():
                    if not (_TMP_FILE.match(e.name) or _LOCK_FILE.match(e.name) or any(_matches(rel, p) for p in patterns)):
                        found.append(name)
                else:
                    found.append(name)  # a socket, a FIFO, ...
            except OSError:
                found.append(name)

    walk(root, ())
    return sorted(found)


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
    unless ``force``; and even with ``force``, a folder xraygan did not write, one of another
    ``kind`` (see :func:`output_kind`), or an xraygan output holding anything xraygan did not
    write (:func:`foreign_entries`): ``--force`` deletes only xraygan's own files.
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
    foreign = foreign_entries(path, found)
    if foreign:
        shown = ", ".join(foreign[:_SHOWN]) + (f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else "")
        raise UsageError(f"{what} {path} holds {len(foreign)} file(s) or folder(s) that xraygan did not write: {shown}; "
                         f"refusing to replace it even with --force (nothing was deleted); move them out of {path} "
                         "and run again, or choose another path")
    return path


_SHOWN = 5  # foreign entries named in the refusal


def remove_output(path: str | os.PathLike) -> None:
    """Delete an xraygan output folder: first renamed aside to ``.NAME.XXXXXXXX.old`` (atomic), then
    removed, so a kill half-way never leaves a half-deleted folder under the real name."""
    path = Path(path)
    if not path.exists():
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.replace(path, old / "x")
    shutil.rmtree(old, ignore_errors=True)
