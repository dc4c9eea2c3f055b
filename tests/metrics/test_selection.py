"""Honest selection and reporting (issue 12): best.pt is chosen on training-split images only,
with latents of its own, by a criterion that punishes lost per-class recall; `evaluate RUN`
reports on held-out patients with per-class n and patient-bootstrap intervals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import make_prepared


@pytest.fixture
def data(tmp_path):
    return make_prepared(tmp_path / "data", size=16, n_per_class=40, per_patient=2)


def test_selection_reads_only_training_split_images(data, tmp_path, monkeypatch):
    import xraygan.metrics.features as features
    from xraygan.data.dataset import PreparedDataset
    from xraygan.workflow import train

    ds = PreparedDataset.open(data)
    pix = np.asarray(ds.pixels())
    train_rows = {pix[i].tobytes() for i in ds.indices(split="train")}
    held_rows = {pix[i].tobytes() for i in ds.indices(split=["val", "test"])}
    assert held_rows and not held_rows & train_rows
    seen: list[bytes] = []
    real_cached = features.cached_features

    def spy(pixels, extractor, size, cache_dir):  # every real image the hook turns into features
        seen.extend(np.asarray(p).tobytes() for p in pixels)
        return real_cached(pixels, extractor, size, cache_dir)

    monkeypatch.setattr(features, "cached_features", spy)
    run = train({"data": str(data), "out": str(tmp_path / "run"), "conditional": True, "steps": 2, "eval_every": 1,
                 "batch": 8, "width": 8, "latent_dim": 8, "sample_every": 100, "ckpt_every": 100, "log_every": 1,
                 "device": "cpu", "seed": 0})
    assert seen and set(seen) <= train_rows and not set(seen) & held_rows
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    ev = [r for r in recs if "select_score" in r]
    assert len(ev) == 2 and ev[0]["eval_splits"] == ["train"]
    assert all(f"pc_recall_{c}_floor" in ev[0] for c in ("NORMAL", "PNEUMONIA"))
    assert (run / "checkpoints" / "best.pt").is_file()
    from xraygan.report.html import render_report

    html = render_report(run)  # the run report shows the per-class scores beside their floors
    assert "Per class at step 2" in html and "per-class collapse check" in html


def test_selection_latents_are_not_the_report_latents():
    from xraygan.generate import image_seed
    from xraygan.metrics.training_hook import REPORT_SEED_OFFSET, SELECTION_SEED_OFFSET

    sel = {image_seed(SELECTION_SEED_OFFSET, i) for i in range(2000)}
    rep = {image_seed(REPORT_SEED_OFFSET, i) for i in range(2000)}
    assert SELECTION_SEED_OFFSET != REPORT_SEED_OFFSET and not sel & rep


def test_selection_score_punishes_lost_recall():
    from xraygan.metrics.training_hook import selection_score

    diverse = selection_score(fd=10.0, fd_floor=1.0, r_min=1.0)
    collapsed = selection_score(fd=5.0, fd_floor=1.0, r_min=0.2)  # half the FD, but a class lost 80% of its recall
    assert diverse < collapsed
    assert selection_score(4.0, 1.0, 1.0) < selection_score(5.0, 1.0, 1.0)  # equal recall: FD decides


def test_class_sample_takes_a_seeded_random_subset():
    from xraygan.metrics.evaluate import Sample, class_sample

    labels = np.array([0] * 100 + [1] * 100)
    s = Sample(np.arange(0, 200, 2), np.arange(1, 200, 2), np.arange(200))
    fake_labels = np.array([0] * 20 + [1] * 180)
    c = class_sample(s, labels, labels, 0, seed=3)
    c_fake = class_sample(s, labels, fake_labels, 0, seed=3)
    assert c_fake.n == 20 and not np.array_equal(c_fake.a, s.a[:20])  # not the lowest indices
    again = class_sample(s, labels, fake_labels, 0, seed=3)
    assert np.array_equal(again.a, c_fake.a) and c.n == 50


def test_evaluate_run_reports_on_held_out_patients_with_intervals(tmp_path):
    from xraygan.metrics.evaluate import evaluate
    from xraygan.workflow import train

    data = make_prepared(tmp_path / "data80", size=16, n_per_class=80, per_patient=2, split_fracs=(0.2, 0.2))

    run = train({"data": str(data), "out": str(tmp_path / "run"), "conditional": True, "steps": 2, "batch": 8,
                 "width": 8, "latent_dim": 8, "sample_every": 100, "ckpt_every": 100, "log_every": 1, "device": "cpu"})
    res = evaluate(data, run=run, checkpoint="latest", n=200, features="random", device="cpu", cache=False,
                   kid_subsets=2, kid_subset_size=4, ssim_pairs=10, bootstrap=50)
    assert res["report_splits"] == {"NORMAL": "val+test", "PNEUMONIA": "val+test"}  # < 200 test images per class
    assert any("val + test" in w for w in res["warnings"])
    assert any("unstable" in w for w in res["warnings"])
    for c in ("NORMAL", "PNEUMONIA"):
        e = res["per_class"][c]
        assert e["n"] >= 2 and e["n_patients"] >= 1
        lo, hi = e["ci95"]["recall"]
        assert 0.0 <= lo <= hi <= 1.0
    assert res["n"] <= 32  # halves of the val + test images only (2 x 16 per class)
