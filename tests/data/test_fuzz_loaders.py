"""Property-based fuzzing (Hypothesis) of every loader of user input.

The property, for each loader: on any input it either succeeds (with a sane result) or raises
:class:`~xraygan.errors.XrayganError` (one clear line for the user), never another exception; it
finishes within a time budget (no hang); and it leaves no partial output behind (an output folder
is complete or absent, with no ``.partial``/``.tmp`` leftovers beside it).

The default run uses a few examples per loader (a smoke test, ~30 s in all). The ``slow`` tests
run the same properties with at least 10,000 examples per byte-level loader (images, CSV, npz,
DICOM, YAML config) and 1,000 for folder layouts, checkpoints and run folders::

    python -m pytest -m slow tests/data/test_fuzz_loaders.py -p no:cacheprovider

``XRAYGAN_FUZZ_SCALE`` multiplies the slow counts (e.g. 0.1 for a quicker pass), and
``XRAYGAN_FUZZ_REPORT=FILE`` appends one JSON line per test with its counts (examples run,
uncaught exceptions, partial outputs, hangs).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from xraygan.errors import XrayganError  # noqa: E402

SCALE = float(os.environ.get("XRAYGAN_FUZZ_SCALE", "1"))
BUDGET_S = 20.0  # a loader taking longer than this on a tiny input counts as a hang

_COUNTS: dict[str, Counter] = {}


class Hang(Exception):
    """Raised by the per-example time budget."""


@contextlib.contextmanager
def time_budget(seconds: float = BUDGET_S):
    """Raise :class:`Hang` in the main thread if the block runs longer than ``seconds``."""
    def _fire(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check(name: str, fn, *, out: Path | None = None):
    """Run ``fn()`` under the property; returns its result, or None when it raised XrayganError.

    Anything else is counted (uncaught / hang / partial output) and re-raised so that Hypothesis
    reports and shrinks it.
    """
    c = _COUNTS.setdefault(name, Counter())
    c["examples"] += 1
    result = None
    try:
        with time_budget():
            result = fn()
    except XrayganError as e:
        msg = str(e)
        if "\n" in msg.strip() or not msg.strip():
            c["unclear_message"] += 1
            raise AssertionError(f"XrayganError message is not one line: {msg!r}") from None
        c["refused"] += 1
        if out is not None and out.exists():
            c["partial_output"] += 1
            raise AssertionError(f"{out} left behind after an error") from None
    except Hang:
        c["hang"] += 1
        raise
    except BaseException as e:
        c["uncaught"] += 1
        c[f"uncaught:{type(e).__name__}"] += 1
        raise
    else:
        c["ok"] += 1
    if out is not None:
        leftovers = [p.name for p in out.parent.iterdir() if p.name != out.name and p.name.startswith(f".{out.name}")]
        if leftovers:
            c["partial_output"] += 1
            raise AssertionError(f"staging leftovers beside {out}: {leftovers}")
    return result


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request):
    import torch

    torch.set_num_threads(1)
    yield
    report = os.environ.get("XRAYGAN_FUZZ_REPORT")
    if report and _COUNTS:
        with open(report, "a") as fh:
            for name, c in sorted(_COUNTS.items()):
                fh.write(json.dumps({"loader": name, **c}) + "\n")
    _COUNTS.clear()


def _profile(n_fast: int, n_slow: int, slow: bool, deadline_s: float = 10.0):
    """Hypothesis settings: ``n_fast`` examples in the default run, ``n_slow`` (x XRAYGAN_FUZZ_SCALE) under -m slow."""
    n = max(1, int(n_slow * SCALE)) if slow else n_fast
    return settings(max_examples=n, deadline=None if slow else deadline_s * 1000, derandomize=not slow,
                    database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                           HealthCheck.large_base_example])


@contextlib.contextmanager
def scratch():
    d = Path(tempfile.mkdtemp(prefix="xraygan-fuzz-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- byte mutations --------------------------------------------------------------------------------
@st.composite
def mutated(draw, base: bytes, max_ops: int = 4) -> bytes:
    """``base`` with a few random edits: byte flips, overwrites with extreme integers, cuts, inserts."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(["flip", "set", "int", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "int" and len(data) >= 4:
            v = draw(st.sampled_from([0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000, 40000]))
            data[pos:pos + 4] = v.to_bytes(4, draw(st.sampled_from(["little", "big"])))
            del data[len(base) + 64:]
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
    return bytes(data)


def bytes_from(valid: st.SearchStrategy, max_ops: int = 4) -> st.SearchStrategy:
    """Valid files (drawn by ``valid``), each maybe mutated, plus some plain random bytes."""
    return st.one_of(valid, valid.flatmap(lambda b: mutated(b, max_ops)), st.binary(max_size=256))


# --- images -------------------------------------------------------------------------------------
_IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp"}


@st.composite
def image_files(draw) -> tuple[bytes, str]:
    from PIL import Image

    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    mode = draw(st.sampled_from(["L", "I;16", "RGB", "RGBA", "P", "LA", "1", "I", "F"]))
    fmt = draw(st.sampled_from(sorted(_IMAGE_FORMATS)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif mode in ("I", "F"):
        im = Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.int32 if mode == "I" else np.float32))
    else:
        chans = {"L": 1, "RGB": 3, "RGBA": 4, "P": 1, "LA": 2, "1": 1}[mode]
        arr = rng.integers(0, 256, (h, w, chans) if chans > 1 else (h, w), dtype=np.uint8)
        im = Image.fromarray(arr, "L" if mode in ("P", "1") else mode)
        if mode in ("P", "1"):
            im = im.convert(mode)
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):  # a mode this format cannot hold: TIFF holds them all
        buf = io.BytesIO()
        fmt = "TIFF"
        im.save(buf, format=fmt)
    suffix = draw(st.sampled_from([_IMAGE_FORMATS[fmt]] * 3 + [".png", ".jpeg", ".tiff", ".bmp"]))
    return buf.getvalue(), suffix


def image_property(payload: tuple[bytes, str]) -> None:
    from xraygan.data import io as xio

    data, suffix = payload
    with scratch() as d:
        path = d / f"x{suffix}"
        path.write_bytes(data)
        arr = check("image", lambda: xio.decode_gray(path))
        if arr is not None:
            assert arr.ndim == 2 and arr.size > 0 and arr.dtype in (np.uint8, np.uint16), (arr.shape, arr.dtype)
            sq = xio.to_square_uint8(xio.to_unit_float(arr), 8, "pad")
            assert sq.shape == (8, 8) and sq.dtype == np.uint8


_images = st.one_of(image_files().flatmap(lambda p: mutated(p[0]).map(lambda b: (b, p[1]))),
                    st.tuples(st.binary(max_size=128), st.sampled_from(sorted(_IMAGE_FORMATS.values()))))


@_profile(60, 10_000, slow=False)
@given(_images)
def test_fuzz_image_decoder(payload):
    image_property(payload)


@pytest.mark.slow
@_profile(60, 10_000, slow=True)
@given(_images)
def test_fuzz_image_decoder_slow(payload):
    image_property(payload)


# --- CSV label files ------------------------------------------------------------------------------
_CSV_PATHS = ["A/a.png", "B/b.png", "A/notes.txt", "A", "../A/a.png", "/etc/hostname", "missing.png", "x" * 300 + ".png",
              "A/" + "y" * 256 + ".png", "A/a\x00.png", "A//a.png", "./B/b.png", "A/../B/b.png", "", " ", "é/ü.png"]


@st.composite
def csv_files(draw) -> bytes:
    extra = st.sampled_from(["path", "label", "patient_id", "split", "file", "notes", "Path", ""])
    cols = draw(st.one_of(st.lists(extra, max_size=5), st.lists(extra, max_size=3).map(lambda c: ["path", "label", *c])))
    rows = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):  # a well-formed row
            row = [draw(st.sampled_from(_CSV_PATHS[:3])), draw(st.sampled_from(["A", "B", "0"]))]
            row += [draw(st.text(max_size=6)) for _ in cols[2:]]
        else:
            row = [draw(st.one_of(st.sampled_from(_CSV_PATHS), st.text(max_size=12), st.sampled_from(["A", "B", "0"])))
                   for _ in range(draw(st.integers(0, len(cols) + 1)))]
        rows.append(row)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    w.writerows(rows)
    text = buf.getvalue()
    enc = draw(st.sampled_from(["utf-8"] * 4 + ["utf-8-sig", "latin-1", "utf-16"]))
    return text.encode(enc, errors="replace")


def csv_property(data: bytes, patient_col: str | None) -> None:
    from tests.prepare_fixtures import gray8, save_png
    from xraygan.data.sources import read_csv

    with scratch() as d:
        save_png(d / "A" / "a.png", gray8(1))
        save_png(d / "B" / "b.png", gray8(2))
        (d / "A" / "notes.txt").write_text("not an image")
        path = d / "labels.csv"
        path.write_bytes(data)
        src = check("csv", lambda: read_csv(path, "path", "label", patient_col))
        if src is not None:
            for r in src.records:
                assert r.kind in ("image", "dicom", "bad") and r.label
                json.dumps(r.source).encode("utf-8")  # display names can be written out
                r.source.encode("utf-8")
                if r.kind != "bad":
                    assert r.path.resolve().is_relative_to(d.resolve())


_clean_csvs = st.lists(st.tuples(st.sampled_from(_CSV_PATHS[:3] + _CSV_PATHS[10:12]), st.sampled_from(["A", "B", "é"]),
                                  st.text(max_size=5)), min_size=1, max_size=5).map(
    lambda rows: ("path,label,patient_id\n" + "".join(f'{p},{lab},"{t.replace(chr(34), "")}"\n' for p, lab, t in rows)).encode())
_csvs = st.tuples(st.one_of(_clean_csvs, bytes_from(st.one_of(_clean_csvs, csv_files()))), st.sampled_from([None, None, "patient_id", "notes"]))


@_profile(60, 10_000, slow=False)
@given(_csvs)
def test_fuzz_csv_labels(payload):
    csv_property(*payload)


@pytest.mark.slow
@_profile(60, 10_000, slow=True)
@given(_csvs)
def test_fuzz_csv_labels_slow(payload):
    csv_property(*payload)


# --- MedMNIST-style npz ---------------------------------------------------------------------------
@st.composite
def npz_files(draw) -> bytes:
    arrays = {}
    for split in draw(st.lists(st.sampled_from(["train", "val", "test"]), min_size=0, max_size=3, unique=True)):
        n = draw(st.integers(0, 4))
        h, w = draw(st.integers(0, 12)), draw(st.integers(0, 12))
        shape = draw(st.sampled_from([(n, h, w)] * 4 + [(n, h, w, 1), (n, h, w, 3), (n, h, w, 2), (n, h), (n, h, w, 4)]))
        dtype = draw(st.sampled_from(["uint8"] * 5 + ["uint16", "uint16", "int16", "float32", "bool", "object"]))
        rng = np.random.default_rng(draw(st.integers(0, 999)))
        if dtype == "object":
            imgs = np.empty(shape, dtype=object)
        else:
            imgs = rng.integers(0, 256, shape).astype(dtype)
        if draw(st.booleans()) or split != "val":
            arrays[f"{split}_images"] = imgs
        lshape = draw(st.sampled_from([(n, 1)] * 5 + [(n,), (n,), (n, 2), (), (n + 1, 1), (max(0, n - 1),)]))
        ldtype = draw(st.sampled_from(["uint8"] * 4 + ["int64", "int8", "float64", "<U2", "object", "uint64"]))
        vals = draw(st.sampled_from([[0, 1]] * 4 + [[0, 1, 2], [-1, 0], [0, 2**40], [0, 255]]))
        labs = np.resize(np.asarray(vals), int(np.prod(lshape))).reshape(lshape) if lshape else np.asarray(vals[0])
        if ldtype == "float64" and draw(st.booleans()):
            labs = labs.astype(np.float64) + draw(st.sampled_from([0.5, np.nan, np.inf]))
        arrays[f"{split}_labels"] = labs.astype(ldtype) if ldtype != "<U2" else labs.astype(str)
    if draw(st.booleans()):
        arrays[draw(st.sampled_from(["extra", "train_images.npy", "x/y"]))] = np.zeros(3)
    buf = io.BytesIO()
    (np.savez_compressed if draw(st.booleans()) else np.savez)(buf, **arrays)
    return buf.getvalue()


@st.composite
def clean_npz_files(draw) -> bytes:
    """Well-formed MedMNIST-style files of varied sizes and types (what most users have)."""
    arrays = {}
    rng = np.random.default_rng(draw(st.integers(0, 999)))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    colour = draw(st.sampled_from([(), (), (), (1,), (3,)]))
    dtype = "uint8" if colour and colour != (1,) else draw(st.sampled_from(["uint8", "uint8", "uint16"]))
    for split in ("train", "val", "test")[: draw(st.integers(1, 3))]:
        n = draw(st.integers(1, 5))
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, h, w, *colour)).astype(dtype)
        labels = rng.integers(0, draw(st.integers(1, 3)), n).astype(draw(st.sampled_from(["uint8", "int64", "float64"])))
        arrays[f"{split}_labels"] = labels.reshape(n, 1) if draw(st.booleans()) else labels
    buf = io.BytesIO()
    (np.savez_compressed if draw(st.booleans()) else np.savez)(buf, **arrays)
    return buf.getvalue()


def npz_property(data: bytes, label_names: list[str] | None) -> None:
    from xraygan.data import prepare as prep
    from xraygan.data.sources import read_npz

    with scratch() as d:
        path = d / "m.npz"
        path.write_bytes(data)

        def load():
            src = read_npz(path, label_names)
            # decoding each record as prepare does must not fail with another exception either
            return src, [prep._decode_one((r, 8, "pad", True)) for r in src.records[:8]]

        res = check("npz", load)
        if res is not None:
            src, decoded = res
            assert src.records and all(r.label in src.classes for r in src.records)
            for dec in decoded:
                assert dec.error is not None or (dec.pixels.shape == (8, 8) and dec.pixels.dtype == np.uint8)


_npzs = st.tuples(st.one_of(clean_npz_files(), bytes_from(st.one_of(clean_npz_files(), npz_files()), max_ops=2)), st.sampled_from([None, None, ["a", "b"], ["a", "b", "c"]]))


@_profile(40, 10_000, slow=False)
@given(_npzs)
def test_fuzz_npz(payload):
    npz_property(*payload)


@pytest.mark.slow
@_profile(40, 10_000, slow=True)
@given(_npzs)
def test_fuzz_npz_slow(payload):
    npz_property(*payload)


# --- DICOM --------------------------------------------------------------------------------------
_DS_VALUES = ["1", "0", "-1", "2.5", "nan", "NaN", "inf", "-inf", "1e308", "1e-300", "", "abc", "65535", "-32768", "0.0", "-0"]


@st.composite
def dicom_files(draw) -> bytes:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    rows, cols = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    alloc = draw(st.sampled_from([8, 16, 16, 16, 32]))
    stored = draw(st.sampled_from([alloc, alloc, alloc, min(alloc, 12), min(alloc, 10), 1, 0, alloc + 1]))
    signed = draw(st.integers(0, 1))
    spp = draw(st.sampled_from([1] * 6 + [3]))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    syntax = draw(st.sampled_from([ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]))
    meta.TransferSyntaxUID = syntax
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, "1.2.3.4", "DX"
    ds.PatientID = draw(st.sampled_from(["P1", "", " ", "é"]))
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, spp
    ds.PhotometricInterpretation = (draw(st.sampled_from(["MONOCHROME2", "MONOCHROME1", "RGB", "YBR_FULL"])) if spp == 3 else
                                    draw(st.sampled_from(["MONOCHROME2", "MONOCHROME2", "MONOCHROME1", "PALETTE COLOR", "RGB"])))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = alloc, stored, max(0, stored - 1), signed
    if spp == 3:
        ds.PlanarConfiguration = 0
    # decimal strings are written as 6-character placeholders, then replaced in the bytes by any
    # value (pydicom refuses to hold "abc" or "nan" itself)
    swaps = {}
    for keyword, placeholder in (("RescaleSlope", "101.25"), ("RescaleIntercept", "202.25"),
                                 ("WindowCenter", "303.25"), ("WindowWidth", "404.25")):
        if draw(st.booleans()):
            ds.add_new(keyword, "DS", placeholder)
            swaps[placeholder.encode()] = draw(st.sampled_from(_DS_VALUES)).encode().ljust(6)
    if draw(st.integers(0, 4)) == 0:
        item = Dataset()
        item.add_new("LUTDescriptor", "US", draw(st.sampled_from([[4, 0, 8], [0, 0, 16], [4, 0, 9], [2, 5, 12], [8, 0, 16]])))
        item.add_new("LUTData", "US", draw(st.lists(st.integers(0, 65535), max_size=8)))
        ds.VOILUTSequence = Sequence([item])
    if draw(st.integers(0, 5)) == 0:
        item = Dataset()
        item.add_new("LUTDescriptor", "US", [4, 0, draw(st.sampled_from([8, 16, 0, 64]))])
        item.add_new("LUTData", "US", [0, 1, 2, 3])
        item.add_new("ModalityLUTType", "LO", "US")
        ds.ModalityLUTSequence = Sequence([item])
    if draw(st.integers(0, 5)) == 0:
        ds.add_new("NumberOfFrames", "IS", "5555")
        swaps[b"5555"] = draw(st.sampled_from(["1", "2", "0", "x", "", "-1", "9999"])).encode().ljust(4)
    n_bytes = rows * cols * spp * max(1, alloc // 8)
    n_bytes += draw(st.sampled_from([0] * 6 + [-1, 1, -n_bytes]))
    ds.PixelData = np.random.default_rng(draw(st.integers(0, 99))).integers(0, 256, max(0, n_bytes), dtype=np.uint8).tobytes()
    buf = io.BytesIO()
    try:
        with _pydicom_lenient():
            pydicom.dcmwrite(buf, ds, enforce_file_format=True) if _pydicom_3() else ds.save_as(buf, write_like_original=False)
    except Exception:
        buf = io.BytesIO(b"\0" * 128 + b"DICM")
    data = buf.getvalue()
    for old, new in swaps.items():
        data = data.replace(old, new)
    return data


def _pydicom_3() -> bool:
    import pydicom

    return int(pydicom.__version__.split(".")[0]) >= 3


@contextlib.contextmanager
def _pydicom_lenient():
    """Let pydicom write the invalid values the fuzzer wants to feed back to the reader."""
    from pydicom import config

    old = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        yield
    finally:
        config.settings.writing_validation_mode = old


def dicom_property(data: bytes) -> None:
    import warnings

    from xraygan.data.dicom import read_dicom

    with scratch() as d:
        path = d / "x.dcm"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = check("dicom", lambda: read_dicom(path))
        if img is not None:
            x = img.pixels
            assert x.ndim == 2 and x.size > 0 and x.dtype == np.float32, (x.shape, x.dtype)
            assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0


_dicoms = bytes_from(dicom_files())


@_profile(40, 10_000, slow=False)
@given(_dicoms)
def test_fuzz_dicom(data):
    pytest.importorskip("pydicom")
    dicom_property(data)


@pytest.mark.slow
@_profile(40, 10_000, slow=True)
@given(_dicoms)
def test_fuzz_dicom_slow(data):
    pytest.importorskip("pydicom")
    dicom_property(data)


# --- YAML config files (--config) -----------------------------------------------------------------
_YAML_KEYS = ["size", "val", "seed", "fit", "skip-bad", "workers", "steps", "batch", "model", "lr", "data", "out", "n",
              "label", "model-option", "set", "unknown", "config", "preset", "source", "label-names", "checkpoint", "device"]
_yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                          st.text(max_size=8), st.sampled_from(["64", "pad", "cpu", "1e400", "~", "yes", "dcgan", "A=1"]))
_yaml_values = st.recursive(_yaml_scalars, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=4), c, max_size=3)),
                            max_leaves=6)

_BOMB = b"".join(b"- &%c [%s]\n" % (c, b", ".join([b"*" + bytes([c - 1]) if c > 97 else b"x"] * 9)) for c in range(97, 104))
_SPECIAL_YAML = [
    b"label-names:\n" + _BOMB, b"set:\n" + _BOMB, b"model-option:\n" + _BOMB,
    b"a: &a [1,2]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    b"e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\nset: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",
    b"[" * 5000 + b"]" * 5000, b"{a: " * 3000 + b"1" + b"}" * 3000, b"\xff\xfe\x00", b"size: !!python/object:os.system ls\n",
    b"size: 64\nsize: 32\n", b"--- 1\n--- 2\n", b"\x00", b"size: 1e999\n", b"? [a]\n: 1\n", b"model-option: {a: [1, {b: 2}]}\n",
]


@st.composite
def yaml_files(draw) -> bytes:
    import yaml

    doc = draw(st.dictionaries(st.sampled_from(_YAML_KEYS), _yaml_values, max_size=5))
    try:
        text = yaml.safe_dump(doc, allow_unicode=draw(st.booleans()))
    except (yaml.YAMLError, ValueError):
        text = "{}"
    return text.encode("utf-8", errors="surrogatepass")


def yaml_property(data: bytes, command: str) -> None:
    from xraygan.cli import main

    with scratch() as d:
        path = d / "c.yaml"
        path.write_bytes(data)

        def run():
            try:
                with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
                    rc = main([command, "--config", str(path), "--print-config"])
            except SystemExit as e:  # argparse's own usage errors: one usage line and a message, exit 2
                assert e.code == 2, e.code
                return 2
            assert isinstance(rc, int)
            if rc != 0:
                assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
            return rc

        check("yaml-config", run)


_yamls = st.tuples(st.one_of(bytes_from(yaml_files(), max_ops=3), st.sampled_from(_SPECIAL_YAML)),
                   st.sampled_from(["prepare", "train", "generate", "evaluate"]))


@_profile(40, 10_000, slow=False)
@given(_yamls)
def test_fuzz_yaml_config(payload):
    yaml_property(*payload)


@pytest.mark.slow
@_profile(40, 10_000, slow=True)
@given(_yamls)
def test_fuzz_yaml_config_slow(payload):
    yaml_property(*payload)


# --- folder layouts (the whole of prepare) ---------------------------------------------------------
_names = st.one_of(st.sampled_from(["NORMAL", "PNEUMONIA", "a", ".hidden", "Thumbs.db", "x" * 251, "é" * 120, "a b", "-x"]),
                   st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=10),
                   st.binary(min_size=1, max_size=10).filter(lambda b: b"/" not in b and b"\0" not in b).map(os.fsdecode))


@st.composite
def folder_layouts(draw) -> list[tuple[str, str, str]]:
    """(class folder, file name, content kind) triples."""
    files = []
    for cls in draw(st.lists(_names, max_size=3, unique_by=lambda s: os.fsencode(s))):
        for _ in range(draw(st.integers(0, 3))):
            name = draw(_names)
            suffix = draw(st.sampled_from([".png", ".png", ".jpg", ".dcm", ".txt", "", ".PNG", ".tif"]))
            kind = draw(st.sampled_from(["png8", "png8", "png16", "rgba", "empty", "garbage", "truncated", "tiny", "subdir", "dup"]))
            files.append((cls, name + suffix, kind))
    return files


def _build_folder(root: Path, layout: list[tuple[str, str, str]]) -> None:
    from PIL import Image

    root.mkdir()
    for k, (cls, name, kind) in enumerate(layout):
        folder = root / cls
        try:
            folder.mkdir(exist_ok=True)
            path = folder / ("sub" if kind == "subdir" else "") / name
            path.parent.mkdir(exist_ok=True)
            if len(os.fsencode(path.name)) > 255:
                continue
            rng = np.random.default_rng(k)
            if kind in ("png8", "subdir", "tiny", "dup", "truncated"):
                side = 2 if kind == "tiny" else 12
                arr = np.full((side, side), 7, np.uint8) if kind == "dup" else rng.integers(0, 256, (side, side), dtype=np.uint8)
                buf = io.BytesIO()
                Image.fromarray(arr).save(buf, format="PNG")
                path.write_bytes(buf.getvalue()[: 60 if kind == "truncated" else None])
            elif kind == "png16":
                Image.fromarray(rng.integers(0, 65536, (12, 10), dtype=np.uint16)).save(path, format="PNG")
            elif kind == "rgba":
                Image.fromarray(rng.integers(0, 256, (9, 12, 4), dtype=np.uint8)).save(path, format="PNG")
            elif kind == "empty":
                path.write_bytes(b"")
            else:
                path.write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(40))
        except OSError:  # a name this file system refuses: not part of the input
            continue


def folder_property(layout, skip_bad: bool, allow_single: bool, fit: str) -> None:
    from xraygan.data.dataset import PreparedDataset
    from xraygan.data.prepare import prepare

    with scratch() as d:
        src = d / "src"
        _build_folder(src, layout)
        out = d / "work" / "OUT"
        out.parent.mkdir()
        ds = check("folder-layout", lambda: prepare(src, out, size=8, skip_bad=skip_bad, allow_single_class=allow_single,
                                                     allow_upsample=True, fit=fit, val=0.2, test=0.2), out=out)
        if ds is not None:
            again = PreparedDataset.open(out)
            assert len(again) == len(ds) == len(again.pixels()) > 0
            json.loads((out / "dataset.json").read_text())
            assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".partial", ".tmp.npy"))]


_layouts = st.tuples(folder_layouts(), st.booleans(), st.booleans(), st.sampled_from(["pad", "crop", "squash"]))


@_profile(15, 1_000, slow=False, deadline_s=30)
@given(_layouts)
def test_fuzz_folder_layouts(payload):
    folder_property(*payload)


@pytest.mark.slow
@_profile(15, 1_000, slow=True)
@given(_layouts)
def test_fuzz_folder_layouts_slow(payload):
    folder_property(*payload)


# --- checkpoints and run folders ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A real 2-step conditional DCGAN run (8 px) to mutate."""
    from tests.helpers import make_prepared
    from xraygan.cli import main

    root = tmp_path_factory.mktemp("fuzz-run")
    prep = make_prepared(root / "prepared", size=8, n_per_class=8)
    run = root / "run"
    assert main(["train", str(prep), "--out", str(run), "--steps", "2", "--batch", "4", "--width", "4",
                 "--latent-dim", "4", "--device", "cpu", "--conditional", "--threads", "1", "-q"]) == 0
    return run


def checkpoint_property(data: bytes) -> None:
    from xraygan.training.checkpoint import load_checkpoint

    with scratch() as d:
        path = d / "latest.pt"
        path.write_bytes(data)
        state = check("checkpoint", lambda: load_checkpoint(path))
        if state is not None:
            assert isinstance(state, dict)


def _run_files(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()}


@st.composite
def mutated_runs(draw, files: dict[str, bytes]) -> dict[str, bytes | None]:
    """The run's files with one to three of config.yaml / metrics.jsonl / checkpoints mutated or removed."""
    targets = sorted(k for k in files if k in ("config.yaml", "metrics.jsonl") or k.endswith(".pt"))
    out: dict[str, bytes | None] = dict(files)
    for name in draw(st.lists(st.sampled_from(targets), min_size=1, max_size=3, unique=True)):
        how = draw(st.sampled_from(["mutate", "mutate", "mutate", "remove", "empty", "text"]))
        if how == "remove":
            out[name] = None
        elif how == "empty":
            out[name] = b""
        elif how == "text":
            out[name] = draw(st.sampled_from([b"format: xraygan-run\noptions: 3\n", b"- 1\n", b"{\"step\": \"x\"}\n", b"\xff\xfe",
                                              b"format: xraygan-run\noptions: {steps: -1, lr: .nan}\n", b"null\n", b"[1, 2]\n"]))
        else:
            out[name] = draw(mutated(files[name], max_ops=3))
    return out


def run_property(files: dict[str, bytes | None], run: Path) -> None:
    from xraygan.generate import load_generator
    from xraygan.training.loop import resume_config
    from xraygan.training.rundir import RunDir, read_metrics

    with scratch() as d:
        copy = d / "run"
        for name, data in files.items():
            if data is not None:
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                (copy / name).write_bytes(data)
        (copy / "checkpoints").mkdir(parents=True, exist_ok=True)
        rd = RunDir(copy)
        check("run:read_config", rd.read_config)
        check("run:read_metrics", lambda: read_metrics(rd))
        check("run:resume_config", lambda: resume_config(copy))
        check("run:load_generator", lambda: load_generator(copy, "latest", device="cpu"))


@_profile(10, 1_000, slow=False)
@given(st.data())
def test_fuzz_checkpoint(tiny_run, data):
    base = (tiny_run / "checkpoints" / "latest.pt").read_bytes()
    checkpoint_property(data.draw(bytes_from(st.just(base), max_ops=3)))


@pytest.mark.slow
@_profile(10, 1_000, slow=True)
@given(st.data())
def test_fuzz_checkpoint_slow(tiny_run, data):
    base = (tiny_run / "checkpoints" / "latest.pt").read_bytes()
    checkpoint_property(data.draw(bytes_from(st.just(base), max_ops=3)))


@_profile(10, 1_000, slow=False)
@given(st.data())
def test_fuzz_run_folder(tiny_run, data):
    run_property(data.draw(mutated_runs(_run_files(tiny_run))), tiny_run)


@pytest.mark.slow
@_profile(10, 1_000, slow=True)
@given(st.data())
def test_fuzz_run_folder_slow(tiny_run, data):
    run_property(data.draw(mutated_runs(_run_files(tiny_run))), tiny_run)

