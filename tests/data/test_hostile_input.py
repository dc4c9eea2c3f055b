"""Hostile and damaged input (issue 15): one clear line naming the file, never a traceback, and no
partial output. Each test pins one bug found by hand or by tests/data/test_fuzz_loaders.py."""
from __future__ import annotations

import io
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.prepare_fixtures import class_folder, dicom_file, gray8, medmnist_npz, save_png
from xraygan.cli import main
from xraygan.errors import XrayganError


def _fails(tmp_path, capsys, argv, *must_contain):
    """`xraygan prepare argv OUT` fails with one line naming things, and leaves no OUT nor staging."""
    out = tmp_path / "OUT"
    rc = main(["prepare", *map(str, argv), str(out), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc != 0, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for s in must_contain:
        assert str(s) in err, f"{s!r} not in {err!r}"
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".OUT")]
    return err


# --- decompression bombs ---------------------------------------------------------------------
def _bomb(path: Path, side: int) -> Path:
    """A PNG whose header claims side x side 8-bit gray pixels (the pixel data never matters: the
    size alone makes Pillow refuse it), written without allocating the image."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [10_000, 20_000])  # above the warning / the error limit of Pillow
def test_decompression_bomb_is_a_clear_error(tmp_path, capsys, side):
    src = class_folder(tmp_path / "src", n_per_class=3)
    bomb = _bomb(src / "NORMAL" / "bomb.png", side)
    from xraygan.data.io import decode_gray

    with pytest.raises(XrayganError, match="decompression bomb"):
        decode_gray(bomb)
    _fails(tmp_path, capsys, [src, "--size", "8"], bomb, "decompression bomb", "--skip-bad")


def test_decompression_bomb_skipped_with_skip_bad(tmp_path, caplog):
    from xraygan.data.prepare import prepare

    src = class_folder(tmp_path / "src", n_per_class=3)
    bomb = _bomb(src / "NORMAL" / "bomb.png", 20_000)
    with caplog.at_level(logging.WARNING):
        ds = prepare(src, tmp_path / "OUT", size=8, skip_bad=True)
    assert len(ds) == 6
    assert str(bomb) in caplog.text and "decompression bomb" in caplog.text
    assert len(ds.info["skipped"]) == 1 and "decompression bomb" in ds.info["skipped"][0]["error"]


# --- malformed npz ---------------------------------------------------------------------------
def test_npz_object_arrays_are_refused_without_unpickling(tmp_path, capsys):
    npz = tmp_path / "obj.npz"
    np.savez(npz, train_images=np.array([np.zeros((4, 4)), None], dtype=object), train_labels=np.zeros((2, 1), np.uint8))
    _fails(tmp_path, capsys, [npz, "--size", "8"], npz, "train_images", "Python objects")


def test_npz_empty_images_are_refused(tmp_path, capsys):
    npz = tmp_path / "zero.npz"
    np.savez(npz, train_images=np.zeros((2, 0, 0), np.uint8), train_labels=np.zeros((2, 1), np.uint8))
    _fails(tmp_path, capsys, [npz, "--size", "8"], npz, "0x0")


def test_npz_corrupt_member_is_refused(tmp_path, capsys):
    npz = medmnist_npz(tmp_path / "m.npz")
    data = bytearray(npz.read_bytes())
    with zipfile.ZipFile(npz) as zf:
        info = zf.getinfo("train_labels.npy")
    data[info.header_offset + 30 + len(info.filename) + 100] ^= 0xFF  # inside the labels' data: CRC mismatch
    npz.write_bytes(bytes(data))
    _fails(tmp_path, capsys, [npz, "--size", "8"], npz)


def test_npz_labels_header_larger_than_memory_is_refused_before_loading(tmp_path, capsys):
    npz = tmp_path / "huge.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (2**40, 1)})
    images = io.BytesIO()
    np.save(images, np.zeros((2, 4, 4), np.uint8))
    with zipfile.ZipFile(npz, "w") as zf:
        zf.writestr("train_images.npy", images.getvalue())
        zf.writestr("train_labels.npy", header.getvalue() + b"\0" * 16)  # 8 TiB claimed, 16 bytes stored
    _fails(tmp_path, capsys, [npz, "--size", "8"], npz, "train_labels")


def test_npz_arrays_larger_than_memory_are_refused(tmp_path, capsys, monkeypatch):
    import xraygan.data.io as xio

    monkeypatch.setattr(xio, "_memory_bytes", lambda: 100)
    npz = medmnist_npz(tmp_path / "m.npz")
    _fails(tmp_path, capsys, [npz, "--size", "8"], npz, "memory")


@pytest.mark.parametrize("labels", [np.zeros((3, 1), np.uint8), np.array(3), np.zeros((2, 2), np.uint8)])
def test_npz_label_shapes_that_do_not_match(tmp_path, capsys, labels):
    npz = tmp_path / "m.npz"
    np.savez(npz, train_images=np.zeros((2, 8, 8), np.uint8), train_labels=labels)
    _fails(tmp_path, capsys, [npz, "--size", "8"], npz, "unexpected shapes")


def test_npz_huge_label_value_does_not_allocate_a_name_per_class(tmp_path):
    import subprocess
    import sys

    npz = tmp_path / "m.npz"
    np.savez(npz, train_images=np.zeros((2, 8, 8), np.uint8), train_labels=np.array([[0], [2**40]]))
    # it used to build 2**40 class names until memory ran out: run it in a child with 2 GiB at most
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
            "from xraygan.data.sources import read_npz; print(read_npz(__import__('pathlib').Path(sys.argv[1])).classes)")
    res = subprocess.run([sys.executable, "-c", code, str(npz)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == str(["0", str(2**40)]), res.stderr[-500:]


@pytest.mark.parametrize("labels,what", [(np.array(["a", "b"]), "integer class labels"), (np.array([0.5, 1.0]), "whole number"),
                                         (np.zeros((0, 1), np.uint8), "no images")])
def test_npz_bad_label_values(tmp_path, capsys, labels, what):
    npz = tmp_path / "m.npz"
    np.savez(npz, train_images=np.zeros((len(labels), 8, 8), np.uint8), train_labels=labels)
    _fails(tmp_path, capsys, [npz, "--size", "8"], npz, what)


# --- DICOM rescale --------------------------------------------------------------------------
@pytest.mark.parametrize("slope", ["0", "NaN", "inf"])
def test_dicom_degenerate_rescale_slope_is_a_clear_error(tmp_path, capsys, slope):
    pytest.importorskip("pydicom")
    from xraygan.data.dicom import read_dicom

    path = dicom_file(tmp_path / "x.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8) * 50)
    data = path.read_bytes()
    import pydicom

    ds = pydicom.dcmread(path)
    ds.add_new("RescaleSlope", "DS", "101.25")  # placeholder: pydicom refuses to hold NaN/inf itself
    ds.add_new("RescaleIntercept", "DS", "0")
    ds.save_as(path)
    path.write_bytes(path.read_bytes().replace(b"101.25", slope.encode().ljust(6)))
    assert data != path.read_bytes()
    with pytest.raises(XrayganError, match="RescaleSlope"):
        read_dicom(path)


def test_dicom_degenerate_rescale_skipped_with_skip_bad(tmp_path):
    pytest.importorskip("pydicom")
    import pydicom

    from xraygan.data.prepare import prepare

    src = class_folder(tmp_path / "src", n_per_class=3)
    path = dicom_file(src / "NORMAL" / "zero.dcm", np.arange(256, dtype=np.uint16).reshape(16, 16) * 10)
    ds = pydicom.dcmread(path)
    ds.add_new("RescaleSlope", "DS", "0")
    ds.save_as(path)
    ds_ = prepare(src, tmp_path / "OUT", size=8, skip_bad=True)
    assert len(ds_) == 6 and len(ds_.info["skipped"]) == 1 and "RescaleSlope" in ds_.info["skipped"][0]["error"]


# --- file names ------------------------------------------------------------------------------
def test_non_utf8_file_and_class_names_are_prepared(tmp_path):
    from xraygan.data.prepare import prepare

    src = class_folder(tmp_path / "src", n_per_class=3)
    os.rename(src / "NORMAL" / "img0.png", os.fsencode(src / "NORMAL") + b"/img\xff.png")
    os.rename(src / "PNEUMONIA", os.fsencode(src) + b"/PNEU\xe9")
    ds = prepare(src, tmp_path / "OUT", size=8)  # used to fail writing manifest.csv (UnicodeEncodeError)
    assert len(ds) == 6
    assert "PNEU\\xe9" in ds.classes
    assert "NORMAL/img\\xff.png" in (tmp_path / "OUT" / "manifest.csv").read_text(encoding="utf-8")


def test_overlong_csv_path_is_a_clear_error_then_skipped(tmp_path, capsys):
    src = class_folder(tmp_path / "src", n_per_class=3)
    long = "NORMAL/" + "y" * 300 + ".png"
    rows = "".join(f"{c}/img{i}.png,{c}\n" for c in ("NORMAL", "PNEUMONIA") for i in range(3))
    (src / "labels.csv").write_text("path,label\n" + rows + f"{long},NORMAL\n")
    _fails(tmp_path, capsys, [src / "labels.csv", "--size", "8"], "labels.csv line 8", "too long")
    assert main(["prepare", str(src / "labels.csv"), str(tmp_path / "OUT"), "--size", "8", "--skip-bad", "-q"]) == 0


def test_overlong_file_name_in_decoder(tmp_path):
    from xraygan.data.io import decode_gray

    with pytest.raises(XrayganError, match="too long"):
        decode_gray(tmp_path / ("z" * 300 + ".png"))


# --- YAML config files, run folders, checkpoints (found by fuzzing) --------------------------
def test_deeply_nested_yaml_config_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("[" * 5000 + "]" * 5000)
    rc = main(["prepare", "--config", str(cfg), "--print-config"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and str(cfg) in err, err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from tests.helpers import make_prepared

    root = tmp_path_factory.mktemp("hostile-run")
    prep = make_prepared(root / "prepared", size=8, n_per_class=8)
    run = root / "run"
    assert main(["train", str(prep), "--out", str(run), "--steps", "2", "--batch", "4", "--width", "4",
                 "--latent-dim", "4", "--device", "cpu", "--threads", "1", "-q"]) == 0
    return run


def _copy_run(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


@pytest.mark.parametrize("text", [b"format: xraygan-run\noptions: [\n", b"\xff\xfe\x00", b"- 1\n- 2\n", b"format: xraygan-run\noptions: 3\n",
                                  b"format: xraygan-run\n"])
def test_damaged_run_config_is_a_clear_error(tiny_run, tmp_path, text):
    from xraygan.generate import load_generator
    from xraygan.training.loop import resume_config
    from xraygan.training.rundir import RunDir

    run = _copy_run(tiny_run, tmp_path / "run")
    (run / "config.yaml").write_bytes(text)
    for fn in (RunDir(run).read_config, lambda: resume_config(run), lambda: load_generator(run, device="cpu")):
        with pytest.raises(XrayganError, match="config.yaml"):
            fn()


def test_run_options_with_non_string_keys(tiny_run, tmp_path):
    from xraygan.training.loop import resume_config

    run = _copy_run(tiny_run, tmp_path / "run")
    text = (run / "config.yaml").read_text().replace("options:\n", "options:\n  1: 2\n", 1)
    (run / "config.yaml").write_text(text)
    with pytest.raises(XrayganError, match="unknown option"):
        resume_config(run)


class NotAllowedInCheckpoints:
    """Any class: unpickling it would run code, so weights_only loading refuses it."""


@pytest.mark.parametrize("kind", ["truncated", "pickled class"])
def test_unreadable_checkpoint_message_is_one_line(tiny_run, tmp_path, kind):
    import torch

    from xraygan.training.checkpoint import load_checkpoint

    bad = tmp_path / "bad.pt"
    if kind == "truncated":
        data = (tiny_run / "checkpoints" / "latest.pt").read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    else:  # torch's message for this spans several lines
        torch.save({"format": "xraygan-checkpoint", "x": NotAllowedInCheckpoints()}, bad)
    with pytest.raises(XrayganError) as e:
        load_checkpoint(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def _resave(src: Path, dest: Path, edit) -> Path:
    import torch

    state = torch.load(src, weights_only=True)
    edit(state)
    torch.save(state, dest)
    return dest


@pytest.mark.parametrize("edit", [lambda s: s.pop("config"), lambda s: s.update(modules=[1, 2]), lambda s: s.update(format_version="x"),
                                  lambda s: s.update(n_classes="two")])
def test_checkpoint_with_damaged_structure_is_a_clear_error(tiny_run, tmp_path, edit):
    from xraygan.training.checkpoint import load_checkpoint

    bad = _resave(tiny_run / "checkpoints" / "latest.pt", tmp_path / "bad.pt", edit)
    with pytest.raises(XrayganError, match="bad.pt"):
        load_checkpoint(bad)


def test_checkpoint_whose_weights_do_not_fit_its_model(tiny_run, tmp_path):
    from xraygan.generate import load_generator

    run = _copy_run(tiny_run, tmp_path / "run")

    def edit(state):
        state["ema"] = {"nonsense": state["ema"][next(iter(state["ema"]))]}

    _resave(run / "checkpoints" / "latest.pt", run / "checkpoints" / "latest.pt", edit)
    with pytest.raises(XrayganError, match="latest.pt is damaged"):
        load_generator(run, device="cpu")


# --- found by the slow fuzzing profile --------------------------------------------------------
def test_csv_column_names_with_newlines_give_one_line(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    csv_path = tmp_path / "in" / "labels.csv"
    csv_path.write_bytes(b'"\n"\n\x00')  # one column named "\n", no 'path' column
    _fails(tmp_path, capsys, [csv_path, "--size", "8"], csv_path, "missing column 'path'")


# found by test_fuzz_dicom_slow: pydicom decodes a 3-D pixel array whose last axis is not RGB
_ODD_SHAPE_DICOM = bytes.fromhex(
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000004449434d02000000554c040098000000020001004f42"
    "00000200000000010200020055491c00312e322e3834302e31303030382e352e312e342e312e312e312e3100020003005549"
    "0800312e322e332e34000200100055491400312e322e3834302e31303030382e312e322e31000200120055491c00312e322e"
    "3832362e302e312e333638303034332e382e3439382e31000200130053480e0050594449434f4d20332e302e322008001600"
    "55491c00312e322e3834302e31303030382e352e312e342e312e312e312e31000800180055490800312e322e332e34000800"
    "6000435302004458100020004c4f02005031280002005553020001002800040043530c004d4f4e4f4348524f4d4532202800"
    "100055530200010028001100555302000100280000015553020010002800010155530200100028000201555302000f002800"
    "0301555302000000280000305351000030000000feff00e0280000002800023055530600040000000800280004304c4f0200"
    "555328000630555308000000010002000300e07f10004f570000040000005f82c200"
)


def test_dicom_pixel_array_neither_gray_nor_rgb(tmp_path):
    pytest.importorskip("pydicom")
    from xraygan.data.dicom import read_dicom

    path = tmp_path / "x.dcm"
    path.write_bytes(_ODD_SHAPE_DICOM)
    with pytest.raises(XrayganError, match="x.dcm"):
        read_dicom(path)  # used to raise numpy's ValueError (matmul core dimension mismatch)


def test_yaml_config_with_an_escape_pyyaml_cannot_decode(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b'$: "\\U00110000')
    rc = main(["prepare", "--config", str(cfg), "--print-config"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and str(cfg) in err, err


def test_every_file_skipped_leaves_no_empty_dataset(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "NORMAL").mkdir(parents=True)
    Image.fromarray(gray8(1)).save(src / "NORMAL" / "NORMAL.dcm", format="PNG")  # a PNG named .dcm: unreadable as DICOM, skipped
    from xraygan.data.prepare import prepare

    with pytest.raises(XrayganError, match="no images"):
        prepare(src, tmp_path / "OUT", size=8, skip_bad=True, allow_single_class=True)  # used to write an empty dataset
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def test_yaml_config_value_with_a_carriage_return_gives_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b'size: "\\r"\n')  # found by test_fuzz_yaml_config_slow
    rc = main(["train", "--config", str(cfg), "--print-config"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "size" in err, err


# --- control characters in file and class names (found by the slow folder-layout fuzzer) -------------

def test_carriage_return_in_a_file_name_keeps_one_manifest_row_per_image(tmp_path):
    from xraygan.data.dataset import PreparedDataset

    save_png(tmp_path / "src" / "NORMAL" / "\r.png", gray8(1, (8, 8)))
    save_png(tmp_path / "src" / "PNEUMONIA" / "a\rb.png", gray8(2, (8, 8)))
    assert main(["prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--size", "8", "-q"]) == 0
    ds = PreparedDataset.open(tmp_path / "out")
    assert len(ds) == len(ds.pixels()) == 2
    assert sorted(r["source"] for r in ds.rows) == ["NORMAL/\r.png", "PNEUMONIA/a\rb.png"]


def test_newline_in_a_file_or_class_name_gives_a_one_line_error(tmp_path, capsys):
    (tmp_path / "src" / "NORMAL").mkdir(parents=True)
    (tmp_path / "src" / "NORMAL" / "\n.png").write_bytes(b"")  # empty file: refused, naming it
    save_png(tmp_path / "src" / "a\nb" / "x.png", gray8(3, (8, 8)))
    assert main(["prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--size", "8", "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "\\n.png" in err
    assert not (tmp_path / "out").exists()
