"""DICOM decoding: stored bit depth, MONOCHROME1 inversion, window, VOI LUT, missing pixel data."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pydicom")

from tests.prepare_fixtures import dicom_file  # noqa: E402
from xraygan.data.dicom import read_dicom  # noqa: E402
from xraygan.errors import XrayganError  # noqa: E402

RAMP = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 16  # 0..4080 within 12 bits


def test_dicom_monochrome2_scaled_by_bits_stored(tmp_path):
    d = read_dicom(dicom_file(tmp_path / "m2.dcm", RAMP))
    assert d.patient_id == "PID0001"
    assert np.allclose(d.pixels, RAMP / 4095.0, atol=1e-6)


def test_dicom_monochrome1_inverted(tmp_path):
    m1 = read_dicom(dicom_file(tmp_path / "m1.dcm", RAMP, photometric="MONOCHROME1")).pixels
    assert np.allclose(m1, 1 - RAMP / 4095.0, atol=1e-6)


def test_dicom_window_applied(tmp_path):
    d = read_dicom(dicom_file(tmp_path / "w.dcm", RAMP, window=(2048, 1024)))
    x = d.pixels
    assert np.all(x[RAMP <= 1535] == 0) and np.all(x[RAMP >= 2561] == 1)
    mid = x[(RAMP > 1600) & (RAMP < 2500)]
    assert 0 < mid.min() < mid.max() < 1
    assert abs(float(x[RAMP == 2048][0]) - 0.5) < 0.01


def test_dicom_voi_lut_applied(tmp_path):
    lut = [255 - (i // 16) for i in range(4096)]  # an inverting 8-bit LUT over 12-bit input
    d = read_dicom(dicom_file(tmp_path / "lut.dcm", RAMP, voi_lut=([4096, 0, 8], lut)))
    expected = np.array([lut[v] for v in RAMP.ravel()]).reshape(RAMP.shape) / 255.0
    assert np.allclose(d.pixels, expected, atol=1e-6)


def test_dicom_without_pixel_data(tmp_path):
    p = dicom_file(tmp_path / "nopix.dcm", RAMP, with_pixels=False)
    with pytest.raises(XrayganError, match="no pixel data") as e:
        read_dicom(p)
    assert str(p) in str(e.value)


def test_not_dicom(tmp_path):
    p = tmp_path / "x.dcm"
    p.write_bytes(b"garbage" * 30)
    with pytest.raises(XrayganError, match="not a readable DICOM"):
        read_dicom(p)
