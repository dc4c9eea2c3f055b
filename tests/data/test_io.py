"""Decoding: 8/16-bit PNG, RGBA, corrupt files, fit/resize."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.prepare_fixtures import gray8, save_png
from xraygan.data import io as xio
from xraygan.errors import XrayganError


def test_8bit_png_roundtrip(tmp_path):
    arr = gray8(0, (10, 14))
    out = xio.read_image_uint8(save_png(tmp_path / "a.png", arr))
    assert out.dtype == np.uint8 and np.array_equal(out, arr)
    f = xio.read_image(tmp_path / "a.png")
    assert f.dtype == np.float32 and np.allclose(f, arr / 255.0)


def test_16bit_png_scaled_by_bit_depth_not_clipped(tmp_path):
    arr = np.linspace(0, 65535, 12 * 12).round().astype(np.uint16).reshape(12, 12)
    path = save_png(tmp_path / "b16.png", arr)
    assert Image.open(path).mode.startswith("I")  # really stored as 16-bit
    native = xio.decode_gray(path)
    assert native.dtype == np.uint16 and np.array_equal(native, arr)
    f = xio.read_image(path)
    assert np.allclose(f, arr / 65535.0, atol=1e-6)
    u8 = xio.read_image_uint8(path)
    assert np.abs(u8.astype(int) - np.rint(arr / 257.0)).max() <= 1
    # the pitfall this avoids: Pillow's convert("L") saturates most 16-bit values to white
    assert (np.asarray(Image.open(path).convert("L")) == 255).mean() > 0.9
    assert (u8 == 255).mean() < 0.05


def test_rgba_becomes_luma_composited_on_black(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 200, 100, 50
    rgba[:, :4, 3] = 255  # left half opaque, right half transparent
    out = xio.read_image_uint8(save_png(tmp_path / "c.png", rgba))
    assert out.shape == (8, 8)
    assert np.all(out[:, :4] == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50))
    assert np.all(out[:, 4:] == 0)


def test_jpeg_and_rgb(tmp_path):
    rgb = np.stack([gray8(3, (16, 16))] * 3, axis=-1)
    Image.fromarray(rgb).save(tmp_path / "d.jpg", quality=95)
    out = xio.read_image_uint8(tmp_path / "d.jpg")
    assert out.shape == (16, 16) and out.dtype == np.uint8


@pytest.mark.parametrize("content, words", [
    (b"", "zero-byte"),
    (b"this is not an image at all" * 10, "not a readable image"),
])
def test_bad_files_name_the_file(tmp_path, content, words):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(XrayganError, match=words) as e:
        xio.decode_gray(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_truncated_png(tmp_path):
    p = save_png(tmp_path / "t.png", gray8(1, (64, 64)))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(XrayganError, match="corrupt or truncated") as e:
        xio.decode_gray(p)
    assert str(p) in str(e.value)


def test_fit_modes():
    x = np.ones((8, 16), np.float32)  # wide white image
    assert xio.fit_square(x, "pad").shape == (16, 16)
    padded = xio.fit_square(x, "pad")
    assert padded[:4].sum() == 0 and padded[12:].sum() == 0 and padded[4:12].min() == 1
    x2 = np.tile(np.arange(16, dtype=np.float32), (8, 1))
    cropped = xio.fit_square(x2, "crop")
    assert cropped.shape == (8, 8) and cropped[0, 0] == 4 and cropped[0, -1] == 11
    assert xio.fit_square(x2, "squash").shape == (8, 16)
    assert xio.to_square_uint8(x2 / 15, 8, "squash").shape == (8, 8)
    assert xio.upsample_factor((8, 16), 16, "pad") == 1.0 and xio.upsample_factor((8, 16), 16, "crop") == 2.0


def test_resize_matches_resize_images():
    import torch

    from xraygan.data.dataset import resize_images

    x = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    ours = xio.to_square_uint8(x, 8, "pad").astype(float)
    ref = resize_images(torch.from_numpy(x)[None, None], 8)[0, 0].numpy() * 255
    assert np.abs(ours - ref).max() <= 0.51
