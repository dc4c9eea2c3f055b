"""--model projected (issue 12 item 4): D reads the frozen shipped X-ray encoder through fixed random
projections; only its heads learn; exact resume; generation with --conditional and --label. 16 px."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xraygan.cli import main
from xraygan.errors import XrayganError
from xraygan.metrics.encoder import load_encoder
from xraygan.models.projected import ENCODER_ASSET, FrozenEncoder, ProjectedDiscriminator, RandomMixing
from xraygan.training.config import TrainConfig
from xraygan.training.family_projected import ProjectedFamily
from xraygan.workflow import resume_config, train

TINY = ["--batch", "8", "--width", "8", "--latent-dim", "16", "--device", "cpu", "-q"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks run fastest on one thread (and far slower with several on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cfg_for(data: Path, out: Path, steps: int, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), model="projected", steps=steps, batch=8, latent_dim=16, width=8, size=16,
                sample_every=1000, ckpt_every=1000, log_every=1, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_the_frozen_features_are_the_shipped_encoders() -> None:
    enc, _ = load_encoder(ENCODER_ASSET)
    frozen = FrozenEncoder()
    x = torch.tanh(torch.randn(3, 1, 64, 64))
    maps = frozen(x)
    with torch.no_grad():
        h, want = x, []
        for stage in enc.trunk:
            h = stage(h)
            want.append(h)
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4]
    for got, ref in zip(maps, want[-4:]):
        assert torch.allclose(got, ref, atol=1e-5)
    assert list(frozen.parameters()) == []  # buffers only: nothing to train


def test_random_mixing_is_fixed_and_mixes_scales() -> None:
    a, b = RandomMixing([4, 8], 6), RandomMixing([4, 8], 6)
    assert all(torch.equal(x, y) for x, y in zip(a.buffers(), b.buffers()))
    shallow, deep = torch.randn(1, 4, 8, 8), torch.randn(1, 8, 4, 4)
    out = a([shallow, deep])
    assert [o.shape for o in out] == [(1, 6, 8, 8), (1, 6, 4, 4)]
    # the deeper map reaches the shallower output (cross-scale mixing), not the other way round
    out2 = a([shallow, deep + 1])
    assert not torch.allclose(out[0], out2[0])
    assert torch.equal(a([shallow + 1, deep])[1], out[1])


def test_only_the_heads_learn_and_g_gets_gradients_through_the_encoder(tiny_prepared: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    fam = ProjectedFamily(cfg_for(tiny_prepared, tmp_path / "r", 1), 2, torch.device("cpu"))
    D = fam.D
    assert isinstance(D, ProjectedDiscriminator)
    frozen = {k: v.clone() for k, v in D.state_dict().items() if k.startswith(("features.", "mix."))}
    heads = {k: v.clone() for k, v in D.state_dict().items() if k.startswith("heads.")}
    g_before = [p.clone() for p in fam.G.parameters()]
    n_opt = sum(p.numel() for grp in fam.opt_d.param_groups for p in grp["params"])
    assert n_opt == sum(p.numel() for p in D.heads.parameters())
    real = torch.tanh(torch.randn(8, 1, 16, 16))
    logs = fam.train_step(real, torch.tensor([0, 1] * 4), 0, torch.Generator().manual_seed(1))
    assert {"loss_d", "loss_g", "d_real", "d_fake"} <= set(logs)
    after = D.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in frozen.items())
    assert any(not torch.equal(v, after[k]) for k, v in heads.items())
    assert all(not torch.equal(a, b) for a, b in zip(g_before, fam.G.parameters()) if a.ndim > 1)
    assert D(real, torch.zeros(8, dtype=torch.long)).shape == (8, 4)  # one logit per scale


@pytest.mark.parametrize("generator", ["fastgan", "dcgan"])
def test_resumed_conditional_run_equals_uninterrupted(tiny_prepared: Path, tmp_path: Path, generator: str) -> None:
    opts = {"generator": generator, "proj_channels": 16}
    full = train(cfg_for(tiny_prepared, tmp_path / "full", 3, conditional=True, model_options=dict(opts)))
    half = train(cfg_for(tiny_prepared, tmp_path / "half", 2, conditional=True, model_options=dict(opts)))
    train(resume_config(half, steps=3), resume=True)
    a = torch.load(full / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(half / "checkpoints" / "latest.pt", weights_only=True)
    for part in ("G", "D"):
        for k, t in a["modules"][part].items():
            assert torch.equal(t, b["modules"][part][k]), (part, k)
    for k, t in a["ema"].items():
        assert torch.equal(t, b["ema"][k]), ("ema", k)
    read = lambda run: [json.loads(line)["loss_d"] for line in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert read(full) == read(half)
    assert a["config"]["model_options"]["generator"] == generator and a["config"]["beta1"] == 0.0


def test_cli_per_class_model_generates(tiny_prepared: Path, tmp_path: Path) -> None:
    run = tmp_path / "pn"
    assert main(["train", str(tiny_prepared), "--out", str(run), *TINY, "--model", "projected", "--label", "PNEUMONIA",
                 "--steps", "2", "--model-option", "proj_channels=8"]) == 0
    assert main(["generate", str(run), "--n", "2", "--out", str(tmp_path / "g"), "--device", "cpu", "-q"]) == 0
    assert len(list((tmp_path / "g").rglob("*.png"))) == 2


def test_a_missing_encoder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(XrayganError, match="cannot be read"):
        ProjectedDiscriminator(8, 0, encoder=tmp_path / "none.pt")
