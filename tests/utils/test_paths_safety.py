"""Paths built from data (labels, file names) stay inside the output folder (issue 15, item 2)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from tests.prepare_fixtures import gray8, labelled_csv, medmnist_npz, save_png
from xraygan.cli import main
from xraygan.errors import XrayganError
from xraygan.utils.paths import MAX_COMPONENT_BYTES, path_under, safe_component, unique_components

HOSTILE = ["..", ".", "", "a/b", "a_b", "A_B", "\\", "a\\b", "../../evil", "/etc/passwd", "x\0y", ".hidden", "..x",
           "CON", "nul.txt", "Com1", "lpt9.png", "trailing. ", "é" * 200, "x" * 300, "tab\there", "line\nbreak", "<script>", "ok-name_1.2"]


@pytest.mark.parametrize("name", HOSTILE)
def test_safe_component_gives_one_harmless_name(name, tmp_path):
    safe = safe_component(name)
    assert safe and safe not in (".", "..") and not safe.startswith(".") and not safe.endswith((".", " "))
    assert not any(c in safe for c in "/\\\0\n\t:")
    assert len(safe.encode("utf-8")) <= MAX_COMPONENT_BYTES
    assert safe.split(".")[0].lower() not in {"con", "prn", "aux", "nul", "com1", "lpt9"}
    assert path_under(tmp_path, safe).parent == tmp_path
    (tmp_path / safe).mkdir()  # the file system accepts it


def test_safe_names_are_unchanged_when_already_safe_and_unique_otherwise():
    assert safe_component("NORMAL") == "NORMAL" and safe_component("ok-name_1.2") == "ok-name_1.2"
    names = unique_components(HOSTILE)
    assert len(names) == len(set(HOSTILE))
    assert len({v.lower() for v in names.values()}) == len(names)  # distinct even on case-insensitive file systems
    assert names["a/b"] != names["a_b"] and names["a_b"].lower() != names["A_B"].lower()


def test_path_under_refuses_to_leave_the_root(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    for parts in (("..", "x"), ("a", "..", "..", "x"), ("/etc/passwd",), ("a\0b",)):
        with pytest.raises(XrayganError, match="outside"):
            path_under(root, *parts)
    os.symlink(tmp_path, root / "link")
    with pytest.raises(XrayganError, match="outside"):
        path_under(root, "link", "x.png")
    assert path_under(root, "a", "b.png") == root / "a" / "b.png"


def _inventory(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def test_hostile_labels_never_write_outside_out(tmp_path):
    """CSV labels with ../, / and \\ go through prepare, train and generate; everything stays in its folder."""
    labels = ["../../escape", "a/b", "a_b", "..\\win"]
    work = tmp_path / "work"
    src = work / "src"
    labelled_csv(src, labels)
    before = _inventory(tmp_path)
    prep, run, syn = work / "prep", work / "run", work / "out" / "syn"
    assert main(["prepare", str(src / "labels.csv"), str(prep), "--size", "16", "--val", "0", "--test", "0"]) == 0
    from xraygan.data.dataset import PreparedDataset

    ds = PreparedDataset.open(prep)
    assert sorted(ds.classes) == sorted(labels)  # the labels' own text is kept in the manifest
    assert all(Path(r["file"]).parent == Path("images") and ".." not in r["file"] for r in ds.rows)
    assert main(["train", str(prep), "--out", str(run), "--steps", "2", "--batch", "8", "--width", "8",
                 "--latent-dim", "8", "--device", "cpu", "--conditional", "-q"]) == 0
    for fmt in ("png", "dicom") if _has_pydicom() else ("png",):
        out = syn.with_name(f"syn-{fmt}")
        assert main(["generate", str(run), "--n", "8", "--out", str(out), "--format", fmt]) == 0
        with open(out / "manifest.csv", newline="") as fh:
            man = list(csv.DictReader(fh))
        assert sorted({r["label"] for r in man}) == sorted(labels)
        folders = {p.name for p in out.iterdir() if p.is_dir()}
        assert len(folders) == 4 and all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))
    allowed = (prep, run, syn.parent)
    outside = sorted(str(p) for p in _inventory(tmp_path) - before if p not in allowed and not any(p.is_relative_to(a) for a in allowed))
    assert not outside, outside
    # the generated folder reads back with the original labels (the manifest maps folders to labels)
    from xraygan.data.sources import open_image_set

    s = open_image_set(syn.with_name("syn-png"))
    assert sorted(s.classes) == sorted(labels) and len(s) == 8


def test_npz_label_names_with_separators_stay_inside(tmp_path):
    npz = medmnist_npz(tmp_path / "m.npz", n=(8, 2, 2), size=16)
    out = tmp_path / "deep" / "prep"
    assert main(["prepare", str(npz), str(out), "--size", "16", "--label-names", "../../up,/abs/x"]) == 0
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p == npz or p.is_relative_to(out) for p in files), files
    names = sorted(p.name for p in (out / "images").iterdir())
    assert len(names) == 12 and all("/" not in n and not n.startswith(".") for n in names)


def _has_pydicom() -> bool:
    try:
        import pydicom  # noqa: F401
    except ImportError:
        return False
    return True

