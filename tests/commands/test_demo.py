"""`xraygan demo --quick`: the whole pipeline on the shipped sample, in seconds."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from xraygan.cli import main


def test_quick_demo_end_to_end(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--device", "cpu", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "xraygan demo finished" in printed and str(out / "run") in printed
    assert (out / "prepared" / "dataset.json").is_file()
    assert (out / "run" / "checkpoints" / "latest.pt").is_file() and (out / "run" / "loss.png").is_file()
    with open(out / "synthetic" / "manifest.csv", newline="") as fh:
        labels = [r["label"] for r in csv.DictReader(fh)]
    assert sorted(set(labels)) == ["NORMAL", "PNEUMONIA"] and labels.count("NORMAL") == labels.count("PNEUMONIA")
    for name in ("NORMAL", "PNEUMONIA"):
        grid = np.asarray(Image.open(out / f"real_vs_synthetic_{name}.png"))
        # 4x4 real | spacer | 4x4 synthetic, 16 px images: width > height, both halves not blank
        assert grid.shape[1] > grid.shape[0] >= 4 * 16
        left, right = grid[:, : grid.shape[1] // 3], grid[:, -grid.shape[1] // 3:]
        assert left.std() > 0 and right.std() > 0
    assert main(["demo", "--out", str(out), "--quick", "--device", "cpu", "-q"]) == 2  # no overwrite without --force
    assert "--force" in capsys.readouterr().err
