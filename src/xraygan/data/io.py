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
import math
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xraygan.errors import XrayganError
from xraygan.utils.pixels import round_to_uint8, to_unit, unit_to_uint8

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
    except (OSError, ValueError) as e:  # name too long, not allowed, ...
        raise XrayganError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e}); fix the path or pass --skip-bad to skip it") from None
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
                arr = _pil_to_gray(im)
    except UnidentifiedImageError:
        raise XrayganError(f"{path}: not a readable image (PNG/JPEG/TIFF/BMP expected); remove it or pass --skip-bad") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise XrayganError(f"{path}: image too large to decode safely, a possible decompression bomb ({e}); "
                           "shrink it or pass --skip-bad") from None
    except MemoryError:
        raise XrayganError(f"{path}: image too large to decode in the memory available; shrink it or pass --skip-bad") from None
    except XrayganError:
        raise
    except Exception as e:  # Pillow's plugins raise OSError, SyntaxError, ValueError, struct.error, ... on bad bytes
        raise XrayganError(f"{path}: corrupt or truncated image ({type(e).__name__}: {e}); replace it or pass --skip-bad") from None
    if arr.ndim != 2 or arr.size == 0:
        raise XrayganError(f"{path}: image has no pixels ({'x'.join(map(str, arr.shape[::-1]))}); remove it or pass --skip-bad")
    return arr


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
        return round_to_uint8(a[..., 0] * a[..., 1] / 255.0)
    rgba = np.asarray(im.convert("RGBA"), dtype=np.float64)
    gray = rgba[..., :3] @ _LUMA
    return round_to_uint8(gray * rgba[..., 3] / 255.0)


def to_unit_float(arr: np.ndarray) -> np.ndarray:
    """Native gray integers -> float32 in [0, 1], scaled by the stored maximum of the type."""
    if arr.dtype == np.uint8:
        return to_unit(arr)
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
    return arr if arr.dtype == np.uint8 else unit_to_uint8(to_unit_float(arr))


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
    return unit_to_uint8(sq)


# --- MedMNIST-style .npz archives ----------------------------------------------------------------
@dataclass(frozen=True)
class NpyHeader:
    """What the header of one ``.npy`` member of an ``.npz`` says, read without loading its data."""

    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def _memory_bytes() -> int:
    """Physical memory of this machine (an upper bound on any array that can be loaded)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover (not POSIX)
        return 1 << 62


def npz_headers(path: Path) -> dict[str, NpyHeader]:
    """Shape and dtype of every array in the npz ``path``, from the ``.npy`` headers only.

    Refuses (:class:`XrayganError` naming the file and the array) archives that are not zip files,
    members that are not ``.npy`` arrays, object arrays (they need pickle, which is never
    allowed) and headers that disagree with the size of the data stored after them.
    """
    fmt = np.lib.format
    out: dict[str, NpyHeader] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[:-4]
                with zf.open(info) as fh:
                    version = fmt.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = fmt.read_array_header_1_0(fh)
                    elif version == (2, 0):
                        shape, _, dtype = fmt.read_array_header_2_0(fh)
                    else:
                        raise ValueError(f"unsupported .npy format version {version}")
                    offset = fh.tell()
                if dtype.hasobject:
                    raise XrayganError(f"{path}: array '{key}' holds Python objects, which can only be loaded by unpickling "
                                       "(never done: it can run code); save plain numeric arrays (uint8 images, integer labels)")
                nbytes = math.prod(shape) * dtype.itemsize
                if nbytes != info.file_size - offset:
                    raise XrayganError(f"{path}: array '{key}' is damaged: its header says {shape} {dtype} "
                                       f"({nbytes} bytes) but {info.file_size - offset} bytes are stored")
                out[key] = NpyHeader(tuple(int(d) for d in shape), dtype, nbytes)
    except XrayganError:
        raise
    except FileNotFoundError:
        raise XrayganError(f"{path}: file not found") from None
    except zipfile.BadZipFile as e:
        raise XrayganError(f"{path}: not a readable .npz file (damaged or not a zip archive: {e})") from None
    except Exception as e:  # truncated member, bad header, unreadable file, ...
        raise XrayganError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    return out


def npz_load(path: Path, keys: list[str], headers: dict[str, NpyHeader]) -> dict[str, np.ndarray]:
    """Load the arrays ``keys`` of the npz ``path`` (pickle never allowed) after checking that they fit in memory."""
    total = sum(headers[k].nbytes for k in keys)
    if total > _memory_bytes():
        raise XrayganError(f"{path}: arrays {', '.join(keys)} need {total / 2**30:.1f} GiB, more than this machine's memory "
                           f"({_memory_bytes() / 2**30:.1f} GiB); split the file or use a machine with more memory")
    out: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for k in keys:
                out[k] = data[k]
                if out[k].shape != headers[k].shape:
                    raise ValueError(f"array '{k}' changed shape while reading")
    except MemoryError:
        raise XrayganError(f"{path}: arrays {', '.join(keys)} ({total / 2**30:.1f} GiB) do not fit in the memory available") from None
    except Exception as e:  # CRC error, truncated or corrupt compressed data, ...
        raise XrayganError(f"{path}: corrupt .npz file ({type(e).__name__}: {e}); re-download or re-create it") from None
    return out
