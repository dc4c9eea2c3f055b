"""DCGAN networks, DiffAugment ops and losses: shapes, ranges, conditioning, gradients."""
from __future__ import annotations

import pytest
import torch

from xraygan.augment.diffaug import OPS, diff_augment, parse_policy
from xraygan.errors import XrayganError
from xraygan.models.dcgan import SIZES, Discriminator, Generator, TutorialDiscriminator, TutorialGenerator
from xraygan.training.config import TrainConfig
from xraygan.training.families import DCGANFamily, TutorialDCGANFamily, get_family
from xraygan.training.losses import d_bce_loss, d_hinge_loss, g_bce_loss, g_hinge_loss


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("n_classes", [0, 3])
def test_shapes_and_ranges(size: int, n_classes: int) -> None:
    torch.manual_seed(0)
    width = 8 if size >= 128 else 16
    G, D = Generator(size, 32, width, n_classes), Discriminator(size, width, n_classes)
    z, y = torch.randn(2, 32), torch.tensor([0, min(2, max(n_classes - 1, 0))])
    x = G(z, y if n_classes else None)
    assert x.shape == (2, 1, size, size)
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0
    out = D(x, y if n_classes else None)
    assert out.shape == (2,) and torch.isfinite(out).all()


@pytest.mark.parametrize("size", [8, 64])
def test_tutorial_networks(size: int) -> None:
    G, D = TutorialGenerator(size, 100, 8), TutorialDiscriminator(size, 8)
    x = G(torch.randn(3, 100))
    assert x.shape == (3, 1, size, size) and x.abs().max() <= 1
    assert D(x).shape == (3,)


def test_tutorial_at_64_matches_the_tutorial_layout() -> None:
    G, D = TutorialGenerator(64, 100, 64), TutorialDiscriminator(64, 64)
    convs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(100, 512), (512, 256), (256, 128), (128, 64), (64, 1)]
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 64), (64, 128), (128, 256), (256, 512), (512, 1)]


def test_bad_size_is_a_clear_error() -> None:
    with pytest.raises(XrayganError, match="--size 48"):
        Generator(48)


def test_label_embedding_changes_the_output() -> None:
    torch.manual_seed(0)
    G = Generator(16, 16, 8, n_classes=2).eval()
    z = torch.randn(4, 16)
    a, b = G(z, torch.zeros(4, dtype=torch.long)), G(z, torch.ones(4, dtype=torch.long))
    assert (a - b).abs().mean() > 0.1 * a.abs().mean()  # a real change, relative to the (small) output at init
    assert torch.equal(a, G(z, torch.zeros(4, dtype=torch.long)))  # deterministic in eval mode


@pytest.mark.parametrize("norm", ["bn", "sn"])
def test_projection_discriminator_uses_the_label(norm: str) -> None:
    torch.manual_seed(0)
    D = Discriminator(16, 8, n_classes=2, norm=norm)
    x = torch.randn(4, 1, 16, 16)
    assert not torch.allclose(D(x, torch.zeros(4, dtype=torch.long)), D(x, torch.ones(4, dtype=torch.long)))


def _family(cls=DCGANFamily, n_classes=2, **kw):
    cfg = TrainConfig(size=16, width=8, latent_dim=16, batch=4, diffaug="translation,cutout,color", **kw)
    return cls(cfg, n_classes, torch.device("cpu"))


@pytest.mark.parametrize("loss, d_norm", [("bce", "bn"), ("hinge", "bn"), ("bce", "sn")])
def test_a_training_step_changes_every_weight_of_g_and_d(loss: str, d_norm: str) -> None:
    torch.manual_seed(0)
    fam = _family(loss=loss, model_options={"d_norm": d_norm})
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in fam.D.modules()) == (1 if d_norm == "bn" else 0)  # 16 px: one strided block after the first conv
    before = {k: {n: p.detach().clone() for n, p in m.named_parameters()} for k, m in fam.modules().items()}
    logs = fam.train_step(torch.rand(4, 1, 16, 16) * 2 - 1, torch.tensor([0, 1, 0, 1]), 0, torch.Generator().manual_seed(0))
    assert {"loss_d", "loss_g"} <= set(logs) and all(map(lambda v: v == v, logs.values()))
    for k, m in fam.modules().items():
        for n, p in m.named_parameters():
            if loss == "hinge" and (k, n) == ("D", "head.bias"):
                continue  # hinge at init: d/db of relu(1 - b) + relu(1 + b) is exactly -1 + 1 = 0
            assert not torch.equal(p, before[k][n]), f"{k}.{n} did not change"


def test_tutorial_family_is_unconditional() -> None:
    with pytest.raises(XrayganError, match="unconditional"):
        _family(TutorialDCGANFamily, n_classes=2)
    fam = _family(TutorialDCGANFamily, n_classes=0)
    assert fam.latent(3, torch.Generator().manual_seed(0)).shape == (3, 100)


def test_registry() -> None:
    assert get_family("dcgan") is DCGANFamily
    with pytest.raises(XrayganError, match="unknown model"):
        get_family("nope")
    with pytest.raises(XrayganError, match="not known to --model dcgan"):
        _family(model_options={"r1_gamma": 1.0})


@pytest.mark.parametrize("name", sorted(OPS))
def test_diffaug_ops_are_seeded_differentiable_and_keep_shape(name: str) -> None:
    x = (torch.rand(4, 1, 16, 16) * 2 - 1).requires_grad_(True)
    a = OPS[name](x, torch.Generator().manual_seed(1))
    b = OPS[name](x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_moves_content_and_cutout_blanks_a_square() -> None:
    x = torch.zeros(8, 1, 16, 16)
    x[:, :, 6:10, 6:10] = 1.0
    t = OPS["translation"](x, torch.Generator().manual_seed(0))
    assert torch.allclose(t.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))  # 2-px shift keeps the centred square
    assert not torch.equal(t, x)
    c = OPS["cutout"](torch.ones(8, 1, 16, 16), torch.Generator().manual_seed(0))
    zeros = (c == 0).sum(dim=(1, 2, 3))
    assert (zeros > 0).all() and (zeros <= 64).all()  # at most an 8x8 square


def test_diffaug_policy_parsing() -> None:
    assert parse_policy("none") == () and parse_policy("translation, color") == ("translation", "color")
    with pytest.raises(XrayganError, match="flip"):
        parse_policy("flip")
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(diff_augment(x, (), torch.Generator()), x)


def test_losses() -> None:
    big = torch.full((4,), 20.0)
    assert d_bce_loss(big, -big, smooth=1.0) < 1e-6
    assert d_bce_loss(big, -big, smooth=0.9) > 1.0  # one-sided smoothing penalises over-confidence on reals
    assert g_bce_loss(big) < 1e-6 and g_bce_loss(-big) > 10
    assert d_hinge_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)) == 0
    assert d_hinge_loss(torch.zeros(4), torch.zeros(4)) == 2
    assert g_hinge_loss(torch.tensor([1.0, 3.0])) == -2
