"""xraygan.metrics.image_sets on its own: the real halves and fake sample, the held-out report set of
a prepared dataset, opening PNG and DICOM class folders (mixed sizes resized with a warning),
class alignment by name, the memorisation sets, class shares of sampler labels and a run's sampler
images (a tiny real DCGAN generator)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import xraygan.metrics.image_sets as S
from tests.prepare_fixtures import save_png
from xraygan.data.dataset import PreparedDataset
from xraygan.errors import XrayganError
from xraygan.metrics.image_sets import (
    Images,
    _open,
    _resize_pixels,
    align_classes,
    draw_sample,
    labels_like,
    memorisation_sets,
    report_real_set,
    sample_run,
    sampler_images,
    to_uint8_pixels,
)


def _full(prep: Path) -> Images:
    ds = PreparedDataset.open(prep)
    return Images(np.asarray(ds.pixels()), ds.labels, ds.classes)


def test_draw_sample_gives_disjoint_real_halves_and_a_fake_sample():
    real, fake = np.zeros(25, int), np.zeros(9, int)
    s = draw_sample(real, fake, n=100, seed=3)
    assert s.n == len(s.b) == len(s.fake) == 9  # min(n, 25 // 2, 9)
    assert not set(s.a) & set(s.b) and len(set(s.a)) == 9 and len(set(s.fake)) == 9
    assert all(np.all(np.diff(v) > 0) for v in (s.a, s.b, s.fake)) and max(s.a.max(), s.b.max()) < 25 and s.fake.max() < 9
    again, other = draw_sample(real, fake, 100, 3), draw_sample(real, fake, 100, 4)
    assert np.array_equal(again.a, s.a) and np.array_equal(again.b, s.b)
    assert not (np.array_equal(other.a, s.a) and np.array_equal(other.b, s.b))
    assert draw_sample(real, fake, n=4, seed=0).n == 4
    with pytest.raises(XrayganError, match="3 real and 9 synthetic; need at least 4 real"):
        draw_sample(np.zeros(3), fake, 10, 0)


def test_report_real_set_is_val_and_test_below_the_class_minimum(tiny_prepared, monkeypatch):
    ds = PreparedDataset.open(tiny_prepared)
    full = _full(tiny_prepared)
    imgs, pats, used = report_real_set(tiny_prepared, full)
    rows = [i for i, r in enumerate(ds.rows) if r["split"] in ("val", "test")]
    assert used == {"NORMAL": "val+test", "PNEUMONIA": "val+test"}
    assert np.array_equal(imgs.pixels, full.pixels[rows]) and imgs.labels.tolist() == full.labels[rows].tolist()
    assert list(pats) == [ds.rows[i]["patient_id"] for i in rows]
    n_test_normal = sum(r["split"] == "test" and r["label"] == "NORMAL" for r in ds.rows)
    monkeypatch.setattr(S, "MIN_REPORT_CLASS", n_test_normal)  # NORMAL now has enough test images
    n_test_pneu = sum(r["split"] == "test" and r["label"] == "PNEUMONIA" for r in ds.rows)
    imgs, _, used = report_real_set(tiny_prepared, full)
    assert used["NORMAL"] == "test"
    assert used["PNEUMONIA"] == ("test" if n_test_pneu >= n_test_normal else "val+test")
    want = [i for i, r in enumerate(ds.rows) if r["split"] == "test" or (r["split"] == "val" and used[r["label"]] == "val+test")]
    assert np.array_equal(imgs.pixels, full.pixels[want])


def test_open_png_and_dicom_class_folders(tmp_path, caplog):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (4, 12, 12), dtype=np.uint8)
    for i, img in enumerate(imgs):
        save_png(tmp_path / "png" / ("b" if i % 2 else "a") / f"{i}.png", img)
    s = _open(tmp_path / "png", "--fake")
    assert s.classes == ["a", "b"] and s.labels.tolist() == [0, 0, 1, 1]
    assert np.array_equal(s.pixels, imgs[[0, 2, 1, 3]])
    # mixed sizes are brought to 256 px first, with a warning
    save_png(tmp_path / "png" / "a" / "big.png", np.full((20, 20), 200, np.uint8))
    with caplog.at_level(logging.WARNING, logger="xraygan"):
        mixed = _open(tmp_path / "png", "--fake")
    assert mixed.pixels.shape == (5, 256, 256) and "different sizes were resized to 256 px" in caplog.text
    with pytest.raises(XrayganError, match="no PNG"):
        (tmp_path / "empty" / "a").mkdir(parents=True)
        _open(tmp_path / "empty", "--fake")
    pytest.importorskip("pydicom")
    from tests.prepare_fixtures import dicom_file

    for i, img in enumerate(imgs[:2]):
        (tmp_path / "dcm" / "a").mkdir(parents=True, exist_ok=True)
        dicom_file(tmp_path / "dcm" / "a" / f"{i}.dcm", img.astype(np.uint16), bits_stored=8)
    d = _open(tmp_path / "dcm", "--fake")
    assert d.classes == ["a"] and np.array_equal(d.pixels, imgs[:2])  # 8 stored bits: the same grey levels


def test_resize_pixels_keeps_the_size_and_constant_images():
    pix = np.full((3, 16, 16), 77, np.uint8)
    assert _resize_pixels(pix, 16) is pix
    small = _resize_pixels(pix, 8)
    assert small.shape == (3, 8, 8) and small.dtype == np.uint8 and (small == 77).all()


def test_align_classes_by_name(tmp_path):
    fake = Images(np.zeros((4, 2, 2), np.uint8), np.array([0, 1, 2, 1]), ["pneumonia", "Normal", "covid"])
    warnings: list[str] = []
    out = align_classes(fake, ["NORMAL", "PNEUMONIA"], warnings)
    assert out.labels.tolist() == [1, 0, -1, 0] and out.classes == ["NORMAL", "PNEUMONIA"]
    assert len(warnings) == 1 and "['covid'] match no real class" in warnings[0]
    warnings.clear()
    assert align_classes(Images(fake.pixels, np.array([0, 0, 1, 1]), ["PNEUMONIA", "normal"]), ["NORMAL", "PNEUMONIA"],
                         warnings).labels.tolist() == [1, 1, 0, 0] and warnings == []


def test_memorisation_sets(tiny_prepared, tmp_path):
    full = _full(tiny_prepared)
    ds = PreparedDataset.open(tiny_prepared)
    tr, ho, what = memorisation_sets(tiny_prepared, full, None, 16)
    n_train = sum(r["split"] == "train" for r in ds.rows)
    assert len(tr.pixels) == n_train and len(ho.pixels) == len(ds) - n_train and "split train vs val+test" in what
    assert np.array_equal(tr.pixels, full.pixels[[r["split"] == "train" for r in ds.rows]])
    # --train: a folder holding 3 of the real images (and one other); those 3 leave the held-out side
    for i in (0, 5, 9):
        save_png(tmp_path / "train" / "NORMAL" / f"{i}.png", full.pixels[i])
    save_png(tmp_path / "train" / "NORMAL" / "other.png", np.zeros((16, 16), np.uint8))
    tr, ho, what = memorisation_sets(tiny_prepared, full, tmp_path / "train", 16)
    assert len(tr.pixels) == 4 and len(ho.pixels) == len(full.pixels) - 3 and what.endswith("vs real images not in it")
    assert not {p.tobytes() for p in ho.pixels} & {full.pixels[i].tobytes() for i in (0, 5, 9)}
    assert memorisation_sets(tmp_path / "train", full, None, 16) == (None, None, None)  # no prepared dataset: nothing


def test_labels_like_follows_the_real_class_shares():
    real = Images(np.zeros((40, 2, 2), np.uint8), np.array([0] * 30 + [1] * 10), ["NORMAL", "PNEUMONIA"])
    assert labels_like(["all"], real, 5) is None
    assert labels_like(["NORMAL", "PNEUMONIA"], real, 8) == [0] * 6 + [1] * 2
    assert labels_like(["pneumonia", "normal"], real, 7) == [0] * 1 + [1] * 6  # floor 1.75, 5.25; the rest to the largest
    assert labels_like(["A", "B", "C"], real, 5) == [0, 1, 2, 0, 1]  # no name matches: round robin


def test_sampler_images_and_sample_run(tmp_path):
    from xraygan.training.config import TrainConfig
    from xraygan.training.families import get_family
    from xraygan.training.sampler import Sampler

    torch.manual_seed(0)
    fam = get_family("dcgan")(TrainConfig(model="dcgan", size=16, latent_dim=8, width=4, conditional=True, device="cpu"), 2, "cpu")
    sampler = Sampler(fam, fam.G, ["NORMAL", "PNEUMONIA"], 2, tmp_path, "in-memory", 0)
    real = Images(np.zeros((4, 16, 16), np.uint8), np.array([1, 1, 1, 0]), ["normal", "pneumonia"])
    imgs = sampler_images(sampler, real, 4, seed=2)
    assert imgs.classes == ["NORMAL", "PNEUMONIA"] and imgs.labels.tolist() == [0, 1, 1, 1]
    x = sampler.sample(4, [0, 1, 1, 1], seed=2)
    assert imgs.pixels.dtype == np.uint8 and np.array_equal(imgs.pixels, np.rint((x[:, 0].numpy() + 1) * 127.5).astype(np.uint8))
    assert np.array_equal(to_uint8_pixels(torch.tensor([[[[-1.0, 1.0]]]])), np.array([[[0, 255]]], np.uint8))
    with pytest.raises(XrayganError, match="not a run folder \\(no config.yaml\\)"):
        sample_run(tmp_path, "latest", real, 4, 0, "cpu")
