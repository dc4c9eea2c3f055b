"""Typed option values shared by every command: one place that says what a valid number is.

Each checker takes a value from the command line (a string) or from a YAML ``--config``/preset (a
number or a string), returns it converted, and raises :class:`ValueError` with a message that
completes "--option VALUE: ..." (e.g. "must be at least 1") otherwise. :func:`arg` turns a checker into an argparse ``type=``
(argparse then prints ``argument --seed: ...`` and exits with status 2); :func:`check` applies one
to a config value and raises :class:`~xraygan.errors.UsageError` naming the option.

    p.add_argument("--seed", type=arg(seed), default=0)
    TrainConfig.validate():  self.lr_g = check("--lr-g", self.lr_g, positive_float)
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Callable, Optional

from xraygan.errors import UsageError

SEED_MAX = 2**32 - 1  # NumPy's legacy seeding takes 32-bit seeds


def _number(value: Any, kind: type) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"must be {'an integer' if kind is int else 'a number'}")
    if kind is int:
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError("must be an integer") from None
    try:
        out = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(out):
        raise ValueError("must be a finite number")
    return out


def integer(lo: Optional[int] = None, hi: Optional[int] = None, what: str = "") -> Callable[[Any], int]:
    """Checker of an integer in ``[lo, hi]`` (either bound may be None); ``what`` explains the bound."""

    def check_int(value: Any) -> int:
        v = _number(value, int)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = (f"from {lo} to {hi}" if hi is not None else f"at least {lo}") if lo is not None else f"at most {hi}"
            raise ValueError(f"must be {rng}" + (f" ({what})" if what else ""))
        return v

    check_int.__name__ = "integer"
    return check_int


def real(lo: Optional[float] = None, hi: Optional[float] = None, lo_open: bool = False, hi_open: bool = False,
         what: str = "") -> Callable[[Any], float]:
    """Checker of a finite number in the interval given by ``lo``/``hi`` (open ends if asked)."""

    def check_float(value: Any) -> float:
        v = _number(value, float)
        bad = (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and (v > hi or (hi_open and v == hi)))
        if bad:
            if lo is not None and hi is not None:
                rng = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
            elif lo is not None:
                rng = ("positive" if lo == 0 else f"above {lo:g}") if lo_open else ("0 or more" if lo == 0 else f"at least {lo:g}")
            else:
                rng = f"below {hi:g}" if hi_open else f"at most {hi:g}"
            raise ValueError(f"must be {rng}" + (f" ({what})" if what else ""))
        return v

    check_float.__name__ = "number"
    return check_float


# the checkers the commands share
positive_int = integer(1)
nonneg_int = integer(0)
seed = integer(0, SEED_MAX)
positive_float = real(0.0, lo_open=True)  # finite and > 0 (learning rates, seconds, weights that must be on)
nonneg_float = real(0.0)  # finite and >= 0 (weights where 0 = off)
beta = real(0.0, 1.0, hi_open=True)  # Adam betas and decays in [0, 1)
fraction = real(0.0, 1.0, lo_open=True)  # shares in (0, 1]


def arg(checker: Callable[[Any], Any]) -> Callable[[str], Any]:
    """``checker`` as an argparse ``type=`` (a ValueError becomes argparse's one-line usage error)."""

    def parse(text: str) -> Any:
        try:
            return checker(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{text}: {e}") from None

    parse.__name__ = getattr(checker, "__name__", "value")
    parse.checker = checker  # type: ignore[attr-defined]  (cli.py re-checks config-file values with it)
    return parse


def check(option: str, value: Any, checker: Callable[[Any], Any], optional: bool = False) -> Any:
    """``checker(value)``, or :class:`UsageError` ``"--option VALUE: message"``; None passes if ``optional``."""
    if value is None and optional:
        return None
    try:
        return checker(value)
    except ValueError as e:
        raise UsageError(f"{option} {value}: {e}") from None


def powers_of_two_near(size: int, supported: "list[int] | tuple[int, ...]") -> list[int]:
    """The supported sizes nearest to ``size``: the largest below and the smallest above it."""
    below = [s for s in supported if s < size]
    above = [s for s in supported if s > size]
    return ([max(below)] if below else []) + ([min(above)] if above else [])


def model_option(text: str) -> tuple[str, object]:
    """One ``--model-option KEY=VALUE`` (``-`` in KEY becomes ``_``). VALUE stays text: the family
    parses it by the option's declared type (:mod:`xraygan.training.family_options`), not as YAML."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip().replace("-", "_"), value.strip()


def model_options(value: object) -> dict:
    """``--model-option`` pairs, or from a YAML config a mapping or a list of ``KEY=VALUE`` strings."""
    if isinstance(value, dict):
        return {str(k).replace("-", "_"): v for k, v in value.items()}
    return dict(v if isinstance(v, tuple) else model_option(str(v)) for v in (value or []))
