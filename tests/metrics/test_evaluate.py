"""`evaluate` end to end on tiny real image sets, the shipped encoder, the extractors and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import make_prepared, synthetic_xrays
from xraygan.cli import main
from xraygan.errors import XrayganError
from xraygan.metrics.evaluate import Images, evaluate, evaluate_sets, head_mapping
from xraygan.metrics.features import cache_key, cached_features, get_extractor, shipped_encoder_path, to_tensor
from xraygan.metrics.frechet import frechet_distance_features

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "xraygan" / "sample_data" / "chest-xray-sample"
FAST = {"kid_subsets": 5, "ssim_pairs": 50, "cache": False, "device": "cpu"}


def write_class_folders(root: Path, pixels: np.ndarray, labels: np.ndarray, classes: list[str]) -> Path:
    for i, (img, lab) in enumerate(zip(pixels, labels)):
        d = root / classes[lab]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.png")
    return root


def sample_pixels() -> np.ndarray:
    from xraygan.data.sources import open_image_set

    if not SAMPLE.is_dir():
        pytest.skip("the shipped chest X-ray sample is absent")
    return np.asarray(open_image_set(SAMPLE).pixels)


# --- the shipped encoder and the extractors -----------------------------------------------------
def test_shipped_encoder_loads_weights_only_and_is_small():
    path = shipped_encoder_path()
    assert path.is_file() and path.stat().st_size < 5_000_000
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["classes"] == ["normal", "bacteria", "virus"] and ckpt["train_info"]["n_train"] > 1000
    ex = get_extractor("xray")
    f = ex.features(torch.zeros(3, 1, 16, 16))
    assert f.shape == (3, ex.dim) and ex.fingerprint.startswith("xray-encoder-v1-")


def test_shipped_encoder_separates_normal_from_pneumonia_on_the_sample():
    from xraygan.data.sources import open_image_set

    if not SAMPLE.is_dir():
        pytest.skip("the shipped chest X-ray sample is absent")
    s = open_image_set(SAMPLE)
    ex = get_extractor("xray")
    x = to_tensor(np.asarray(s.pixels))
    pred = ex.predict(x)
    np.testing.assert_array_equal(pred, ex.predict_features(ex.features(x)))  # the shortcut evaluate uses
    pneu = np.asarray(s.labels) == s.classes.index("PNEUMONIA")
    assert ((pred > 0) == pneu).mean() > 0.75  # binary reading of the 3-class head


@pytest.mark.parametrize("kind", ["blur", "noise"])
def test_fd_rises_monotonically_with_degradation(kind):
    pix = sample_pixels()
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(pix))
    a, b = pix[perm[: len(pix) // 2]], to_tensor(pix[perm[len(pix) // 2:]])
    ex = get_extractor("xray")
    fa = ex.features(to_tensor(a))
    g = torch.Generator().manual_seed(0)

    def degrade(x, s):
        if kind == "noise":
            return (x + s * torch.randn(x.shape, generator=g)).clamp(-1, 1)
        import torchvision.transforms.functional as TF

        return TF.gaussian_blur(x, kernel_size=2 * int(3 * s) + 1, sigma=s) if s > 0 else x

    levels = [0.0, 0.5, 1.0, 2.0] if kind == "blur" else [0.0, 0.05, 0.15, 0.4]
    fds = [frechet_distance_features(fa, ex.features(degrade(b, s))) for s in levels]
    assert all(x < y for x, y in zip(fds, fds[1:])), fds


def test_random_extractor_is_seeded():
    x = to_tensor(synthetic_xrays(4, 16, 0, 0))
    f0, f0b, f1 = (get_extractor("random", seed=s).features(x) for s in (0, 0, 1))
    np.testing.assert_array_equal(f0, f0b)
    assert not np.allclose(f0, f1) and f0.shape == (4, 256)


def test_inception_plumbing_with_a_stand_in_network_and_clear_errors(tmp_path):
    class StandIn(torch.nn.Module):  # takes uint8 (B, 3, H, W) like torch-fidelity's extractor
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)

        def forward(self, x):
            assert x.dtype == torch.uint8 and x.shape[1] == 3
            return (self.conv(x.float() / 255).mean(dim=(2, 3)),)

    torch.manual_seed(0)
    ex = get_extractor("inception", inception_net=StandIn())
    assert ex.features(to_tensor(synthetic_xrays(5, 16, 0, 0))).shape == (5, 8)
    with pytest.raises(XrayganError, match="pt_inception-2015-12-05-6726825d.pth"):
        get_extractor("inception")
    with pytest.raises(XrayganError, match="no such file"):
        get_extractor("inception", inception_weights=tmp_path / "missing.pth")
    with pytest.raises(XrayganError, match="unknown extractor"):
        get_extractor("vgg")


class _Boom:  # a pickle that runs code when unpickled
    def __init__(self, flag):
        self.flag = str(flag)

    def __reduce__(self):
        return (open, (self.flag, "w"))


def test_inception_weights_are_never_unpickled_as_code(tmp_path, monkeypatch):
    fid = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    flag = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(1), "x": _Boom(flag)}, evil)
    with pytest.raises(XrayganError, match="evil.pth.*weights_only=True"):
        get_extractor("inception", inception_weights=evil)
    assert not flag.exists()
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(XrayganError, match="wrong.pth: does not hold the FID Inception-v3 weights"):
        get_extractor("inception", inception_weights=wrong)
    # a real (randomly initialised) Inception-v3 state dict of the right layout loads and embeds to 2048-d
    with monkeypatch.context() as m:
        m.setattr(fid, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(fid.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        torch.manual_seed(0)
        state = fid.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    good = tmp_path / "random_inception.pth"
    torch.save(state, good)
    ex = get_extractor("inception", inception_weights=good)
    f = ex.features(to_tensor(synthetic_xrays(2, 16, 0, 0)))
    assert f.shape == (2, 2048) and np.isfinite(f).all() and ex.fingerprint.startswith("inception-v3-compat-")


def test_feature_cache_is_keyed_by_content_and_extractor(tmp_path):
    pix = synthetic_xrays(6, 16, 0, 0)
    ex0, ex1 = get_extractor("random", seed=0), get_extractor("random", seed=1)
    f = cached_features(pix, ex0, 16, tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    np.testing.assert_array_equal(cached_features(pix, ex0, 16, tmp_path), f)
    assert cache_key(pix, ex0, 16) != cache_key(pix, ex1, 16) != cache_key(pix[::-1], ex1, 16)
    assert cache_key(pix, ex0, 16) != cache_key(pix, ex0, 32)
    cached_features(pix, ex1, 16, tmp_path)
    assert len(list(tmp_path.iterdir())) == 2


def test_head_mapping():
    from xraygan.metrics.encoder import SHIPPED_CLASS_GROUPS

    head = ["normal", "bacteria", "virus"]
    assert head_mapping(head, ["NORMAL", "PNEUMONIA"], SHIPPED_CLASS_GROUPS) == {0: {0}, 1: {1, 2}}
    assert head_mapping(head, ["NORMAL", "PNEUMONIA"]) is None  # no class names built in: they come from the encoder
    assert head_mapping(head, ["normal", "virus"]) == {0: {0}, 1: {2}}
    assert head_mapping(head, ["cat", "dog"]) is None


# --- evaluate end to end ------------------------------------------------------------------------
def test_evaluate_folders_records_floor_per_class_and_provenance(tmp_path):
    real = make_prepared(tmp_path / "real", size=16, n_per_class=40)
    fake_pix = np.concatenate([synthetic_xrays(20, 32, c, 50 + c) for c in (0, 1)])  # other size: resized
    fake = write_class_folders(tmp_path / "fake", fake_pix, np.repeat([0, 1], 20), ["NORMAL", "PNEUMONIA"])
    out = tmp_path / "eval.json"
    res = evaluate(real, fake, out=out, n=30, features="random", **FAST)
    saved = json.loads(out.read_text())
    assert saved["n"] == 30 and saved["resolution"] == 16 and saved["resized"]["fake"] == [32, 16]
    assert saved["features"]["fingerprint"] == "randomcnn-seed0-v1" and "torch" in saved["versions"]
    for key in ("fd", "kid", "precision", "recall", "density", "coverage", "ssim"):
        assert saved["overall"][key]["value"] is not None and saved["overall"][key]["floor"] is not None, key
    assert set(saved["per_class"]) == {"NORMAL", "PNEUMONIA"} and saved["per_class"]["NORMAL"]["n"] >= 5
    assert set(saved["class_consistency"]) == {"NORMAL", "PNEUMONIA"}
    assert saved["memorisation"]["pixel"]["n_train"] > 0 and Path(saved["memorisation"]["closest_pairs_png"]).is_file()
    assert any("resized" in w for w in saved["warnings"]) and any("small" in w for w in saved["warnings"])
    assert res["overall"]["fd"]["value"] == pytest.approx(saved["overall"]["fd"]["value"])


def test_planted_training_copies_are_flagged_end_to_end(tmp_path):
    from xraygan.data.dataset import PreparedDataset

    real = make_prepared(tmp_path / "real", size=16, n_per_class=80, seed=1)
    ds = PreparedDataset.open(real)
    tr = ds.indices(split="train")
    copies = np.asarray(ds.pixels()[tr[:12]])
    novel = np.concatenate([synthetic_xrays(10, 16, c, 900 + c) for c in (0, 1)])
    fake_c = write_class_folders(tmp_path / "copies", copies, ds.labels[tr[:12]], ds.classes)
    fake_n = write_class_folders(tmp_path / "novel", novel, np.repeat([0, 1], 10), ds.classes)
    m_c = evaluate(real, fake_c, features="random", n=12, **FAST)["memorisation"]
    m_n = evaluate(real, fake_n, features="random", n=20, **FAST)["memorisation"]
    assert m_c["pixel"]["fake_below"] == 12 and m_c["feature"]["fake_below"] == 12
    assert m_c["pixel"]["authenticity"] == 0.0
    for space in ("pixel", "feature"):  # novel images: about as far from training as held-out real ones
        assert m_n[space]["fake_below"] <= 2 and m_n[space]["authenticity"] > 0.3


def test_bad_inputs(tmp_path):
    real = make_prepared(tmp_path / "real", size=16, n_per_class=10)
    (tmp_path / "empty" / "NORMAL").mkdir(parents=True)
    with pytest.raises(XrayganError):
        evaluate(real, tmp_path / "empty", **FAST)
    one = write_class_folders(tmp_path / "one", synthetic_xrays(1, 16, 0, 0), np.array([0]), ["NORMAL", "PNEUMONIA"])
    with pytest.raises(XrayganError, match="too few"):
        evaluate(real, one, features="random", **FAST)
    with pytest.raises(XrayganError, match="either"):
        evaluate(real, **FAST)
    with pytest.raises(XrayganError, match="not a run folder"):
        evaluate(real, run=tmp_path, **FAST)


def test_evaluate_sets_same_distribution_scores_at_the_floor():
    lab = np.repeat([0, 1], 60)
    real = Images(np.concatenate([synthetic_xrays(60, 16, c, 10 + c) for c in (0, 1)]), lab, ["NORMAL", "PNEUMONIA"])
    fake = Images(np.concatenate([synthetic_xrays(60, 16, c, 20 + c) for c in (0, 1)]), lab, ["NORMAL", "PNEUMONIA"])
    res = evaluate_sets(real, fake, features="random", n=60, per_class=False, kid_subset_size=30, **FAST)
    o = res["overall"]
    for key in ("precision", "recall", "coverage"):  # same generator of images: at the floor
        assert abs(o[key]["value"] - o[key]["floor"]) < 0.2, key
    assert o["fd"]["value"] < 3 * o["fd"]["floor"] and abs(o["kid"]["value"]) < 5 * o["kid"]["std"]


def test_cli_evaluate_prints_table_and_writes_json(tmp_path, capsys):
    real = make_prepared(tmp_path / "real", size=16, n_per_class=24)
    fake = make_prepared(tmp_path / "fake", size=16, n_per_class=24, seed=5)
    out = tmp_path / "e.json"
    rc = main(["evaluate", "--real", str(real), "--fake", str(fake), "--n", "20", "--features", "random", "--kid-subsets", "3",
               "--ssim-pairs", "20", "--no-cache", "--out", str(out), "--device", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0 and "Frechet distance" in text and "floor" in text and out.is_file()
    assert main(["evaluate", "--real", str(real), "--fake", str(tmp_path / "nope")]) == 1  # missing input
    assert main(["evaluate", "--fake", str(fake)]) == 2  # --real not given: a usage error


def test_evaluate_never_overwrites_a_file_it_did_not_write(tmp_path):
    real = make_prepared(tmp_path / "real", size=16, n_per_class=24)
    fake = make_prepared(tmp_path / "fake", size=16, n_per_class=24, seed=5)
    cmd = ["evaluate", "--real", str(real), "--fake", str(fake), "--n", "20", "--features", "random", "--kid-subsets", "3",
           "--ssim-pairs", "20", "--no-cache", "--device", "cpu", "--out"]
    mine = tmp_path / "notes.json"
    mine.write_text("my notes")
    assert main([*cmd, str(mine)]) == 2 and mine.read_text() == "my notes"  # exists: refused without --force
    assert main([*cmd, str(mine), "--force"]) == 2 and mine.read_text() == "my notes"  # not xraygan's: refused with it too
    pairs = tmp_path / "e.pairs.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(pairs)  # a user's PNG where OUT.pairs.png would go
    assert main([*cmd, str(tmp_path / "e.json"), "--force"]) == 2 and not (tmp_path / "e.json").exists()
    pairs.unlink()
    assert main([*cmd, str(tmp_path / "e.json")]) == 0
    first = (tmp_path / "e.json").read_text()
    assert Image.open(pairs).info["Software"].startswith("xraygan")
    assert main([*cmd, str(tmp_path / "e.json")]) == 2  # its own result: still needs --force
    assert main([*cmd, str(tmp_path / "e.json"), "--force", "--seed", "1"]) == 0
    assert (tmp_path / "e.json").read_text() != first
    assert main([*cmd, str(tmp_path)]) == 2  # a folder
    assert main([*cmd, str(mine / "e.json")]) == 2  # under a file


def test_smaller_synthetic_images_are_compared_at_their_own_size(tmp_path):
    real = make_prepared(tmp_path / "real", size=32, n_per_class=12)
    fake = make_prepared(tmp_path / "fake", size=16, n_per_class=12, seed=5)
    res = evaluate(real, fake, features="random", n=12, **FAST)
    assert res["resized"] == {"real": [32, 16]} and res["resolution"] == 16
    assert any("resized to 16 px" in w for w in res["warnings"])
    assert evaluate(real, fake, features="random", n=12, size=32, **FAST)["resized"] == {"fake": [16, 32]}  # asked for


def test_channels_are_folded_to_grayscale(tmp_path):
    real = make_prepared(tmp_path / "real", size=16, n_per_class=10)
    for c, name in enumerate(["NORMAL", "PNEUMONIA"]):
        d = tmp_path / "rgb" / name
        d.mkdir(parents=True)
        for i, img in enumerate(synthetic_xrays(4, 16, c, 70 + c)):
            Image.fromarray(np.stack([img] * 3, -1)).save(d / f"{i}.png")
    res = evaluate(real, tmp_path / "rgb", features="random", n=8, **FAST)
    assert res["n"] == 8 and res["overall"]["fd"]["value"] is not None


def test_real_inception_weights_when_available():
    import os

    path = os.environ.get("XRAYGAN_INCEPTION_WEIGHTS")
    if not path:
        pytest.skip("set XRAYGAN_INCEPTION_WEIGHTS to a local pt_inception-2015-12-05-6726825d.pth to run")
    pytest.importorskip("torch_fidelity")
    ex = get_extractor("inception", inception_weights=path)
    assert ex.features(to_tensor(synthetic_xrays(2, 32, 0, 0))).shape == (2, 2048)


def test_radiomics_features_when_installed():
    pytest.importorskip("radiomics")
    from xraygan.metrics.radiomics import radiomics_features

    f = radiomics_features(synthetic_xrays(3, 16, 0, 0))
    assert f.shape[0] == 3 and f.shape[1] > 50 and np.isfinite(f).all()
    assert get_extractor("radiomics").standardise
