"""Tracking: metrics.jsonl (pandas-loadable) and optional TensorBoard; a real tiny training run
read back by pandas, the model card, the HTML report and DICOM export."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from xraygan.errors import XrayganError
from xraygan.training.tracking import Tracker


def test_jsonl_lines_load_with_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    with Tracker(tmp_path / "run") as tr:
        tr.log(1, {"loss_d": np.float32(0.5), "loss_g": 1.25})
        tr.log(2, {"loss_d": float("nan"), "loss_g": 1.0, "fd": 30.0})
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]
    assert json.loads(lines[1])["loss_d"] is None  # NaN written as null: strict JSON
    df = pd.read_json(tmp_path / "run" / "metrics.jsonl", lines=True)
    assert list(df.columns) == ["step", "loss_d", "loss_g", "fd"]
    assert df["loss_g"].tolist() == [1.25, 1.0] and np.isnan(df["fd"][0]) and df["fd"][1] == 30.0
    assert not (tmp_path / "run" / "tensorboard").exists()
    with pytest.raises(ValueError, match="uint8"):
        Tracker(tmp_path / "r2").image(1, "x", np.zeros((4, 4), np.float32))  # checked even without TensorBoard


def test_tensorboard_scalars_and_images(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with Tracker(tmp_path, tensorboard=True) as tr:
        for step in (1, 2, 3):
            tr.log(step, {"loss_d": 1.0 / step, "note": "text is skipped"})
        tr.image(3, "samples", np.arange(64, dtype=np.uint8).reshape(8, 8))
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(e.step, round(e.value, 4)) for e in acc.Scalars("loss_d")] == [(1, 1.0), (2, 0.5), (3, 0.3333)]
    assert "note" not in acc.Tags()["scalars"]
    img = acc.Images("samples")[0]
    assert img.step == 3 and (img.width, img.height) == (8, 8)


def test_tensorboard_missing_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(XrayganError, match=r"xraygan\[tensorboard\]"):
        Tracker(tmp_path, tensorboard=True)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A real 6-step conditional DCGAN run at 16 px, trained in-process through the CLI."""
    from tests.helpers import make_prepared
    from xraygan.cli import main

    root = tmp_path_factory.mktemp("realrun")
    data = make_prepared(root / "prepared", size=16, n_per_class=12)
    rc = main(["train", str(data), "--out", str(root / "run"), "--conditional", "--steps", "6", "--batch", "8",
               "--width", "8", "--latent-dim", "16", "--sample-every", "2", "--ckpt-every", "3", "--log-every", "1",
               "--device", "cpu", "-q"])
    assert rc == 0
    return root / "run"


def test_real_metrics_jsonl_loads_with_pandas(real_run):
    pd = pytest.importorskip("pandas")
    df = pd.read_json(real_run / "metrics.jsonl", lines=True)
    assert df["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert {"loss_d", "loss_g"} <= set(df.columns)
    assert df["loss_d"].dtype.kind == "f" and np.isfinite(df["loss_d"]).all()


def test_real_run_model_card_and_report(real_run, tmp_path):
    from xraygan.cli import main
    from xraygan.report.model_card import write_model_card

    # training itself wrote the card at its end
    assert "steps reached (last logged): 6" in (real_run / "MODEL_CARD.md").read_text()
    card = write_model_card(real_run).read_text()
    assert "| model | dcgan |" in card and "| conditional | True |" in card and "NORMAL, PNEUMONIA" in card
    assert "steps reached (last logged): 6" in card and "latest.pt" in card
    out = tmp_path / "r.html"
    assert main(["report", str(real_run), "--out", str(out), "-q"]) == 0
    html = out.read_text()
    assert html.count('src="data:image/png;base64,') == 2 * 3 + 1 + 1  # strips, latest grid, loss curve (loss.png not twice)
    assert "step 2" in html and "step 6" in html and "MODEL_CARD.md" in html


def test_real_run_generate_dicom(real_run, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from xraygan.cli import main

    out = tmp_path / "dcm"
    assert main(["generate", str(real_run), "--n", "4", "--out", str(out), "--format", "dicom", "--device", "cpu", "-q"]) == 0
    files = sorted(out.rglob("*.dcm"))
    assert [f.parent.name for f in files] == ["NORMAL", "NORMAL", "PNEUMONIA", "PNEUMONIA"]
    ds = [pydicom.dcmread(f) for f in files]
    assert len({d.StudyInstanceUID for d in ds}) == 1 and len({d.SeriesInstanceUID for d in ds}) == 2
    assert all("SYNTHETIC" in d.SeriesDescription and d.ConversionType == "SYN" and d.Rows == 16 for d in ds)
    png = tmp_path / "png"
    assert main(["generate", str(real_run), "--n", "4", "--out", str(png), "--device", "cpu", "-q"]) == 0
    from PIL import Image

    first_png = np.asarray(Image.open(sorted(png.rglob("*.png"))[0]))
    np.testing.assert_array_equal(ds[0].pixel_array, first_png)  # same seed -> same pixels in either format
    manifest = (out / "manifest.csv").read_text()
    assert "NORMAL/synthetic_000000.dcm" in manifest
