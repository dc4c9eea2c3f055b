"""generate's PNG writer (issue 16: encoding on the writer thread, off the critical path): any reader
gets back exactly the pixels and the text metadata, Latin-1 or not."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from xraygan.generate import _png_bytes


@pytest.mark.parametrize("shape", [(64, 64), (1, 1), (3, 17), (17, 3)])
def test_png_round_trips_pixels_and_text(shape):
    im = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    im[0, 0], im[-1, -1] = 0, 255
    meta = {"synthetic": "true", "run": "runs/cxr ünï ✓", "checkpoint": "/a/b.pt", "seed": "123"}
    back = Image.open(io.BytesIO(_png_bytes(im, meta)))
    back.load()
    assert back.mode == "L" and back.size == (shape[1], shape[0])
    np.testing.assert_array_equal(np.asarray(back), im)
    assert back.text == meta
