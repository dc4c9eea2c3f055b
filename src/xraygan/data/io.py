"""Decoding X-ray image files into grayscale arrays without losing bit depth.

Pillow's ``convert("L")`` clips 16-bit data to white (values above 255 saturate), so 16-bit
PNG/TIFF are read as their raw integers and divided by the stored maximum (65535 for 16-bit).
Colour images become luma (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B, as Pillow's "L"), and an
alpha channel is composited onto black (the usual X-ray background). DICOM lives in
:mod:`xraygan.data.dicom`.

Every function here raises :class:`~xraygan.errors.XrayganError` with a message naming the file
for anything a user can cause: empty, truncated, corrupt or non-image files.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from xraygan.errors import XrayganError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom")
FITS = ("pad", "crop", "squash")

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def is_image_file(path: Path) -> bool:
    """True if ``path`` has an image (PNG/JPEG/TIFF/BMP) suffix."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_dicom_file(path: Path) -> bool:
    """True if ``path`` has a DICOM suffix or starts with the DICOM preamble magic ``DICM``."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _check_nonempty(path: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise XrayganError(f"{path}: file not found; fix the path or pass --skip-bad to skip it") from None
    if size == 0:
        raise XrayganError(f"{path}: empty (zero-byte) file; remove it or pass --skip-bad to skip it")


def decode_gray(path: str | Path) -> np.ndarray:
    """Decode a PNG/JPEG/TIFF/BMP file into a 2-D grayscale array in its native integer type.

    8-bit sources give ``uint8``; 16-bit sources give ``uint16`` (values as stored). RGB(A) and
    palette images become 8-bit luma; alpha is composited onto black.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _check_nonempty(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()  # decode now: truncated files fail here, not later
                return _pil_to_gray(im)
    except UnidentifiedImageError:
        raise XrayganError(f"{path}: not a readable image (PNG/JPEG/TIFF/BMP expected); remove it or pass --skip-bad") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as e:
        raise XrayganError(f"{path}: corrupt or truncated image ({e}); replace it or pass --skip-bad") from None


def _pil_to_gray(im) -> np.ndarray:
    """A loaded PIL image -> 2-D uint8/uint16 array (no clipping of 16-bit data)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.uint16).copy()
    if mode == "I":  # 32-bit signed container; PNG 16-bit gray may arrive like this
        arr = np.asarray(im, dtype=np.int64)
        if arr.min() < 0 or arr.max() > 65535:
            raise ValueError(f"32-bit integer pixels outside 0..65535 (min {arr.min()}, max {arr.max()})")
        return arr.astype(np.uint16)
    if mode == "F":
        raise ValueError("floating-point images are not supported; save as 8- or 16-bit PNG")
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"), dtype=np.uint8).copy()
    if mode == "P":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("LA", "La", "PA"):
        im = im.convert("LA")
        a = np.asarray(im, dtype=np.float64)
        return _to_uint8(a[..., 0] * a[..., 1] / 255.0)
    rgba = np.asarray(im.convert("RGBA"), dtype=np.float64)
    gray = rgba[..., :3] @ _LUMA
    return _to_uint8(gray * rgba[..., 3] / 255.0)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def to_unit_float(arr: np.ndarray) -> np.ndarray:
    """Native gray integers -> float32 in [0, 1], scaled by the stored maximum of the type."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(arr, 0.0, 1.0).astype(np.float32)
    raise TypeError(f"unsupported pixel type {arr.dtype}")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as a float32 (H, W) array in [0, 1] with correct 16-bit scaling."""
    return to_unit_float(decode_gray(path))


def read_image_uint8(path: str | Path) -> np.ndarray:
    """Read an image file as a uint8 (H, W) array (16-bit data rescaled, never clipped)."""
    arr = decode_gray(path)
    return arr if arr.dtype == np.uint8 else _to_uint8(to_unit_float(arr) * 255.0)


def pixel_sha256(arr: np.ndarray) -> str:
    """sha256 of decoded source pixels (the array's raw bytes, C order)."""
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def fit_square(x: np.ndarray, fit: str) -> np.ndarray:
    """Make a float (H, W) image square: ``pad`` (black borders, centred), ``crop`` (centre) or
    ``squash`` (unchanged here; the resize then changes the aspect ratio)."""
    h, w = x.shape
    if fit == "squash" or h == w:
        return x
    if fit == "crop":
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        return x[top:top + s, left:left + s]
    if fit == "pad":
        s = max(h, w)
        out = np.zeros((s, s), dtype=x.dtype)
        top, left = (s - h) // 2, (s - w) // 2
        out[top:top + h, left:left + w] = x
        return out
    raise ValueError(f"unknown fit {fit!r}; choose one of {', '.join(FITS)}")


def upsample_factor(shape: tuple[int, int], size: int, fit: str) -> float:
    """How much the shorter kept side is enlarged when fitting ``shape`` into ``size`` (>1 = upsampling)."""
    h, w = shape
    side = max(h, w) if fit == "pad" else min(h, w)
    return size / side


def to_square_uint8(x: np.ndarray, size: int, fit: str) -> np.ndarray:
    """Float (H, W) in [0, 1] -> (size, size) uint8, antialiased bilinear like ``resize_images``."""
    from PIL import Image

    sq = fit_square(np.asarray(x, dtype=np.float32), fit)
    if sq.shape != (size, size):
        # Pillow's bilinear filter widens its support when shrinking (antialiasing), the same
        # scheme as torch's interpolate(antialias=True) used by resize_images.
        sq = np.asarray(Image.fromarray(sq).resize((size, size), Image.BILINEAR))
    return _to_uint8(sq * 255.0)
