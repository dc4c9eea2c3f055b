"""One rule for the ``format_version`` of every versioned file xraygan writes (see docs/formats.md).

A reader knows the formats ``oldest..current`` of its file: it reads those (migrating the older
ones, as its own docs say) and refuses anything else with a one-line :class:`FormatVersionError`
naming the file and what to do: a newer file needs a newer xraygan; an older one, or one without
a version, is rebuilt by re-running the command that wrote it.

    version = check_format_version(path, doc.get("format_version"), what="prepared dataset",
                                   current=1, rerun="re-run `xraygan prepare` on its source images")

The evaluation JSON carries ``format``/``format_version`` like the others; its readers call
:func:`check_evaluation`. A generated image set (``manifest.csv`` and its class folders) keeps its
version in the folder's ``.xraygan`` marker (``format``/``format_version`` beside ``kind``), so
that ``manifest.csv`` stays a plain CSV for pandas and the csv module: :func:`generated_set_marker`
(the marker keys ``generate`` writes) and :func:`check_generated_set` (every reader of the manifest).
"""
from __future__ import annotations

import os
from typing import Any

from xraygan.errors import XrayganError

__all__ = ["EVAL_FORMAT", "EVAL_FORMAT_VERSION", "GENERATED_FORMAT", "GENERATED_FORMAT_VERSION", "FormatVersionError",
           "check_evaluation", "check_format_version", "check_generated_set", "generated_set_marker"]

EVAL_FORMAT = "xraygan-evaluation"  # the JSON `xraygan evaluate` writes (RUN/eval/*.json, --out)
EVAL_FORMAT_VERSION = 1  # a result without format/format_version (written before they existed) is format 1

GENERATED_FORMAT = "xraygan-generated"  # a generated image set: manifest.csv + class folders
GENERATED_FORMAT_VERSION = 1  # a set whose marker has no format_version (written before it had one) is format 1


class FormatVersionError(XrayganError):
    """A file's format version is one this xraygan does not read (newer, older or missing)."""


def check_format_version(path: str | os.PathLike, version: Any, *, what: str, current: int, oldest: int = 1,
                         rerun: str, newer: str | None = None) -> int:
    """``version`` (a file's ``format_version``) as an int when ``oldest <= version <= current``.

    Otherwise a one-line error naming ``path``: :class:`FormatVersionError` for a version that is
    newer (upgrade xraygan, or ``newer`` when given: another way out), older or missing (``rerun``: how
    to write the file again), and a plain
    :class:`~xraygan.errors.XrayganError` for one that is not an integer (a damaged file).
    """
    from xraygan import __version__

    known = f"format {current}" if oldest == current else f"formats {oldest} to {current}"
    if version is None:
        raise FormatVersionError(f"{path}: {what} without a format_version, older than any this xraygan {__version__} reads "
                                 f"({known}); {rerun}")
    if isinstance(version, bool) or not isinstance(version, int):
        raise XrayganError(f"{path}: damaged {what} (format_version {version!r} is not an integer); {rerun}")
    if version > current:
        raise FormatVersionError(f"{path}: {what} format {version} is newer than this xraygan {__version__} reads ({known}); "
                                 "upgrade xraygan (pip install -U xraygan) to read it" + (f", or {newer}" if newer else ""))
    if version < oldest:
        raise FormatVersionError(f"{path}: {what} format {version} is older than this xraygan {__version__} reads ({known}); "
                                 f"{rerun}")
    return version


def generated_set_marker() -> dict:
    """The ``.xraygan`` marker keys of a generated image set (``generate`` writes them with the set)."""
    return {"format": GENERATED_FORMAT, "format_version": GENERATED_FORMAT_VERSION}


def check_generated_set(folder: str | os.PathLike) -> int | None:
    """The format version of the generated image set in ``folder`` (read before its ``manifest.csv``).

    ``None`` when ``folder`` is not one (no ``.xraygan`` marker of kind ``generated``: a plain class
    folder, or a set written before the marker existed, read as always); 1 for a set whose marker
    has no ``format_version`` (written before it had one); a newer version is a one-line
    :class:`FormatVersionError` naming the marker (upgrade xraygan).
    """
    import json
    from pathlib import Path

    from xraygan.utils.ownership import MARKER

    marker = Path(folder) / MARKER
    try:
        doc = json.loads(marker.read_text())
    except (OSError, ValueError):  # no marker, a folder, not JSON: not a versioned set
        return None
    if not isinstance(doc, dict) or doc.get("kind") != "generated":
        return None
    if "format" in doc and doc["format"] != GENERATED_FORMAT:
        raise XrayganError(f"{marker}: damaged generated image set marker (format {doc['format']!r}, expected "
                           f"{GENERATED_FORMAT!r}); re-run `xraygan generate` into a new folder")
    return check_format_version(marker, doc.get("format_version", None if "format" in doc else 1),
                                what="generated image set (manifest.csv and class folders)", current=GENERATED_FORMAT_VERSION,
                                rerun="re-run `xraygan generate` into a new folder")


def check_evaluation(path: str | os.PathLike, doc: Any) -> int:
    """The format version of evaluation JSON ``doc`` read from ``path``: 1 for a result written
    before results carried one; a newer one is a :class:`FormatVersionError` (upgrade xraygan),
    anything that is not an evaluation a one-line :class:`~xraygan.errors.XrayganError`."""
    rerun = "run `xraygan evaluate` again"
    if not isinstance(doc, dict) or doc.get("format", EVAL_FORMAT) != EVAL_FORMAT:
        what = f"format {doc.get('format')!r}" if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
        raise XrayganError(f"{path}: not an xraygan evaluation ({what}); {rerun}")
    return check_format_version(path, doc.get("format_version", None if "format" in doc else 1), what="evaluation",
                                current=EVAL_FORMAT_VERSION, rerun=rerun)
