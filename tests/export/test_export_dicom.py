"""DICOM Secondary Capture export: every tag read back with pydicom."""
from __future__ import annotations

import sys

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
pytestmark = pytest.mark.filterwarnings("error::UserWarning")

from xraygan.errors import XrayganError  # noqa: E402
from xraygan.export.dicom import (  # noqa: E402
    SECONDARY_CAPTURE_SOP_CLASS,
    SyntheticDicomWriter,
    write_secondary_capture,
)


def _img(h: int = 12, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def test_every_tag_read_back(tmp_path):
    img = _img()
    path = write_secondary_capture(img, tmp_path / "sub" / "a.dcm", label="PNEUMONIA", run_name="run-x", seed=42, checkpoint="latest.pt")
    ds = pydicom.dcmread(path)  # no force=True: a proper preamble and file meta are required
    # SOP class and transfer syntax
    assert ds.SOPClassUID == SECONDARY_CAPTURE_SOP_CLASS == "1.2.840.10008.5.1.4.1.1.7"
    assert ds.file_meta.MediaStorageSOPClassUID == SECONDARY_CAPTURE_SOP_CLASS
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    # marked synthetic everywhere a viewer shows it
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.ConversionType == "SYN"
    for keyword in ("SeriesDescription", "Manufacturer", "StudyDescription", "DerivationDescription", "ImageComments", "DeidentificationMethod"):
        assert "SYNTHETIC" in str(ds.data_element(keyword).value), keyword
    assert "xraygan" in ds.SeriesDescription and "xraygan" in ds.Manufacturer
    assert "PNEUMONIA" in ds.SeriesDescription
    assert "seed=42" in ds.ImageComments and "run=run-x" in ds.ImageComments and "latest.pt" in ds.ImageComments
    assert ds.Modality == "OT" and ds.BurnedInAnnotation == "NO"
    # no patient data
    assert str(ds.PatientName) in ("", "SYNTHETIC")
    assert ds.PatientID.startswith("SYNTHETIC")
    assert ds.PatientBirthDate == "" and ds.PatientSex == ""
    assert ds.ReferringPhysicianName == "" and ds.AccessionNumber == ""
    assert ds.PatientIdentityRemoved == "YES"
    for absent in ("OtherPatientIDs", "PatientAge", "PatientAddress", "InstitutionName", "OperatorsName"):
        assert absent not in ds, absent
    # valid, fresh UIDs (pydicom root)
    for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
        assert pydicom.uid.UID(uid).is_valid and uid.startswith(pydicom.uid.PYDICOM_ROOT_UID)
    assert len({ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID}) == 3
    # 8-bit MONOCHROME2 pixels, bit-exact
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.SamplesPerPixel == 1
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (8, 8, 7, 0)
    assert (ds.Rows, ds.Columns) == (12, 16)
    assert ds.pixel_array.dtype == np.uint8
    np.testing.assert_array_equal(ds.pixel_array, img)


def test_uids_fresh_per_file_and_writer_groups_series(tmp_path):
    a = pydicom.dcmread(write_secondary_capture(_img(), tmp_path / "a.dcm", label="N", run_name="r", seed=0))
    b = pydicom.dcmread(write_secondary_capture(_img(), tmp_path / "b.dcm", label="N", run_name="r", seed=0))
    assert a.SOPInstanceUID != b.SOPInstanceUID and a.StudyInstanceUID != b.StudyInstanceUID

    w = SyntheticDicomWriter(run_name="r", checkpoint="x.pt")
    files = [w.write(_img(seed=i), tmp_path / "w" / f"{i}.dcm", label=lab, seed=i) for i, lab in enumerate("ABA")]
    d = [pydicom.dcmread(f) for f in files]
    assert len({x.StudyInstanceUID for x in d}) == 1
    assert d[0].SeriesInstanceUID == d[2].SeriesInstanceUID != d[1].SeriesInstanceUID
    assert [x.SeriesNumber for x in d] == [1, 2, 1]
    assert [x.InstanceNumber for x in d] == [1, 1, 2]
    assert len({x.SOPInstanceUID for x in d}) == 3


def test_long_and_unicode_labels_fit_the_value_limits(tmp_path):
    label = "Pneumonie-bakteriell-ä" * 5
    ds = pydicom.dcmread(write_secondary_capture(_img(), tmp_path / "u.dcm", label=label, run_name="r" * 80, seed=1))
    for kw in ("SeriesDescription", "Manufacturer", "StudyDescription", "ManufacturerModelName"):
        assert len(str(ds.data_element(kw).value).encode("utf-8")) <= 64, kw
    assert ds.SeriesDescription.startswith("SYNTHETIC xraygan Pneumonie-bakteriell-ä")


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((1, 4, 4), np.uint8)])
def test_rejects_non_uint8_2d(tmp_path, bad):
    with pytest.raises(ValueError, match="2-D uint8"):
        write_secondary_capture(bad, tmp_path / "x.dcm", label="A", run_name="r", seed=0)
    assert not (tmp_path / "x.dcm").exists()


def test_missing_pydicom_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pydicom", None)  # makes `import pydicom` raise ImportError
    with pytest.raises(XrayganError, match=r"xraygan\[dicom\]"):
        write_secondary_capture(_img(), tmp_path / "x.dcm", label="A", run_name="r", seed=0)
    with pytest.raises(XrayganError, match="dicom"):
        SyntheticDicomWriter(run_name="r")
