"""Builders of tiny real input files for the prepare/io tests: PNG 8/16-bit, RGBA, DICOM, npz."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

PATIENT_NAME = "Doe^Janette"
BIRTH_DATE = "19750317"


def gray8(seed: int, shape: tuple[int, int] = (16, 16)) -> np.ndarray:
    """A random 8-bit grayscale image (distinct per seed)."""
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save_png(path: Path, arr: np.ndarray) -> Path:
    """Save a uint8 (H,W), uint16 (H,W), or uint8 (H,W,3|4) array as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def class_folder(root: Path, n_per_class: int = 6, classes: tuple[str, ...] = ("NORMAL", "PNEUMONIA"),
                 shape: tuple[int, int] = (16, 16), names: str = "img{i}.png") -> Path:
    """A folder with one sub-folder per class of distinct 8-bit PNGs."""
    for ci, c in enumerate(classes):
        for i in range(n_per_class):
            save_png(root / c / names.format(i=i, c=c.lower()), gray8(1000 * ci + i, shape))
    return root


def dicom_file(path: Path, arr: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 12,
               window: tuple[float, float] | None = None, voi_lut: tuple[list[int], list[int]] | None = None,
               patient_id: str | None = "PID0001", with_pixels: bool = True) -> Path:
    """Write a DICOM file with pydicom's Dataset API (16 bits allocated, unsigned).

    It always carries a PatientName and PatientBirthDate (which must never reach any output).
    """
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_class = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, meta.MediaStorageSOPInstanceUID, "DX"
    ds.PatientName, ds.PatientBirthDate = PATIENT_NAME, BIRTH_DATE
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_lut is not None:
        item = Dataset()
        item.add_new("LUTDescriptor", "US", list(voi_lut[0]))
        item.add_new("LUTData", "US", list(voi_lut[1]))
        ds.VOILUTSequence = Sequence([item])
    if with_pixels:
        ds.PixelData = np.ascontiguousarray(arr, dtype="<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def medmnist_npz(path: Path, n: tuple[int, int, int] = (12, 4, 4), size: int = 28, seed: int = 0) -> Path:
    """A MedMNIST-style npz with train/val/test images (N,H,W) uint8 and labels (N,1)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n):
        arrays[f"{split}_images"] = rng.integers(0, 256, (k, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % 2).reshape(k, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return path


def labelled_csv(src: Path, labels: list[str], per_label: int = 6) -> Path:
    """SRC/labels.csv (columns path, label) over SRC/img/*.png: ``per_label`` distinct 16-px images per label."""
    rows = []
    for li, lab in enumerate(labels):
        for i in range(per_label):
            save_png(src / "img" / f"{li}_{i}.png", gray8(100 * li + i, (16, 16)))
            rows.append({"path": f"img/{li}_{i}.png", "label": lab})
    with open(src / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label"])
        w.writeheader()
        w.writerows(rows)
    return src / "labels.csv"
