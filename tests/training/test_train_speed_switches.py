"""Speed switches of every family (--precision, --channels-last, fused Adam) and the global-batch
BatchNorm of data-parallel training, on tiny real models (16 px, one or two steps)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from xraygan.errors import UsageError, XrayganError
from xraygan.training.config import TrainConfig
from xraygan.training.distributed import GlobalBatchNorm, sync_batchnorm
from xraygan.training.families import get_family
from xraygan.training.family_common import autocast_for, fast_bf16, resolve_precision
from xraygan.training.family_options import FAMILIES

CPU = torch.device("cpu")


def _family(model: str, **kw):
    cfg = TrainConfig(model=model, size=16, batch=4, width=4, latent_dim=8, device="cpu", diffaug="none", **kw)
    try:
        return get_family(model)(cfg, 0, CPU)
    except XrayganError as e:  # a family that needs a local weights file to be built at all
        pytest.skip(f"--model {model} cannot be built here: {e}")


def test_precision_auto_follows_the_cpu_capability_and_the_family() -> None:
    fast = fast_bf16(CPU)
    assert resolve_precision("auto", CPU, bf16_on_cpu=True) == ("bf16" if fast else "fp32")
    assert resolve_precision("auto", CPU, bf16_on_cpu=False) == "fp32"  # a family slower in bf16 on CPUs
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(XrayganError, match="--precision half"):
        resolve_precision("half", CPU)
    with pytest.raises(UsageError, match="--precision"):
        TrainConfig(precision="fp16").validate()
    x = torch.randn(2, 3)
    with autocast_for("bf16", CPU):
        assert (x @ x.t()).dtype == torch.bfloat16
    with autocast_for("fp32", CPU):
        assert (x @ x.t()).dtype == torch.float32


OURS = ("dcgan", "stylegan2", "pggan")  # the other families run in the slow suite (each takes seconds)


@pytest.mark.parametrize("model", [m if m in OURS else pytest.param(m, marks=pytest.mark.slow) for m in FAMILIES])
def test_every_family_trains_and_samples_under_the_switches(model: str) -> None:
    """bf16 autocast and channels-last on, whatever this machine's default (the other training tests run the default)."""
    precision, channels_last = "bf16", True
    fam = _family(model, precision=precision, channels_last=channels_last)
    assert fam.speed == {"precision": precision, "channels_last": channels_last}
    convs = [m.weight for m in list(fam.G.modules()) + list(fam.D.modules())
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.weight.dim() == 4 and min(m.weight.shape[:2]) > 1]
    if channels_last and convs:
        assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(4, 1, 16, 16, generator=gen) * 2 - 1
    before = [p.detach().clone() for p in fam.G.parameters()]
    for step in range(1):
        logs = fam.train_step(real, torch.zeros(4, dtype=torch.long), step, gen)
        assert all(torch.isfinite(torch.tensor(float(v))) for k, v in logs.items() if k.startswith("loss"))
    assert any(not torch.equal(a, b) for a, b in zip(before, fam.G.parameters()))  # G learnt under the switches
    fam.G.eval()
    with torch.no_grad(), fam.autocast():
        img = fam.sample(fam.G, fam.latent(3, gen), torch.zeros(3, dtype=torch.long))
    assert img.shape == (3, 1, 16, 16) and torch.isfinite(img.float()).all()


def test_stylegan2_and_pggan_adam_is_fused_where_pytorch_has_it() -> None:
    """Fused Adam won for StyleGAN2 and PGGAN (not for the DCGAN, which keeps PyTorch's default)."""
    for model in ("stylegan2", "pggan"):
        fam = _family(model, precision="fp32")
        assert fam.opt_g.defaults.get("fused") is True and fam.opt_d.defaults.get("fused") is True


def test_global_batchnorm_is_batchnorm_outside_a_process_group_and_keeps_parameters() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Sequential(nn.BatchNorm2d(3)))
    ref = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Sequential(nn.BatchNorm2d(3)))
    ref.load_state_dict(net.state_dict())
    params, keys = [id(p) for p in net.parameters()], list(net.state_dict())
    sync_batchnorm(net)
    assert isinstance(net[1], GlobalBatchNorm) and isinstance(net[3][0], GlobalBatchNorm)
    assert [id(p) for p in net.parameters()] == params and list(net.state_dict()) == keys  # optimizers and checkpoints keep working
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(net(x), ref(x))
    assert torch.equal(net[1].running_var, ref[1].running_var)


def test_training_announces_its_speed_settings(tiny_prepared: Path, tmp_path: Path, caplog) -> None:
    from xraygan.training.loop import train

    cfg = TrainConfig(data=str(tiny_prepared), out=str(tmp_path / "run"), steps=1, batch=4, width=4, latent_dim=8,
                      device="cpu", sample_every=1, ckpt_every=1, precision="fp32", channels_last=True)
    with caplog.at_level(logging.INFO, logger="xraygan.training.loop"):
        train(cfg)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("speed:"))
    assert "precision fp32" in line and "channels_last on" in line and "Adam" in line
