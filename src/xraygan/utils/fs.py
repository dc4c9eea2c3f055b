"""Atomic writes and output folders that never leave partial results behind.

Every file xraygan writes goes through :func:`atomic_write_bytes` (write to a temporary file in the
same folder, then ``os.replace``), and every output folder is built in a staging folder beside its
final place and renamed into it only when complete (:func:`staged_output_dir`).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from xraygan.errors import XrayganError


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


def check_output_dir(path: str | os.PathLike, force: bool, what: str = "output folder") -> Path:
    """Refuse an existing non-empty ``path`` unless ``force``; returns it as a Path."""
    path = Path(path)
    if is_nonempty_dir(path) and not force:
        raise XrayganError(f"{what} {path} already exists and is not empty; choose another path or pass --force to replace it")
    return path


@contextlib.contextmanager
def staged_output_dir(path: str | os.PathLike, force: bool = False, what: str = "output folder") -> Iterator[Path]:
    """Yield a fresh staging folder; on success it replaces ``path``, on any error it is removed.

    The existing ``path`` (only allowed with ``force``) is kept untouched until the new content is
    complete, so a failure never loses the old result nor leaves a partial new one.
    """
    path = check_output_dir(path, force, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.replace(path, old / "x")
        os.replace(stage, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, path)
