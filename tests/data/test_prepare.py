"""`prepare` end to end on tiny fixtures: every source format, the output contract, patient-level
splits, duplicates, --patient-regex, --fit, and the CLI."""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.prepare_fixtures import BIRTH_DATE, PATIENT_NAME, class_folder, dicom_file, gray8, medmnist_npz, save_png
from xraygan.cli import main
from xraygan.data.dataset import MANIFEST_COLUMNS, PreparedDataset
from xraygan.data.prepare import prepare
from xraygan.data.splits import KERMANY_PATIENT_REGEX, compile_patient_regex, patient_from_name, patient_splits


def _manifest(root):
    with open(root / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _no_patient_in_two_splits(rows):
    where = {}
    for r in rows:
        assert where.setdefault(r["patient_id"], r["split"]) == r["split"], r["patient_id"]


def test_folder_contract(tmp_path):
    src = class_folder(tmp_path / "src", n_per_class=10)
    ds = prepare(src, tmp_path / "out", size=8, patient_regex=r"img(\d+)", keep_source_names=True)
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["format"] == "xraygan-prepared" and info["format_version"] == 1 and info["size"] == 8
    assert info["classes"] == ["NORMAL", "PNEUMONIA"] and info["source_type"] == "folder"
    assert sum(sum(v.values()) for v in info["counts"].values()) == 20
    rows = _manifest(tmp_path / "out")
    assert list(rows[0])[:5] == list(MANIFEST_COLUMNS) and len(rows) == 20
    pix = np.load(tmp_path / "out" / "pixels.npy")
    assert pix.shape == (20, 8, 8) and pix.dtype == np.uint8
    for k, r in enumerate(rows):
        png = np.asarray(Image.open(tmp_path / "out" / r["file"]))
        assert png.shape == (8, 8) and np.array_equal(png, pix[k])
        src_pixels = np.asarray(Image.open(src / r["source"]))
        assert r["sha256"] == hashlib.sha256(src_pixels.tobytes()).hexdigest()
    assert isinstance(ds, PreparedDataset) and len(ds) == 20 and ds.tensor(size=4).shape == (20, 1, 4, 4)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_16bit_and_rgba_sources(tmp_path):
    src = tmp_path / "src"
    save_png(src / "a" / "x16.png", np.full((16, 16), 32768, np.uint16))  # mid-gray in 16 bit
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 100, 255
    save_png(src / "b" / "rgba.png", rgba)
    prepare(src, tmp_path / "out", size=8, val=0, test=0)
    pix = np.load(tmp_path / "out" / "pixels.npy")
    assert np.all(pix[0] == 128)  # not clipped to 255
    assert np.all(pix[1] == 100)


def test_csv_source_keeps_extra_columns_and_patient_ids(tmp_path):
    root = tmp_path / "data"
    rows = []
    for i in range(24):
        label = "NORMAL" if i % 2 else "PNEUMONIA"
        save_png(root / "imgs" / f"{i}.png", gray8(i))
        rows.append({"path": f"imgs/{i}.png", "label": label, "subtype": f"s{i % 3}", "patient_id": f"p{i // 4}{label[0]}"})
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    prepare(root / "labels.csv", tmp_path / "out", size=8, val=0.25, test=0.25, seed=3, patient_ids="raw")
    out = _manifest(tmp_path / "out")
    assert [r["subtype"] for r in out] == [r["subtype"] for r in rows]
    assert [r["patient_id"] for r in out] == [r["patient_id"] for r in rows]
    _no_patient_in_two_splits(out)
    assert {r["split"] for r in out} == {"train", "val", "test"}


def test_npz_keeps_its_split_and_names_labels(tmp_path):
    npz = medmnist_npz(tmp_path / "pneumoniamnist.npz", n=(12, 4, 6), size=28)
    ds = prepare(npz, tmp_path / "out", size=16, label_names=["normal", "pneumonia"], allow_upsample=False, fit="squash")
    assert ds.classes == ["normal", "pneumonia"]
    assert list(ds.splits).count("train") == 12 and list(ds.splits).count("val") == 4 and list(ds.splits).count("test") == 6
    assert ds.info["splits_from"] == "source"
    with np.load(npz) as z:
        first = z["train_images"][0]
    assert ds.rows[0]["sha256"] == hashlib.sha256(first.tobytes()).hexdigest()


def test_dicom_folder_uses_patient_id_and_copies_no_other_identifier(tmp_path):
    pytest.importorskip("pydicom")
    src = tmp_path / "src"
    ramp = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 16)
    for i in range(4):
        dicom_file(src / "NORMAL" / f"n{i}.dcm", (ramp + i) % 4096, patient_id=f"PAT{i // 2}")
        dicom_file(src / "PNEUMONIA" / f"p{i}.dcm", (4095 - ramp - i), photometric="MONOCHROME1", window=(2048, 4096), patient_id=f"PAT{10 + i}")
    ds = prepare(src, tmp_path / "out", size=8, val=0.25, test=0.25, patient_ids="raw")
    assert sorted(set(ds.patients)) == sorted({"PAT0", "PAT1", "PAT10", "PAT11", "PAT12", "PAT13"})
    assert ds.info["patient_ids_from"] == "dicom"
    _no_patient_in_two_splits(ds.rows)
    # MONOCHROME1 inverted 4095-ramp looks like the ramp again: bright at the bottom right
    pix = ds.pixels()
    assert pix[-1][-1, -1] > pix[-1][0, 0]
    for f in (tmp_path / "out").rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            for secret in (PATIENT_NAME, "Janette", BIRTH_DATE):
                assert secret.encode() not in data, f"{secret} leaked into {f}"


def test_patient_splits_are_by_patient_stratified_and_seeded():
    rng = np.random.default_rng(0)
    labels, patients = [], []
    for p in range(120):
        lab = "A" if p < 80 else "B"
        for _ in range(int(rng.integers(1, 4))):
            labels.append(lab)
            patients.append(f"p{p}")
    s1 = patient_splits(labels, patients, 0.1, 0.2, seed=1)
    assert s1 == patient_splits(labels, patients, 0.1, 0.2, seed=1)
    assert s1 != patient_splits(labels, patients, 0.1, 0.2, seed=2)
    rows = [{"patient_id": p, "split": s} for p, s in zip(patients, s1)]
    _no_patient_in_two_splits(rows)
    for lab in "AB":
        n = sum(1 for x in labels if x == lab)
        got = {s: sum(1 for x, y in zip(labels, s1) if x == lab and y == s) for s in ("train", "val", "test")}
        assert abs(got["val"] - 0.1 * n) <= 3 and abs(got["test"] - 0.2 * n) <= 3, got


def test_duplicates_dropped_and_reported(tmp_path):
    src = class_folder(tmp_path / "src", n_per_class=5)
    shutil.copy(src / "NORMAL" / "img0.png", src / "NORMAL" / "zz_copy.png")
    shutil.copy(src / "NORMAL" / "img1.png", src / "PNEUMONIA" / "zz_other_label.png")
    ds = prepare(src, tmp_path / "out", size=8, val=0, test=0)
    assert len(ds) == 10 and len(set(r["sha256"] for r in ds.rows)) == 10
    dropped = {d["file"]: d for d in ds.info["duplicates_dropped"]}
    assert dropped["NORMAL/zz_copy.png"]["duplicate_of"] == "NORMAL/img0.png"
    assert dropped["PNEUMONIA/zz_other_label.png"]["same_label"] is False


@pytest.mark.parametrize("name, pid", [
    ("person123_bacteria_456.jpeg", "person123"),
    ("person7_virus_12.jpeg", "person7"),
    ("IM-0115-0001.jpeg", "im0115"),
    ("IM-0429-0001-0002.jpeg", "im0429"),
    ("NORMAL2-IM-0383-0001.jpeg", "normal2-im0383"),
    ("NORMAL/IM-0117-0001.jpeg", "im0117"),
])
def test_documented_patient_regex(name, pid):
    assert patient_from_name(compile_patient_regex(KERMANY_PATIENT_REGEX), name) == pid


def test_patient_regex_named_group_and_whole_match():
    assert patient_from_name(compile_patient_regex(r"(?P<patient>sub-\d+)_(\d+)"), "sub-07_3.png") == "sub-07"
    assert patient_from_name(compile_patient_regex(r"^[a-z]+\d"), "Abc1_x.png") == "abc1"
    assert patient_from_name(compile_patient_regex(r"zzz"), "abc.png") is None


def test_patient_regex_in_prepare(tmp_path):
    src = tmp_path / "src"
    for p in range(8):
        save_png(src / "PNEUMONIA" / f"person{p}_bacteria_{2 * p}.png", gray8(p))
        save_png(src / "PNEUMONIA" / f"person{p}_virus_{2 * p + 1}.png", gray8(100 + p))
        save_png(src / "NORMAL" / f"IM-{p:04d}-0001.png", gray8(200 + p))
        save_png(src / "NORMAL" / f"IM-{p:04d}-0002.png", gray8(300 + p))
    ds = prepare(src, tmp_path / "out", size=8, patient_regex=KERMANY_PATIENT_REGEX, val=0.25, test=0.25, patient_ids="raw")
    assert ds.info["n_patients"] == 16 and ds.info["patient_ids_from"] == "regex"
    assert {"person3", "im0003"} <= set(ds.patients)
    _no_patient_in_two_splits(ds.rows)


def test_loud_warning_when_each_image_is_its_own_patient(tmp_path, caplog):
    src = class_folder(tmp_path / "src", n_per_class=4)
    with caplog.at_level(logging.WARNING):
        ds = prepare(src, tmp_path / "out", size=8)
    assert "EVERY image is treated as its own patient" in caplog.text and "leak" in caplog.text
    assert ds.info["patient_ids_from"] == "per-image" and ds.info["n_patients"] == 8


@pytest.mark.parametrize("fit", ["pad", "crop", "squash"])
def test_fit_modes_on_wide_images(tmp_path, fit):
    src = tmp_path / "src"
    for c in ("a", "b"):
        save_png(src / c / "wide.png", np.full((16, 32), 200 if c == "a" else 100, np.uint8))
    ds = prepare(src, tmp_path / "out", size=16, fit=fit, val=0, test=0)
    img = ds.pixels()[0]
    assert img.shape == (16, 16)
    if fit == "pad":
        assert img[:3].max() == 0 and img[-3:].max() == 0 and np.all(img[5:11] == 200)  # edge rows are blended
    else:
        assert np.all(img == 200)
    assert ds.info["options"]["fit"] == fit


def test_allow_upsample(tmp_path):
    src = class_folder(tmp_path / "src", n_per_class=2, shape=(8, 8))
    ds = prepare(src, tmp_path / "out", size=16, allow_upsample=True, val=0, test=0)
    assert ds.pixels().shape == (4, 16, 16)


def test_cli_prepare_and_force(tmp_path, capsys):
    src = class_folder(tmp_path / "src", n_per_class=4)
    out = tmp_path / "out"
    assert main(["prepare", str(src), str(out), "--size", "8", "--seed", "1", "-q"]) == 0
    assert "wrote 8 images" in capsys.readouterr().out
    assert main(["prepare", str(src), str(out), "--size", "16", "-q"]) == 2
    assert "--force" in capsys.readouterr().err and PreparedDataset.open(out).size == 8  # old result kept
    assert main(["prepare", str(src), str(out), "--size", "16", "--force", "-q", "--workers", "2"]) == 0
    assert PreparedDataset.open(out).size == 16


def test_workers_give_identical_output(tmp_path):
    src = class_folder(tmp_path / "src", n_per_class=40)
    a = prepare(src, tmp_path / "a", size=8, workers=1)
    b = prepare(src, tmp_path / "b", size=8, workers=2)
    assert np.array_equal(a.pixels(), b.pixels()) and a.rows == b.rows


def test_any_size_allows_non_power_of_two(tmp_path):
    src = class_folder(tmp_path / "src", n_per_class=2, shape=(32, 32))
    ds = prepare(src, tmp_path / "out", size=24, any_size=True, val=0, test=0)
    assert ds.pixels().shape == (4, 24, 24) and ds.info["options"]["any_size"] is True


def test_csv_of_dicoms_takes_patient_id_from_header(tmp_path):
    pytest.importorskip("pydicom")
    root = tmp_path / "d"
    ramp = np.arange(256, dtype=np.uint16).reshape(16, 16)
    rows = []
    for i in range(6):
        dicom_file(root / f"{i}.dcm", ramp + i, patient_id=f"P{i // 2}")
        rows.append(f"{i}.dcm,{'A' if i < 3 else 'B'}")
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    ds = prepare(root / "labels.csv", tmp_path / "out", size=8, val=0, test=0, patient_ids="raw")
    assert list(ds.patients) == ["P0", "P0", "P1", "P1", "P2", "P2"] and ds.info["patient_ids_from"] == "dicom"


def test_npz_rgb_images(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rgb.npz", train_images=rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8),
             train_labels=np.array([[0], [1], [0], [1]]))
    ds = prepare(tmp_path / "rgb.npz", tmp_path / "out", size=8)
    assert ds.pixels().shape == (4, 8, 8) and ds.classes == ["0", "1"] and set(ds.splits) == {"train"}


def test_warns_when_a_split_gets_no_images_of_a_class(tmp_path, caplog):
    src = class_folder(tmp_path / "src", n_per_class=3)
    with caplog.at_level(logging.WARNING):
        prepare(src, tmp_path / "out", size=8, patient_regex=r"img(\d)", val=0.1, test=0.1)
    assert "no images of val/NORMAL" in caplog.text
