"""xraygan.data.sample on its own: the shipped chest X-ray sample is where sample_path() says, every
labels.csv row names a 64 px 8-bit PNG in its class folder, patients are whole (never in two classes),
the README's counts match the data and carry the CC BY 4.0 attribution; a missing sample is one clear error."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from PIL import Image

import xraygan.data.sample as sample_mod
from xraygan.data.sample import SAMPLE_NAME, sample_path
from xraygan.errors import XrayganError


def _rows(root: Path) -> list[dict]:
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_sample_path_is_the_packaged_folder():
    root = sample_path()
    assert root.is_dir() and root.name == SAMPLE_NAME
    assert root.parent.resolve() == Path(sample_mod.__file__).resolve().parents[1] / "sample_data"


def test_every_row_is_a_64px_grayscale_png_in_its_class_folder_and_patients_are_whole():
    root = sample_path()
    rows = _rows(root)
    assert list(rows[0]) == ["path", "label", "subtype", "patient_id"]
    listed = set()
    for r in rows:
        p = root / r["path"]
        assert Path(r["path"]).parts[0] == r["label"], r
        with Image.open(p) as im:
            assert im.format == "PNG" and im.mode == "L" and im.size == (64, 64), p
        listed.add(p.relative_to(root).as_posix())
    on_disk = {p.relative_to(root).as_posix() for p in root.glob("*/*") if p.is_file()}
    assert on_disk == listed  # no image without a row, no row without an image
    label_of = {}
    for r in rows:
        assert label_of.setdefault(r["patient_id"], r["label"]) == r["label"], r["patient_id"]
    assert {r["subtype"] for r in rows if r["label"] == "NORMAL"} == {"normal"}
    assert {r["subtype"] for r in rows if r["label"] == "PNEUMONIA"} <= {"bacteria", "virus"}


def test_readme_counts_match_the_data_and_carry_the_attribution():
    root = sample_path()
    rows = _rows(root)
    text = (root / "README.md").read_text()
    m = re.search(r"\((\d+) images: (\d+) NORMAL, (\d+) PNEUMONIA; (\d+) patients; (\d+)x(\d+) px\)", text)
    assert m, "README heading with the counts"
    n, n_norm, n_pneu, n_pat, w, h = map(int, m.groups())
    assert n == len(rows) and (w, h) == (64, 64)
    assert n_norm == sum(r["label"] == "NORMAL" for r in rows) and n_pneu == sum(r["label"] == "PNEUMONIA" for r in rows)
    assert n_pat == len({r["patient_id"] for r in rows})
    assert "CC BY 4.0" in text and "doi:10.17632/rscbjbr9sj.2" in text


def test_a_missing_sample_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(sample_mod, "SAMPLE_NAME", "no-such-sample")
    with pytest.raises(XrayganError, match=r"shipped sample is missing at .*no-such-sample; reinstall xraygan"):
        sample_mod.sample_path()
