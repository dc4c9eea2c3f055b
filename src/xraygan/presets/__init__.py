"""Shipped option presets (YAML files beside this module), used by ``--preset NAME``."""
from __future__ import annotations

from pathlib import Path

from xraygan.errors import UsageError

_DIR = Path(__file__).parent


def list_presets() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in _DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """Path of preset ``name``; an unknown name is an error listing the known ones."""
    path = _DIR / f"{name}.yaml"
    if not path.is_file():
        raise UsageError(f"unknown preset '{name}'; known presets: {', '.join(list_presets()) or 'none'}")
    return path
