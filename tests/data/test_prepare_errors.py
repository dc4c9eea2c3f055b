"""Every bad input of `xraygan prepare`: a one-line error naming the file or option, and no OUT."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.prepare_fixtures import class_folder, dicom_file, gray8, save_png
from xraygan.cli import main


def _fails(tmp_path, capsys, argv, *must_contain, code=1):
    """Run `xraygan prepare argv OUT`; assert exit ``code`` (1: bad input; 2: bad option), a one-line
    message naming things, no OUT."""
    out = tmp_path / "OUT"
    rc = main(["prepare", *map(str, argv), str(out), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    assert len(err.splitlines()) == 1, err
    for s in must_contain:
        assert str(s) in err, f"{s!r} not in {err!r}"
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".OUT")]  # no staging leftovers
    return err


def _csv(path, rows, fields=("path", "label")):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fields))
        w.writeheader()
        w.writerows(rows)
    return path


def test_missing_source(tmp_path, capsys):
    _fails(tmp_path, capsys, [tmp_path / "nope"], tmp_path / "nope", "does not exist")


def test_empty_source(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _fails(tmp_path, capsys, [tmp_path / "empty"], tmp_path / "empty", "empty")


def test_images_without_class_folders(tmp_path, capsys):
    save_png(tmp_path / "flat" / "a.png", gray8(0))
    _fails(tmp_path, capsys, [tmp_path / "flat"], tmp_path / "flat", "sub-folder")


def test_empty_class_folder(tmp_path, capsys):
    src = class_folder(tmp_path / "src", n_per_class=2)
    (src / "EMPTY").mkdir()
    _fails(tmp_path, capsys, [src], src / "EMPTY", "empty")


def test_single_class(tmp_path, capsys):
    src = class_folder(tmp_path / "src", n_per_class=3, classes=("ONLY",))
    _fails(tmp_path, capsys, [src], src, "single class", "--allow-single-class")


def test_single_class_allowed(tmp_path, capsys):
    src = class_folder(tmp_path / "src", n_per_class=3, classes=("ONLY",))
    assert main(["prepare", str(src), str(tmp_path / "OUT"), "--size", "8", "--allow-single-class", "-q"]) == 0


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "zero-byte", "non-image"])
def test_bad_image_refused_then_skipped(tmp_path, capsys, kind):
    src = class_folder(tmp_path / "src", n_per_class=3)
    if kind == "corrupt":
        bad = src / "NORMAL" / "bad.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    elif kind == "truncated":
        bad = save_png(src / "NORMAL" / "bad.png", gray8(9, (64, 64)))
        bad.write_bytes(bad.read_bytes()[:200])
    elif kind == "zero-byte":
        bad = src / "NORMAL" / "bad.jpg"
        bad.write_bytes(b"")
    else:
        bad = src / "NORMAL" / "notes.txt"
        bad.write_text("not an image")
    _fails(tmp_path, capsys, [src, "--size", "8"], bad, "--skip-bad")
    # --skip-bad: prepared without it, and the skipped file is listed
    out = tmp_path / "OUT"
    assert main(["prepare", str(src), str(out), "--size", "8", "--skip-bad"]) == 0
    assert str(bad) in capsys.readouterr().err
    info = json.loads((out / "dataset.json").read_text())
    assert [s["file"] for s in info["skipped"]] == [bad.relative_to(src).as_posix()] and info["n_images"] == 6


def test_csv_missing_column(tmp_path, capsys):
    save_png(tmp_path / "d" / "a.png", gray8(0))
    f = _csv(tmp_path / "d" / "labels.csv", [{"path": "a.png", "diagnosis": "x"}], ("path", "diagnosis"))
    _fails(tmp_path, capsys, [f], f, "'label'", "--label-col")


def test_csv_missing_patient_column(tmp_path, capsys):
    save_png(tmp_path / "d" / "a.png", gray8(0))
    f = _csv(tmp_path / "d" / "labels.csv", [{"path": "a.png", "label": "x"}])
    _fails(tmp_path, capsys, [f, "--patient-col", "subject"], f, "subject", "--patient-col")


def test_csv_path_outside_its_folder(tmp_path, capsys):
    save_png(tmp_path / "outside.png", gray8(0))
    save_png(tmp_path / "d" / "a.png", gray8(1))
    f = _csv(tmp_path / "d" / "labels.csv", [{"path": "a.png", "label": "x"}, {"path": "../outside.png", "label": "y"}])
    _fails(tmp_path, capsys, [f], f, "line 3", "../outside.png", "outside")


def test_csv_missing_file(tmp_path, capsys):
    save_png(tmp_path / "d" / "a.png", gray8(1))
    f = _csv(tmp_path / "d" / "labels.csv", [{"path": "a.png", "label": "x"}, {"path": "gone.png", "label": "y"}])
    _fails(tmp_path, capsys, [f, "--size", "8"], tmp_path / "d" / "gone.png", "not found")


@pytest.mark.parametrize("size", ["48", "4", "2048", "0"])
def test_size_not_power_of_two(tmp_path, capsys, size):
    src = class_folder(tmp_path / "src", n_per_class=2)
    _fails(tmp_path, capsys, [src, "--size", size], f"--size {size}", "power of two", code=2)


def test_upsampling_refused(tmp_path, capsys):
    src = class_folder(tmp_path / "src", n_per_class=2, shape=(16, 16))
    _fails(tmp_path, capsys, [src, "--size", "32"], "--size 32", "--allow-upsample", "img0.png")


def test_bad_fractions(tmp_path, capsys):
    src = class_folder(tmp_path / "src", n_per_class=2)
    _fails(tmp_path, capsys, [src, "--val", "0.6", "--test", "0.5"], "--val", "--test", code=2)


def test_patient_regex_not_matching(tmp_path, capsys):
    src = class_folder(tmp_path / "src", n_per_class=2)
    _fails(tmp_path, capsys, [src, "--size", "8", "--patient-regex", r"person(\d+)"], "--patient-regex", "img0.png")


def test_patient_regex_invalid(tmp_path, capsys):
    src = class_folder(tmp_path / "src", n_per_class=2)
    _fails(tmp_path, capsys, [src, "--size", "8", "--patient-regex", "(unclosed"], "--patient-regex", "not a valid", code=2)


def test_npz_label_names_too_few(tmp_path, capsys):
    from tests.prepare_fixtures import medmnist_npz

    npz = medmnist_npz(tmp_path / "m.npz")
    _fails(tmp_path, capsys, [npz, "--size", "16", "--label-names", "one"], "--label-names")


def test_dicom_without_pixel_data(tmp_path, capsys):
    pytest.importorskip("pydicom")
    src = tmp_path / "src"
    ramp = np.arange(256, dtype=np.uint16).reshape(16, 16)
    dicom_file(src / "A" / "ok.dcm", ramp)
    bad = dicom_file(src / "B" / "nopixels.dcm", ramp, with_pixels=False)
    _fails(tmp_path, capsys, [src, "--size", "8"], bad, "no pixel data")
