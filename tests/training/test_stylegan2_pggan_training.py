"""--model stylegan2 / pggan through the shared trainer: steps, exact resume, ADA p and PGGAN alpha
across resume, truncation per class, generation, options and errors. Tiny sizes, CPU, seconds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xraygan.errors import XrayganError
from xraygan.training.config import TrainConfig
from xraygan.training.family_pggan import PGGANFamily, schedule
from xraygan.training.family_stylegan2 import StyleGAN2Family
from xraygan.workflow import resume_config, train

SG2_OPTS = {"mapping_layers": 2, "channel_base": 128, "channel_max": 16, "r1_interval": 2,
            "ada_interval": 1, "ada_kimg": 0.05, "pl_weight": 1.0, "pl_interval": 2}
PG_OPTS = {"channel_base": 128, "channel_max": 16, "phase_kimg": 0.016, "batch_per_res": "16:4"}


def cfg_for(data: Path, out: Path, model: str, steps: int, **kw) -> TrainConfig:
    opts = dict(SG2_OPTS if model == "stylegan2" else PG_OPTS)
    opts.update(kw.pop("model_options", {}))
    base = dict(data=str(data), out=str(out), model=model, steps=steps, batch=8, latent_dim=16, width=8,
                sample_every=1000, ckpt_every=1000, log_every=1, device="cpu", model_options=opts)
    base.update(kw)
    return TrainConfig(**base)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(run: Path) -> dict:
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    return {"G": ck["modules"]["G"], "D": ck["modules"]["D"], "ema": ck["ema"], "family": ck["family_state"]}


@pytest.mark.parametrize("model", ["stylegan2", "pggan"])
def test_resumed_run_equals_uninterrupted(tiny_prepared, tmp_path, model):
    full = train(cfg_for(tiny_prepared, tmp_path / "full", model, 6, conditional=True))
    half = train(cfg_for(tiny_prepared, tmp_path / "half", model, 3, conditional=True))
    ck3 = torch.load(half / "checkpoints" / "latest.pt", weights_only=True)["family_state"]
    train(resume_config(half, steps=6), resume=True)
    a, b = weights(full), weights(half)
    for part in ("G", "D", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a["family"] == b["family"]
    ma, mb = metrics(full), metrics(half)
    assert [m["loss_d"] for m in ma] == [m["loss_d"] for m in mb]
    if model == "stylegan2":
        # p moved (fast controller) and the resumed half continued from the saved p, not from 0
        ps = [m["ada_p"] for m in ma]
        assert ck3["ada"]["p"] == ps[2] > 0
        assert mb[3]["ada_p"] != 0.0 or ps[3] == 0.0
    else:
        # alpha across the resume point continues the uninterrupted schedule (mid-fade at 16 px)
        alphas = [(m["resolution"], m["alpha"]) for m in ma]
        assert [(m["resolution"], m["alpha"]) for m in mb] == alphas
        assert any(0 < a < 1 for _, a in alphas)


def test_pggan_schedule_is_continuous_and_resumes_mid_fade():
    stages = [schedule(i, 100, 4) for i in range(0, 800, 5)]
    assert stages[0] == (0, 1.0) and stages[-1] == (3, 1.0)
    # alpha rises linearly within a fade and the stage never goes back
    for (s0, a0), (s1, a1) in zip(stages, stages[1:]):
        assert s1 >= s0
        if s1 == s0:
            assert 0 <= a1 - a0 <= 0.05 + 1e-9
        else:
            assert a0 == 1.0 and a1 <= 0.05 + 1e-9
    assert schedule(150, 100, 4) == (1, 0.5) and schedule(250, 100, 4) == (1, 1.0)


def test_pggan_batch_per_resolution_and_images_in_state(tiny_prepared, tmp_path):
    cfg = cfg_for(tiny_prepared, tmp_path / "r", "pggan", 1)
    cfg.size = 16
    fam = PGGANFamily(cfg, 0, torch.device("cpu"))
    assert fam.batch_size(0) == 8 and fam.resolution == 4
    fam.images = 16 * 3 + 1          # stabilising 8 px ... then fading 16 px
    assert fam.resolution == 16 and fam.batch_size(0) == 4
    state = fam.extra_state()
    fam2 = PGGANFamily(cfg, 0, torch.device("cpu"))
    fam2.load_extra_state(state)
    assert fam2.stage_alpha == fam.stage_alpha and 0 < fam2.stage_alpha[1] < 1


def test_stylegan2_truncation_zero_gives_the_class_mean_image(tiny_prepared, tmp_path):
    cfg = cfg_for(tiny_prepared, tmp_path / "t", "stylegan2", 1, conditional=True)
    cfg.size = 16
    torch.manual_seed(0)
    fam = StyleGAN2Family(cfg, 2, torch.device("cpu"))
    z = torch.randn(6, 16)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    img = fam.sample(fam.G, z, y, truncation=0.0)
    assert img.shape == (6, 1, 16, 16) and img.min() >= -1 and img.max() <= 1
    assert torch.allclose(img[0], img[2]) and torch.allclose(img[3], img[4]) and not torch.allclose(img[0], img[3])
    center = fam.w_mean(fam.G)
    mean_img = fam.G.synthesis(center[:, None].repeat(1, fam.G.cfg.num_ws, 1), "const").clamp(-1, 1)
    assert torch.allclose(img[0], mean_img[0], atol=1e-6) and torch.allclose(img[3], mean_img[1], atol=1e-6)
    free = fam.sample(fam.G, z, y)
    assert not torch.allclose(free[0], free[1])


def test_generate_with_truncation_and_options_in_config(tiny_prepared, tmp_path):
    from xraygan.cli import main

    run = train(cfg_for(tiny_prepared, tmp_path / "run", "stylegan2", 2, conditional=True))
    conf = (run / "config.yaml").read_text()
    assert "r1_gamma" in conf and "channel_base: 128" in conf
    out = tmp_path / "gen"
    assert main(["generate", str(run), "--n", "4", "--out", str(out), "--truncation", "0.5", "--device", "cpu"]) == 0
    assert len(list(out.rglob("*.png"))) == 4
    prun = train(cfg_for(tiny_prepared, tmp_path / "prun", "pggan", 2, label="NORMAL"))
    assert main(["generate", str(prun), "--n", "3", "--out", str(tmp_path / "pgen"), "--device", "cpu"]) == 0
    from PIL import Image

    pngs = sorted((tmp_path / "pgen").rglob("*.png"))
    assert len(pngs) == 3 and Image.open(pngs[0]).size == (16, 16)


def test_r1_default_is_the_heuristic_and_bad_options_are_clear(tiny_prepared, tmp_path):
    cfg = cfg_for(tiny_prepared, tmp_path / "o", "stylegan2", 1)
    cfg.size = 16
    fam = StyleGAN2Family(cfg, 0, torch.device("cpu"))
    assert fam.options.r1_gamma == pytest.approx(0.0002 * 16 * 16 / 8)
    assert fam.opt_d.param_groups[0]["lr"] == pytest.approx(0.0025 * 2 / 3)   # lazy-R1 correction, interval 2
    cfg.model_options = {**SG2_OPTS, "mixing": 2.0}
    with pytest.raises(XrayganError, match="mixing"):
        StyleGAN2Family(cfg, 0, torch.device("cpu"))
    cfg.model_options = {**SG2_OPTS, "perceptual": 1.0}
    with pytest.raises(XrayganError, match="vgg_weights"):
        StyleGAN2Family(cfg, 0, torch.device("cpu"))
    for bad in ("16-4", 1924):          # 1924 is how YAML reads a bare 32:4
        cfg.model_options = {**PG_OPTS, "batch_per_res": bad}
        with pytest.raises(XrayganError, match="batch_per_res"):
            PGGANFamily(cfg, 0, torch.device("cpu"))
    cfg.model_options = {**PG_OPTS, "batch_per_res": {16: 2, 8: 3}}
    assert PGGANFamily(cfg, 0, torch.device("cpu")).batches == {16: 2, 8: 3}


@pytest.mark.parametrize("model", ["stylegan2", "pggan"])
def test_extra_losses_are_logged(tiny_prepared, tmp_path, model):
    from torchvision.models.vgg import cfgs, make_layers

    vgg = tmp_path / "vgg16.pt"
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}, vgg)
    run = train(cfg_for(tiny_prepared, tmp_path / "x", model, 2, size=8,
                        model_options={"feature_matching": 1.0, "perceptual": 0.1, "vgg_weights": str(vgg)}))
    last = metrics(run)[-1]
    assert last["loss_fm"] >= 0 and last["loss_perceptual"] > 0


@pytest.mark.parametrize("model", ["stylegan2", "pggan"])
def test_a_step_under_bfloat16_autocast(tiny_prepared, tmp_path, model, monkeypatch):
    """--amp uses bfloat16 autocast on CUDA; the same dtype paths are exercised here on the CPU."""
    cfg = cfg_for(tiny_prepared, tmp_path / "a", model, 1, conditional=True)
    cfg.size = 16
    cls = StyleGAN2Family if model == "stylegan2" else PGGANFamily
    monkeypatch.setattr(cls, "autocast", lambda self: torch.autocast("cpu", dtype=torch.bfloat16))
    torch.manual_seed(0)
    fam = cls(cfg, 2, torch.device("cpu"))
    if model == "pggan":
        fam.images = 24          # mid-fade at 8 px
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(8, 1, 16, 16) * 2 - 1
    before = [p.detach().clone() for p in fam.G.parameters()]
    logs = fam.train_step(real, torch.tensor([0, 1] * 4), 0, gen)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, fam.G.parameters()))
    with fam.autocast():
        assert torch.isfinite(fam.sample(fam.G, fam.latent(2, gen), torch.tensor([0, 1]))).all()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["stylegan2", "pggan"])
@pytest.mark.parametrize("size", [32, 64, 128, 256, 512, 1024])
def test_every_size_builds_and_takes_a_training_step(tmp_path, model, size):
    """Build at every power-of-two size and take one full family step (at the final resolution)."""
    cfg = TrainConfig(data="", out=str(tmp_path), model=model, size=size, batch=2, latent_dim=32, width=8,
                      device="cpu", model_options={"channel_max": 32, **({"phase_kimg": 0.001} if model == "pggan" else {})})
    cls = StyleGAN2Family if model == "stylegan2" else PGGANFamily
    fam = cls(cfg, 2, torch.device("cpu"))
    if model == "pggan":
        fam.images = 10**6       # past the schedule: final resolution, alpha 1
    gen = torch.Generator().manual_seed(0)
    logs = fam.train_step(torch.rand(2, 1, size, size) * 2 - 1, torch.tensor([0, 1]), 0, gen)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert fam.sample(fam.G, fam.latent(2, gen), torch.tensor([0, 1]), truncation=0.7).shape == (2, 1, size, size)


def test_eval_every_works_with_stylegan2(tiny_prepared, tmp_path):
    run = train(cfg_for(tiny_prepared, tmp_path / "e", "stylegan2", 2, eval_every=2))
    assert metrics(run)[-1]["fd_xray"] > 0
    assert (run / "checkpoints" / "best.pt").is_file()
