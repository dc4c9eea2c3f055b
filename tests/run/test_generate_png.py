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


def test_inline_and_threaded_writers_write_the_same_files(tmp_path, monkeypatch):
    """generate writes on a thread when a core is spare and inline when torch's threads take them
    all (xraygan.generate._spare_core); both give byte-identical images and manifests."""
    import xraygan.generate as g

    outs = {}
    for threaded in (True, False):
        monkeypatch.setattr(g, "_spare_core", lambda threaded=threaded: threaded)
        out = g.generate(None, 10, tmp_path / f"t{threaded}", pretrained="pediatric-cxr-64", batch=4)
        outs[threaded] = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))}
        outs[threaded]["manifest"] = (out / "manifest.csv").read_bytes()
    assert len(outs[True]) == 11 and outs[True] == outs[False]
