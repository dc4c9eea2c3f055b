"""One rule for the ``format_version`` of every versioned file xraygan writes (see docs/formats.md).

A reader knows the formats ``oldest..current`` of its file: it reads those (migrating the older
ones, as its own docs say) and refuses anything else with a one-line :class:`FormatVersionError`
naming the file and what to do: a newer file needs a newer xraygan; an older one, or one without
a version, is rebuilt by re-running the command that wrote it.

    version = check_format_version(path, doc.get("format_version"), what="prepared dataset",
                                   current=1, rerun="re-run `xraygan prepare` on its source images")
"""
from __future__ import annotations

import os
from typing import Any

from xraygan.errors import XrayganError

__all__ = ["FormatVersionError", "check_format_version"]


class FormatVersionError(XrayganError):
    """A file's format version is one this xraygan does not read (newer, older or missing)."""


def check_format_version(path: str | os.PathLike, version: Any, *, what: str, current: int, oldest: int = 1,
                         rerun: str) -> int:
    """``version`` (a file's ``format_version``) as an int when ``oldest <= version <= current``.

    Otherwise a one-line error naming ``path``: :class:`FormatVersionError` for a version that is
    newer (upgrade xraygan), older or missing (``rerun``: how to write the file again), and a plain
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
                                 "upgrade xraygan (pip install -U xraygan) to read it")
    if version < oldest:
        raise FormatVersionError(f"{path}: {what} format {version} is older than this xraygan {__version__} reads ({known}); "
                                 f"{rerun}")
    return version
