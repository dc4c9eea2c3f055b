"""Pseudonymised patient ids: a keyed hash instead of the id found in the data.

``prepare`` writes ``p-`` + the first 16 hex digits of HMAC-SHA256(key, raw id) as each image's
patient id, so ``manifest.csv`` never holds a hospital's PatientID, a CSV patient column or a
name-derived id. The same key gives the same pseudonym for the same patient in every dataset, so
images of one patient stay grouped (splits, folds, leakage checks) exactly as with raw ids.

The key is a secret that never goes into any output: it is read from ``--patient-key FILE``, or
from a per-user key file created on first use with mode 0600: ``$XRAYGAN_PATIENT_KEY_FILE`` when
set, else ``$XDG_CONFIG_HOME/xraygan/patient.key`` (default ``~/.config/xraygan/patient.key``).
``dataset.json`` records only :func:`key_fingerprint`, enough to tell whether two datasets were
made with the same key.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Iterable

from xraygan.errors import UsageError, XrayganError

PATIENT_ID_MODES = ("pseudonymised", "raw")
KEY_ENV = "XRAYGAN_PATIENT_KEY_FILE"
PREFIX = "p-"
_MIN_KEY_BYTES = 16


def default_key_path() -> Path:
    """Where the per-user key lives (see the module docstring)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "xraygan" / "patient.key"


def _create_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")


def load_key(path: str | os.PathLike | None = None) -> bytes:
    """The pseudonymisation key: from ``path`` (``--patient-key``), else the per-user key file
    (created with mode 0600 when missing)."""
    if path is None:
        where, option = default_key_path(), f"patient key file (${KEY_ENV} or the default)"
        if not where.exists():
            try:
                _create_key(where)
            except OSError as e:
                raise XrayganError(f"{where}: cannot create the patient key file ({e.strerror}); "
                                   "give an existing key file with --patient-key FILE") from None
    else:
        where, option = Path(path).expanduser(), "--patient-key"
    try:
        key = where.read_bytes().strip()
    except OSError as e:
        raise XrayganError(f"{option} {where}: cannot read the key file ({e.strerror or e}); "
                           "give a file holding a secret of at least 16 characters") from None
    if len(key) < _MIN_KEY_BYTES:
        raise XrayganError(f"{option} {where}: the key is too short ({len(key)} bytes); "
                           "it must hold a secret of at least 16 characters (e.g. 64 random hex digits)")
    return key


def key_fingerprint(key: bytes) -> str:
    """8 hex digits identifying ``key`` (a hash with its own prefix: reveals nothing usable)."""
    return hashlib.sha256(b"xraygan patient key fingerprint\0" + key).hexdigest()[:8]


def pseudonym(key: bytes, raw_id: str) -> str:
    """``p-`` + 16 hex digits of HMAC-SHA256(key, raw id)."""
    return PREFIX + hmac.new(key, str(raw_id).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:16]


def pseudonymise(raw_ids: Iterable[str], key: bytes) -> list[str]:
    """Pseudonyms of ``raw_ids``; refuses (never merges patients) in the unlikely event of a collision."""
    raw_ids = list(raw_ids)
    table = {r: pseudonym(key, r) for r in dict.fromkeys(raw_ids)}
    if len(set(table.values())) != len(table):  # pragma: no cover (2^-64 per pair)
        raise XrayganError("two patient ids got the same pseudonym; use another --patient-key or --patient-ids raw")
    return [table[r] for r in raw_ids]


def check_mode(mode: str) -> str:
    if mode not in PATIENT_ID_MODES:
        raise UsageError(f"--patient-ids {mode}: choose one of {', '.join(PATIENT_ID_MODES)}")
    return mode
