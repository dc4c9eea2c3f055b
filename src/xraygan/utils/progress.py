"""Progress bars for every long command (tqdm, with ETA).

One rule everywhere: a bar shows only when stderr is a terminal and the user did not ask for
``--quiet`` (the CLI sets the log level to WARNING then); in tests, CI logs and pipes nothing is
drawn. Use :func:`bar` instead of calling tqdm directly so the rule stays in one place.
"""
from __future__ import annotations

import logging
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def enabled() -> bool:
    """Whether bars are drawn: stderr is a TTY and the xraygan logger is not quieted below INFO."""
    if logging.getLogger("xraygan").getEffectiveLevel() > logging.INFO:
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def bar(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
        leave: bool = False, position: int | None = None, disable: bool | None = None, **kw):
    """A tqdm bar (or a silent one) with ETA; ``disable=True`` forces it off (e.g. on non-main ranks)."""
    from tqdm import tqdm

    off = (not enabled()) if disable is None else (disable or not enabled())
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, position=position, disable=off,
                dynamic_ncols=True, **kw)
