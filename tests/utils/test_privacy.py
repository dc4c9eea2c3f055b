"""Privacy (issue 15): no DICOM identifier reaches any output; patient ids are pseudonymised with a
key that never leaves its file; the split and the folds do not depend on the key; model cards
escape labels."""
from __future__ import annotations

import csv
import io
import json
import re
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.prepare_fixtures import gray8, labelled_csv, save_png
from xraygan.cli import main

# distinctive strings planted in the DICOM headers and file names; none may appear in any output
PATIENT_NAME = "Quixotebrand^Zelphinia"
PATIENT_ID = "MRNQX7731"
BIRTH_DATE = "19370511"
INSTITUTION = "Saint Wobbleford Infirmary"
UID_ROOT = "1.2.826.0.1.3680043.9.7351"
FILE_STEM = "Frobnitzky"
SECRETS = [PATIENT_NAME, "Quixotebrand", "Zelphinia", PATIENT_ID, "QX7731", BIRTH_DATE, INSTITUTION, "Wobbleford",
           UID_ROOT, "3680043.9.7351", FILE_STEM]


def _dicom(path: Path, arr: np.ndarray, patient: int, index: int) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    sop_class = "1.2.840.10008.5.1.4.1.1.1.1"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = f"{UID_ROOT}.3.{index}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, meta.MediaStorageSOPInstanceUID, "DX"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{UID_ROOT}.1.{patient}", f"{UID_ROOT}.2.{patient}"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT_NAME, f"{PATIENT_ID}-{patient}", BIRTH_DATE
    ds.InstitutionName = INSTITUTION
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.ascontiguousarray(arr, dtype="<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _dicom_source(root: Path, n_per_class: int = 8) -> Path:
    for ci, cls in enumerate(("NORMAL", "PNEUMONIA")):
        for i in range(n_per_class):
            k = ci * 100 + i
            arr = (gray8(k, (16, 16)).astype(np.uint16) * 16)
            _dicom(root / cls / f"{FILE_STEM}_{UID_ROOT}.3.{k}.dcm", arr, patient=ci * 10 + i // 2, index=k)
    return root


def _payloads(path: Path) -> list[tuple[str, bytes]]:
    """The raw bytes of ``path`` plus every decompressed part: zip members (torch checkpoints),
    PNG text chunks and compressed PNG chunks."""
    data = path.read_bytes()
    out = [(str(path), data)]
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            out += [(f"{path}!{n}", z.read(n)) for n in z.namelist()]
    if data.startswith(b"\x89PNG"):
        pos = 8
        while pos + 8 <= len(data):
            n, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
            body = data[pos + 8:pos + 8 + n]
            if kind in (b"zTXt", b"iTXt", b"IDAT"):
                try:
                    start = body.index(b"\0") + 2 if kind == b"zTXt" else 0
                    out.append((f"{path}!{kind.decode()}", zlib.decompressobj().decompress(body[start:])))
                except (ValueError, zlib.error):
                    pass
            pos += 12 + n
    return out


def _assert_clean(folder: Path, secrets=SECRETS) -> int:
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    assert files, f"no output in {folder}"
    for f in files:
        assert not any(s in f.name for s in secrets), f"identifier in file name {f}"
        for where, blob in _payloads(f):
            for s in secrets:
                for enc in (s.encode("utf-8"), s.encode("utf-16-le")):
                    assert enc not in blob, f"{s!r} leaked into {where}"
    return len(files)


def test_no_dicom_identifier_reaches_any_output(tmp_path):
    pytest.importorskip("pydicom")
    src = _dicom_source(tmp_path / "src")
    prep, run = tmp_path / "prep", tmp_path / "run"
    assert main(["prepare", str(src), str(prep), "--size", "16", "--val", "0.25", "--test", "0.25", "-q"]) == 0
    _assert_clean(prep)
    with open(prep / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(re.fullmatch(r"p-[0-9a-f]{16}", r["patient_id"]) for r in rows)
    assert len({r["patient_id"] for r in rows}) == 8  # 2 images per patient: the grouping is unchanged
    assert all(re.fullmatch(r"source-\d+", r["source"]) for r in rows)
    assert main(["train", str(prep), "--out", str(run), "--steps", "2", "--batch", "8", "--width", "8", "--latent-dim", "8",
                 "--device", "cpu", "--conditional", "-q"]) == 0
    assert main(["evaluate", str(run), "--real", str(prep), "--features", "random", "--n", "8", "--checkpoint", "latest",
                 "--ssim-pairs", "4", "--device", "cpu", "-q"]) == 0
    assert main(["evaluate", "--real", str(prep), "--fake", str(prep), "--features", "random", "--n", "8", "--ssim-pairs", "4",
                 "--out", str(tmp_path / "ev" / "eval.json"), "--device", "cpu", "-q"]) == 0
    from xraygan.report.model_card import write_model_card

    write_model_card(run)  # again, now with the evaluation in it
    assert main(["generate", str(run), "--n", "4", "--out", str(tmp_path / "syn-png"), "-q"]) == 0
    assert main(["generate", str(run), "--n", "4", "--out", str(tmp_path / "syn-dcm"), "--format", "dicom", "-q"]) == 0
    assert main(["report", str(run), "--out", str(tmp_path / "rep" / "report.html"), "-q"]) == 0
    assert (run / "MODEL_CARD.md").is_file() and list((run / "checkpoints").glob("*.pt"))
    for folder in (run, tmp_path / "syn-png", tmp_path / "syn-dcm", tmp_path / "ev", tmp_path / "rep"):
        _assert_clean(folder)


def test_keep_source_names_and_raw_ids_are_opt_in(tmp_path):
    pytest.importorskip("pydicom")
    src = _dicom_source(tmp_path / "src", n_per_class=4)
    assert main(["prepare", str(src), str(tmp_path / "out"), "--size", "16", "--val", "0", "--test", "0",
                 "--patient-ids", "raw", "--keep-source-names", "-q"]) == 0
    with open(tmp_path / "out" / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["patient_id"] for r in rows} == {f"{PATIENT_ID}-{p}" for p in (0, 1, 10, 11)}
    assert all(FILE_STEM in r["source"] for r in rows)
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["patient_ids"] == "raw" and info["patient_key_fingerprint"] is None and info["source_names"] == "kept"


def _csv_source(root: Path, n_patients: int = 12) -> Path:
    rows = []
    for p in range(n_patients):
        for k in range(2):
            i = 2 * p + k
            save_png(root / "img" / f"{i}.png", gray8(i))
            rows.append({"path": f"img/{i}.png", "label": "A" if p % 2 else "B", "patient_id": f"HOSP-{p:03d}"})
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "patient_id"])
        w.writeheader()
        w.writerows(rows)
    return root / "labels.csv"


def _rows(folder: Path) -> list[dict]:
    with open(folder / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _groups(rows: list[dict]) -> set[frozenset]:
    by: dict[str, set] = {}
    for r in rows:
        by.setdefault(r["patient_id"], set()).add(r["file"])
    return {frozenset(v) for v in by.values()}


def test_pseudonymised_ids_key_file_and_split_independent_of_key(tmp_path, monkeypatch):
    from xraygan.utils.privacy import key_fingerprint

    csv_path = _csv_source(tmp_path / "src")
    default_key = tmp_path / "cfg" / "patient.key"
    monkeypatch.setenv("XRAYGAN_PATIENT_KEY_FILE", str(default_key))
    assert main(["prepare", str(csv_path), str(tmp_path / "a"), "--size", "8", "-q"]) == 0
    assert default_key.is_file() and stat.S_IMODE(default_key.stat().st_mode) == 0o600  # created for the user, private
    key = default_key.read_bytes().strip()
    other = tmp_path / "other.key"
    other.write_text("another secret of enough length\n")
    assert main(["prepare", str(csv_path), str(tmp_path / "b"), "--size", "8", "--patient-key", str(other), "-q"]) == 0
    assert main(["prepare", str(csv_path), str(tmp_path / "r"), "--size", "8", "--patient-ids", "raw", "-q"]) == 0
    a, b, r = _rows(tmp_path / "a"), _rows(tmp_path / "b"), _rows(tmp_path / "r")
    assert all(re.fullmatch(r"p-[0-9a-f]{16}", x["patient_id"]) for x in a + b)
    assert {x["patient_id"] for x in a}.isdisjoint({x["patient_id"] for x in b})  # another key, other pseudonyms
    assert [x["patient_id"] for x in r][:2] == ["HOSP-000", "HOSP-000"]
    assert [x["split"] for x in a] == [x["split"] for x in b] == [x["split"] for x in r]  # the split ignores the key
    assert _groups(a) == _groups(b) == _groups(r)  # same patients grouped together
    info = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert info["patient_ids"] == "pseudonymised" and info["patient_key_fingerprint"] == key_fingerprint(key)
    assert json.loads((tmp_path / "b" / "dataset.json").read_text())["patient_key_fingerprint"] != info["patient_key_fingerprint"]
    for out in ("a", "b"):  # neither the raw ids nor the key are anywhere in the output
        _assert_clean(tmp_path / out, ["HOSP-0", key.decode(), "another secret"])
    # the experiment's folds do not depend on the key either
    pytest.importorskip("sklearn")
    from xraygan.data.dataset import PreparedDataset
    from xraygan.experiments.folds import make_folds

    fa = make_folds(PreparedDataset.open(tmp_path / "a"), n_folds=2, seed=1, real_fraction=0.5)
    fb = make_folds(PreparedDataset.open(tmp_path / "b"), n_folds=2, seed=1, real_fraction=0.5)
    assert all(np.array_equal(x.train, y.train) and np.array_equal(x.test, y.test) for x, y in zip(fa, fb))


def test_ids_in_file_names_and_identifying_csv_columns_stay_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XRAYGAN_PATIENT_KEY_FILE", str(tmp_path / "cfg" / "patient.key"))
    src = tmp_path / "names"
    for i in range(12):  # the patient id is in the file name, as in the public pediatric set
        save_png(src / ("A" if i % 2 else "B") / f"zorbluck{100 + i // 2}_scan_{i}.png", gray8(i))
    assert main(["prepare", str(src), str(tmp_path / "p"), "--size", "8", "--patient-regex", r"(zorbluck\d+)_", "-q"]) == 0
    rows = _rows(tmp_path / "p")
    assert all(re.fullmatch(r"source-\d+", r["source"]) for r in rows) and len({r["patient_id"] for r in rows}) == 6
    _assert_clean(tmp_path / "p", ["zorbluck10"])  # the ids; the pattern itself is in dataset.json
    assert main(["prepare", str(src), str(tmp_path / "k"), "--size", "8", "--patient-regex", r"(zorbluck\d+)_",
                 "--keep-source-names", "-q"]) == 0  # asked for: kept
    assert all("zorbluck" in r["source"] for r in _rows(tmp_path / "k"))
    # a CSV whose patient column is PatientID, with a name and a birth date beside it
    table = tmp_path / "csv"
    with_phi = []
    for i in range(12):
        save_png(table / "img" / f"{i}.png", gray8(i))
        with_phi.append({"path": f"img/{i}.png", "label": "A" if i % 2 else "B", "PatientID": f"MRN{900 + i // 2}",
                         "PatientName": f"Vexworth^Ilsa{i}", "BirthDate": "19370511", "view": "PA"})
    with open(table / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(with_phi[0]))
        w.writeheader()
        w.writerows(with_phi)
    capsys.readouterr()
    assert main(["prepare", str(table / "labels.csv"), str(tmp_path / "c"), "--size", "8"]) == 0
    err = capsys.readouterr().err
    assert "PatientName, BirthDate" in err and "--keep-identifying-columns" in err
    rows = _rows(tmp_path / "c")
    assert len({r["patient_id"] for r in rows}) == 6 and all(r["patient_id"].startswith("p-") for r in rows)
    assert [r["view"] for r in rows] == ["PA"] * 12 and "PatientName" not in rows[0]
    _assert_clean(tmp_path / "c", ["MRN90", "Vexworth", "19370511"])
    assert main(["prepare", str(table / "labels.csv"), str(tmp_path / "c2"), "--size", "8", "--keep-identifying-columns", "-q"]) == 0
    assert _rows(tmp_path / "c2")[0]["BirthDate"] == "19370511"


def test_bad_patient_key_is_one_clear_error(tmp_path, capsys):
    csv_path = _csv_source(tmp_path / "src", n_patients=4)
    rc = main(["prepare", str(csv_path), str(tmp_path / "o1"), "--size", "8", "--patient-key", str(tmp_path / "missing.key")])
    err = capsys.readouterr().err
    assert rc != 0 and "--patient-key" in err and "missing.key" in err and "Traceback" not in err
    short = tmp_path / "short.key"
    short.write_text("abc")
    rc = main(["prepare", str(csv_path), str(tmp_path / "o2"), "--size", "8", "--patient-key", str(short)])
    assert rc != 0 and "too short" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_model_card_escapes_labels(tmp_path):
    """A label such as <script> is shown as text in MODEL_CARD.md, never as HTML or Markdown."""
    from xraygan.report.model_card import md_code, md_text, write_model_card

    labels = ["<script>alert(1)</script>", "*bold* | [x](javascript:alert(1))"]
    src = tmp_path / "src"
    labelled_csv(src, labels)
    prep, run = tmp_path / "prep", tmp_path / "run"
    assert main(["prepare", str(src / "labels.csv"), str(prep), "--size", "16", "--val", "0", "--test", "0", "-q"]) == 0
    assert main(["train", str(prep), "--out", str(run), "--steps", "1", "--batch", "8", "--width", "8", "--latent-dim", "8",
                 "--device", "cpu", "--conditional", "-q"]) == 0
    text = write_model_card(run).read_text()
    body = text.split("## Config")[0]  # the YAML config is a fenced code block: literal by construction
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "\\*bold\\* \\| \\[x\\](javascript" in body  # emphasis, table cell and link markers escaped
    assert md_text("a|b") == "a\\|b" and md_text("fd_xray") == "fd_xray" and md_code("x`y") == "``x`y``"
    markdown = pytest.importorskip("markdown")
    html = markdown.markdown(text, extensions=["tables", "fenced_code"])
    assert "<script" not in html and 'href="javascript' not in html and "<em>bold" not in html
