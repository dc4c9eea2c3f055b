"""--model fastgan (issue 12 item 4): skip-layer excitation, D's self-supervised reconstruction,
projection conditioning, exact resume, generation with --conditional and --label. 16 px, seconds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xraygan.cli import main
from xraygan.errors import UsageError, XrayganError
from xraygan.models.fastgan import SIZES, FastGANDiscriminator, FastGANGenerator, SkipLayerExcitation, quadrant
from xraygan.training.config import TrainConfig
from xraygan.training.family_fastgan import FastGANFamily
from xraygan.workflow import resume_config, train

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks run fastest on one thread (and far slower with several on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = ["--batch", "8", "--width", "8", "--latent-dim", "16", "--device", "cpu", "-q"]


def cfg_for(data: Path, out: Path, steps: int, model: str = "fastgan", **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), model=model, steps=steps, batch=8, latent_dim=16, width=8, size=16,
                sample_every=1000, ckpt_every=1000, log_every=1, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def losses(run: Path) -> list[tuple[float, float]]:
    return [(m["loss_d"], m["loss_g"]) for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


@pytest.mark.parametrize("size", [s if s <= 64 else pytest.param(s, marks=pytest.mark.slow) for s in SIZES])
def test_shapes_ranges_and_reconstructions(size: int) -> None:
    torch.manual_seed(0)
    width = 4 if size >= 128 else 8
    G, D = FastGANGenerator(size, 16, width, n_classes=2), FastGANDiscriminator(size, width, n_classes=2, mbstd=True)
    y = torch.tensor([0, 1])
    x = G(torch.randn(2, 16), y)
    assert x.shape == (2, 1, size, size) and x.min() >= -1 and x.max() <= 1 and x.std() > 0
    assert len(G.sle) == sum(1 for r in (16, 32, 64, 128, 256) if r <= size)  # every resolution >= 16 is excited
    logits, rec = D(x, y, part=3)
    side = max(8, min(size // 2, 64))
    assert logits.shape == (2,) and rec["whole"].shape == rec["part"].shape == (2, 1, side, side)
    assert torch.isfinite(D.reconstruction_loss(x, rec, 3))


def test_skip_layer_excitation_gates_channels_by_the_low_resolution_map() -> None:
    torch.manual_seed(0)
    sle = SkipLayerExcitation(8, 4)
    high = torch.randn(2, 4, 16, 16)
    low_a, low_b = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    out = sle(low_a, high)
    gate = out / high  # one factor per (sample, channel), in (0, 1)
    assert torch.allclose(gate, gate[..., :1, :1].expand_as(gate), atol=1e-5)
    assert (gate > 0).all() and (gate < 1).all()
    assert not torch.allclose(sle(low_b, high), out)  # the gate follows the low-resolution content


def test_quadrants_tile_the_image() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    top = torch.cat([quadrant(x, 0), quadrant(x, 1)], dim=3)
    bottom = torch.cat([quadrant(x, 2), quadrant(x, 3)], dim=3)
    assert torch.equal(torch.cat([top, bottom], dim=2), x)


def test_the_decoders_learn_to_redraw_the_input() -> None:
    """The self-supervised loss is real: a few Adam steps on it alone cut it for fixed images."""
    torch.manual_seed(0)
    D = FastGANDiscriminator(16, 8)
    x = torch.tanh(torch.randn(8, 1, 16, 16))
    opt = torch.optim.Adam(D.parameters(), lr=2e-3)
    first = None
    for i in range(25):
        _, rec = D(x, part=i % 4)
        loss = D.reconstruction_loss(x, rec, i % 4)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def test_label_changes_g_and_the_projection_head_changes_d() -> None:
    torch.manual_seed(0)
    G, D = FastGANGenerator(16, 16, 8, n_classes=2).eval(), FastGANDiscriminator(16, 8, n_classes=2).eval()
    z = torch.randn(4, 16)
    zeros, ones = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    a, b = G(z, zeros), G(z, ones)
    assert (a - b).abs().mean() > 0.05 * a.abs().mean()
    with torch.no_grad():
        D.embed.parametrizations.weight.original.normal_()
    assert not torch.allclose(D(a, zeros), D(a, ones))
    with pytest.raises(ValueError, match="labels"):
        G(z)


def test_resumed_conditional_run_equals_uninterrupted(tiny_prepared: Path, tmp_path: Path) -> None:
    full = train(cfg_for(tiny_prepared, tmp_path / "full", 4, conditional=True))
    half = train(cfg_for(tiny_prepared, tmp_path / "half", 2, conditional=True))
    train(resume_config(half, steps=4), resume=True)
    a = torch.load(full / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(half / "checkpoints" / "latest.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for part in ("G", "D"):
        for k, t in a["modules"][part].items():
            assert torch.equal(t, b["modules"][part][k]), (part, k)
    for k, t in a["ema"].items():
        assert torch.equal(t, b["ema"][k]), ("ema", k)
    assert losses(full) == losses(half)
    logs = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert all(m["loss_rec"] > 0 for m in logs)
    opts = a["config"]["model_options"]
    assert opts["mbstd"] is True and opts["balance"] is True  # auto: on when conditional
    assert a["config"]["loss"] == "hinge"


def test_cli_trains_per_class_and_conditional_models_that_generate(tiny_prepared: Path, tmp_path: Path) -> None:
    from PIL import Image

    one = tmp_path / "normal"
    assert main(["train", str(tiny_prepared), "--out", str(one), *TINY, "--model", "fastgan", "--label", "NORMAL",
                 "--steps", "2", "--model-option", "rec_weight=0.5"]) == 0
    ck = torch.load(one / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["n_classes"] == 0 and ck["config"]["model_options"]["balance"] is False
    assert main(["generate", str(one), "--n", "3", "--out", str(tmp_path / "g1"), "--device", "cpu", "-q"]) == 0
    pngs = sorted((tmp_path / "g1").rglob("*.png"))
    assert len(pngs) == 3 and Image.open(pngs[0]).size == (16, 16)
    cond = tmp_path / "cond"
    assert main(["train", str(tiny_prepared), "--out", str(cond), *TINY, "--model", "fastgan", "--conditional", "--steps", "2"]) == 0
    assert main(["generate", str(cond), "--n", "4", "--out", str(tmp_path / "g2"), "--device", "cpu", "-q"]) == 0
    assert {p.parent.name for p in (tmp_path / "g2").rglob("*.png")} == {"NORMAL", "PNEUMONIA"}


def test_bad_size_and_options_are_clear_errors(tiny_prepared: Path, tmp_path: Path) -> None:
    cfg = cfg_for(tiny_prepared, tmp_path / "x", 1)
    cfg.size = 8
    with pytest.raises(XrayganError, match="--size 8"):
        FastGANFamily(cfg, 0, torch.device("cpu"))
    cfg.size = 16
    cfg.model_options = {"rec_weight": "-1"}
    with pytest.raises(UsageError, match="rec_weight"):
        FastGANFamily(cfg, 0, torch.device("cpu"))
    cfg.model_options = {"mbstd": "maybe"}
    with pytest.raises(UsageError, match="mbstd"):
        FastGANFamily(cfg, 2, torch.device("cpu"))
    fam = FastGANFamily(cfg_for(tiny_prepared, tmp_path / "y", 1), 0, torch.device("cpu"))
    assert (fam.cfg.lr_g, fam.cfg.beta1, fam.cfg.beta2) == (2e-4, 0.5, 0.999)
