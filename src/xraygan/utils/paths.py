"""Safe file and folder names built from data (class labels, patient ids, file names).

Every path xraygan builds from text that came from the data (a CSV label column, ``--label-names``,
a DICOM tag, a file name) goes through :func:`safe_component` (one harmless name: no separators,
no ``..``, no control characters, no Windows device names, at most :data:`MAX_COMPONENT_BYTES`
bytes) and :func:`path_under` (the joined path, resolved, must stay inside the output folder).
The original text is kept where it is data (manifests, JSON); only the name on disk changes.
A name that had to change gets a short hash of the original, so two labels that clean up to the
same text (``a/b`` and ``a_b``) still get different names; :func:`unique_components` also
separates names that differ only by case (one folder on macOS and Windows file systems).
"""
from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path
from typing import Iterable

from xraygan.errors import XrayganError

#: Longest name (UTF-8 bytes) made from data; file systems allow 255, and a prefix/suffix is added.
MAX_COMPONENT_BYTES = 100
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_KEEP = re.compile(r"[^\w.-]", re.UNICODE)  # letters, digits, underscore (any script), '.', '-'


def _clip_bytes(text: str, limit: int) -> str:
    while len(text.encode("utf-8")) > limit:
        text = text[:-1]
    return text


def safe_component(name: object, max_bytes: int = MAX_COMPONENT_BYTES) -> str:
    """One safe file/folder name for ``name``: unchanged when already safe, else cleaned + hash.

    Safe means: only letters, digits, ``_``, ``-`` and ``.`` (no ``/``, ``\\``, NUL or other
    control characters), not starting or ending with a dot or space, not a Windows device name
    (``CON``, ``NUL``, ``COM1`` ...), not empty and at most ``max_bytes`` UTF-8 bytes.
    """
    text = str(name)
    clean = re.sub(r"\.{2,}", ".", _KEEP.sub("_", unicodedata.normalize("NFC", text)))
    clean = clean.strip(". ")
    stem = clean.split(".", 1)[0].lower()
    if stem in _WINDOWS_RESERVED:
        clean = "_" + clean
    if clean == text and 0 < len(clean.encode("utf-8")) <= max_bytes:
        return clean
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    base = _clip_bytes(clean, max_bytes - len(digest) - 1).rstrip(". ")
    return f"{base}-{digest}" if base else f"x-{digest}"


def unique_components(names: Iterable[object], max_bytes: int = MAX_COMPONENT_BYTES) -> dict[str, str]:
    """``{name: safe name}`` for every distinct name; no two safe names equal, even ignoring case."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        key = str(name)
        if key in out:
            continue
        safe = safe_component(key, max_bytes)
        if safe.lower() in taken:
            digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
            base = _clip_bytes(safe, max_bytes - 18)
            k = 8
            safe = f"{base}-{digest[:k]}"
            while safe.lower() in taken:  # a name that happens to equal another's cleaned form
                k += 2
                safe = f"{base}-{digest[:k]}"
        taken.add(safe.lower())
        out[key] = safe
    return out


def path_under(root: str | os.PathLike, *parts: str, what: str = "output") -> Path:
    """``root/part/...`` after checking that it stays inside ``root`` (symlinks and ``..`` resolved).

    Raises :class:`XrayganError` naming the offending path otherwise. ``parts`` are normally made
    with :func:`safe_component`; this is the check that proves it.
    """
    base = Path(root)
    path = base.joinpath(*parts)
    bad = any(os.path.isabs(p) or "\0" in p for p in parts)
    try:
        inside = not bad and path.resolve().is_relative_to(base.resolve())
    except (OSError, ValueError):
        inside = False
    if not inside:
        raise XrayganError(f"{what}: refusing to write {'/'.join(map(repr, parts))} because it would land outside {base}; "
                           "the name comes from the data (a label or file name): rename it")
    return path
