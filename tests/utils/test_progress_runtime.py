"""Direct tests of xraygan.utils.progress (when bars are drawn) and xraygan.utils.runtime (device
choice, seeding, callable modules)."""
from __future__ import annotations

import io
import logging
import random

import numpy as np
import pytest
import torch

from xraygan.errors import XrayganError
from xraygan.utils import progress
from xraygan.utils.runtime import resolve_device, seed_everything


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def xraygan_level():
    logger = logging.getLogger("xraygan")
    old = logger.level
    yield logger
    logger.setLevel(old)


def test_bars_draw_only_on_a_terminal_and_not_under_quiet(monkeypatch, xraygan_level) -> None:
    xraygan_level.setLevel(logging.INFO)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not progress.enabled()  # a pipe or a log file: nothing drawn
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    assert progress.enabled()
    with progress.bar(total=3, desc="unit", file=tty) as b:
        b.update(3)
    assert "unit:" in tty.getvalue() and "/3 [" in tty.getvalue()  # drawn, with its total
    xraygan_level.setLevel(logging.WARNING)  # what --quiet sets
    assert not progress.enabled()
    quiet = _Tty()
    with progress.bar(range(5), desc="hidden", file=quiet) as b:
        assert list(b) == [0, 1, 2, 3, 4]  # a silent bar still iterates
    assert quiet.getvalue() == ""
    xraygan_level.setLevel(logging.INFO)
    forced = _Tty()
    with progress.bar(total=2, desc="rank1", disable=True, file=forced) as b:  # e.g. a non-main rank
        b.update(2)
    assert forced.getvalue() == ""


def test_resolve_device_and_its_errors() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(XrayganError, match="--device tpu: expected auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(XrayganError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_seed_everything_makes_python_numpy_and_torch_repeat() -> None:
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(2**40 + 3)  # seeds beyond numpy's 32-bit range are folded, not refused
    a = draw()
    seed_everything(2**40 + 3)
    assert draw() == a
    seed_everything(4)
    assert draw() != a


def test_generate_and_demo_modules_are_callable() -> None:
    import xraygan.demo
    import xraygan.generate

    assert callable(xraygan.generate) and callable(xraygan.demo)
    with pytest.raises(TypeError):
        xraygan.generate()  # forwards to the function, which needs its arguments
