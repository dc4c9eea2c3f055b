"""Reading DICOM X-rays (optional ``dicom`` extra: pydicom, pylibjpeg for compressed data).

The display pipeline follows DICOM PS3.3 C.11 (Modality LUT -> VOI LUT -> Presentation):
rescale slope/intercept (Modality LUT), then the VOI LUT Sequence or the window
centre/width when present, then normalisation to [0, 1] by the output range that the stored
bit depth (``BitsStored``, ``PixelRepresentation``) allows, and finally inversion of
``MONOCHROME1`` images (where low values are white) so that bone is always bright.

Only ``PatientID`` is read from the header (as the patient id for patient-level splits); no
other identifier (name, birth date, accession number, ...) is returned or written anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xraygan.errors import XrayganError

INSTALL_HINT = "pip install 'xraygan[dicom]'"


@dataclass
class DicomImage:
    """A decoded DICOM image: float32 (H, W) in [0, 1], the PatientID, and the raw stored pixels."""

    pixels: np.ndarray
    patient_id: str | None
    stored: np.ndarray


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError:
        raise XrayganError(f"reading DICOM needs pydicom; install it with: {INSTALL_HINT}") from None
    return pydicom


def _voi_functions() -> tuple[Any, Any]:
    try:  # pydicom >= 3
        from pydicom.pixels import apply_modality_lut, apply_windowing
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_windowing
    return apply_modality_lut, apply_windowing


def read_dicom(path: str | Path) -> DicomImage:
    """Decode one single-frame grayscale (or RGB) DICOM file; see the module docstring."""
    pydicom = _pydicom()
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise XrayganError(f"{path}: empty (zero-byte) file; remove it or pass --skip-bad to skip it")
    try:
        ds = pydicom.dcmread(path)
    except FileNotFoundError:
        raise XrayganError(f"{path}: file not found; fix the path or pass --skip-bad to skip it") from None
    except Exception as e:  # pydicom raises InvalidDicomError and assorted parse errors
        raise XrayganError(f"{path}: not a readable DICOM file ({type(e).__name__}: {e}); remove it or pass --skip-bad") from None
    if "PixelData" not in ds:
        raise XrayganError(f"{path}: DICOM file has no pixel data (PixelData element missing); remove it or pass --skip-bad")
    try:
        stored = np.asarray(ds.pixel_array)
    except Exception as e:  # missing decoder plugin, truncated data, ...
        raise XrayganError(
            f"{path}: cannot decode DICOM pixel data ({type(e).__name__}: {e}); for compressed transfer syntaxes "
            f"install the decoders with: {INSTALL_HINT}; otherwise remove it or pass --skip-bad"
        ) from None
    frames = _header_int(ds, "NumberOfFrames", 1, path)
    if frames > 1:
        raise XrayganError(f"{path}: multi-frame DICOM ({frames} frames) is not supported; export single frames or pass --skip-bad")
    pid = str(ds.get("PatientID", "") or "").strip() or None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if stored.ndim == 3 and stored.shape[-1] != 3:
        raise XrayganError(f"{path}: unexpected DICOM pixel array shape {stored.shape} (several frames or samples?); "
                           "export single grayscale or RGB frames or pass --skip-bad")
    if stored.ndim == 3:  # colour (pydicom converts YBR to RGB by default)
        bits = _header_int(ds, "BitsStored", 8, path)
        if not 1 <= bits <= 16:
            raise XrayganError(f"{path}: invalid BitsStored {bits} in DICOM header (1 to 16 expected); fix the header or pass --skip-bad")
        rgb = stored.astype(np.float64) / float(2**bits - 1)
        return DicomImage(np.clip(rgb @ np.array([0.299, 0.587, 0.114]), 0, 1).astype(np.float32), pid, stored)
    if stored.ndim != 2:
        raise XrayganError(f"{path}: unexpected DICOM pixel array shape {stored.shape}; pass --skip-bad to skip it")
    try:
        x = _display_values(ds, stored)
    except XrayganError:
        raise
    except Exception as e:  # values pydicom parsed but cannot use: bad LUT descriptors, windows, rescale, ...
        raise XrayganError(f"{path}: invalid rescale / VOI LUT / window in DICOM header ({type(e).__name__}: {e}); "
                           "fix the header or pass --skip-bad") from None
    if not np.isfinite(x).all():
        raise XrayganError(f"{path}: DICOM header gives non-finite pixel values (rescale / window); fix the header or pass --skip-bad")
    if photometric == "MONOCHROME1":
        x = 1.0 - x
    return DicomImage(x.astype(np.float32), pid, stored)


def _header_int(ds: Any, keyword: str, default: int, path: Path) -> int:
    """An integer header value (``default`` when absent or empty); a non-integer is a clear error."""
    value = ds.get(keyword, default)
    try:
        return int(value if value not in (None, "") else default)
    except (TypeError, ValueError):
        raise XrayganError(f"{path}: invalid {keyword} {value!r} in DICOM header (an integer expected); fix the header or pass --skip-bad") from None


def _display_values(ds: Any, stored: np.ndarray) -> np.ndarray:
    """Modality LUT + VOI LUT/window, normalised to [0, 1] (before any MONOCHROME1 inversion)."""
    apply_modality_lut, apply_windowing = _voi_functions()
    bits = int(ds.get("BitsStored", stored.dtype.itemsize * 8))
    if not 1 <= bits <= 32:
        raise ValueError(f"BitsStored {bits} (1 to 32 expected)")
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0, 2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
    else:
        raw_slope, raw_intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
        slope = 1.0 if raw_slope is None or raw_slope == "" else float(raw_slope)
        intercept = 0.0 if raw_intercept is None or raw_intercept == "" else float(raw_intercept)
        if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
            raise ValueError(f"RescaleSlope {slope:g} / RescaleIntercept {intercept:g}: the slope must be a finite non-zero "
                             "number and the intercept finite (a zero or NaN slope makes every pixel the same)")
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    if ds.get("VOILUTSequence"):
        # the VOI LUT replaces the modality range by its own output range
        y, lo, hi = _lookup_voi_lut(ds, apply_modality_lut(stored, ds))
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        # pydicom's windowing maps into the modality output range [lo, hi] (PS3.3 C.11.2.1.2)
        y = apply_windowing(apply_modality_lut(stored, ds), ds)
    else:
        y = apply_modality_lut(stored, ds)
    y = np.asarray(y, dtype=np.float64)
    return np.clip((y - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def _lookup_voi_lut(ds: Any, values: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Apply the first VOI LUT Sequence item (PS3.3 C.11.2.1.1); returns (output, 0, max output).

    Done here rather than by pydicom 3.0's ``apply_voi``, which indexes 8-bit LUTs with an 8-bit
    copy of the input, so inputs above 255 wrap around.
    """
    item = ds.VOILUTSequence[0]
    n_entries, first, bits = (int(v) for v in item.LUTDescriptor)
    n_entries = n_entries or 65536
    if bits not in (8, *range(10, 17)):
        raise ValueError(f"{bits} bits per VOI LUT entry is not allowed (8 or 10-16)")
    raw = item.LUTData
    if isinstance(raw, (bytes, bytearray)):
        little = getattr(ds, "is_little_endian", True) is not False
        data = np.frombuffer(raw, dtype="<u2" if little else ">u2")[:n_entries]
    else:
        data = np.atleast_1d(np.asarray(list(raw) if hasattr(raw, "__len__") else raw, dtype=np.int64))
    if len(data) < n_entries:
        raise ValueError(f"LUT Data has {len(data)} entries but LUT Descriptor says {n_entries}")
    idx = np.clip(np.rint(np.asarray(values, dtype=np.float64)) - first, 0, n_entries - 1).astype(np.int64)
    return data.astype(np.float64)[idx], 0, 2**bits - 1
