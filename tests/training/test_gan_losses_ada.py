"""Losses/regularisers for StyleGAN2 and PGGAN, the ADA pipeline and controller, the VGG statistics loss."""
from __future__ import annotations

import math

import pytest
import torch

from xraygan.augment.ada import AdaController, AdaSpec, augment
from xraygan.errors import XrayganError
from xraygan.models.stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator
from xraygan.training import gan_losses as L


def tiny_d(size=16):
    torch.manual_seed(0)
    return StyleGAN2Discriminator(StyleGAN2Config(size=size, z_dim=8, w_dim=8, channel_base=64, channel_max=8))


def test_logistic_losses_move_the_right_way():
    good = L.d_logistic_loss(torch.full((4,), 3.0), torch.full((4,), -3.0))
    bad = L.d_logistic_loss(torch.full((4,), -3.0), torch.full((4,), 3.0))
    assert good < 0.1 < 6 < bad
    assert L.g_nonsaturating_loss(torch.full((4,), 3.0)) < L.g_nonsaturating_loss(torch.full((4,), -3.0))
    assert math.isclose(L.r1_gamma_heuristic(64, 32), 0.0002 * 64 * 64 / 32)


def test_r1_is_positive_and_scales_with_gamma():
    D = tiny_d()
    x = torch.randn(4, 1, 16, 16, requires_grad=True)
    logits = D(x)
    r1 = L.d_r1_loss(logits, x, gamma=1.0)
    r10 = L.d_r1_loss(logits, x, gamma=10.0, interval=1)
    assert r1 > 0
    assert torch.allclose(r10, 10 * r1, rtol=1e-5)
    assert torch.allclose(L.d_r1_loss(logits, x, gamma=1.0, interval=16), 16 * r1, rtol=1e-5)
    r1.backward()      # differentiable w.r.t. D's parameters
    assert D.from_rgb.weight.grad.abs().sum() > 0


def test_path_length_penalty_and_running_mean():
    torch.manual_seed(0)
    G = StyleGAN2Generator(StyleGAN2Config(size=16, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8))
    ws = G.make_ws(torch.randn(4, 8)).detach().requires_grad_(True)
    img = G.synthesis(ws, noise_mode="const")
    pen, mean = L.g_path_length_penalty(img, ws, torch.zeros(()), torch.Generator().manual_seed(0))
    assert pen > 0 and mean > 0
    pen.backward()
    assert G.synthesis.rgb4.conv.weight.grad.abs().sum() > 0


def test_wgan_gp_and_drift():
    D = tiny_d()
    real, fake = torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)
    gp = L.gradient_penalty(D, real, fake, torch.Generator().manual_seed(0))
    assert gp >= 0 and torch.isfinite(gp)
    # drift term: only the squared real scores
    r, f = torch.tensor([2.0, 2.0]), torch.tensor([1.0, 1.0])
    assert torch.isclose(L.d_wgan_loss(r, f, drift=0.0), torch.tensor(-1.0))
    assert torch.isclose(L.d_wgan_loss(r, f, drift=0.5), torch.tensor(-1.0 + 0.5 * 4))
    # a critic with unit gradient norm everywhere has zero penalty
    w = torch.randn(1, 1, 16, 16)
    unit = lambda x: (x * w / w.norm()).flatten(1).sum(1)  # noqa: E731
    assert L.gradient_penalty(unit, real, fake) < 1e-10


def test_feature_matching():
    a = torch.randn(8, 5)
    assert L.feature_matching_loss(a, a.clone()) == 0
    b = (a + 1).requires_grad_(True)
    loss = L.feature_matching_loss(a, b)
    assert torch.isclose(loss, torch.tensor(1.0))
    loss.backward()
    assert b.grad.abs().sum() > 0


def test_ada_p0_is_identity_and_p1_changes_every_image():
    x = torch.rand(6, 1, 16, 16) * 2 - 1
    assert torch.equal(augment(x, 0.0, torch.Generator().manual_seed(0)), x)
    y = augment(x, 1.0, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and ((y - x).abs().flatten(1).amax(1) > 1e-3).all()
    assert torch.equal(y, augment(x, 1.0, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError):
        augment(x, 1.5)


def test_ada_translation_is_whole_pixels_and_no_flip():
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 3, 4] = 1.0
    spec = AdaSpec(scale_std=0, aniso_std=0, max_rotate=0, brightness_std=0, contrast_std=0, cutout=0)
    for seed in range(10):
        y = augment(x, 1.0, torch.Generator().manual_seed(seed), spec)
        assert torch.isclose(y.max(), torch.tensor(1.0), atol=1e-5)    # an integer shift keeps the pixel sharp
    # a left-right asymmetric image keeps its asymmetry on average (no flips)
    img = torch.linspace(-1, 1, 16).expand(64, 1, 16, 16).clone()
    out = augment(img, 1.0, torch.Generator().manual_seed(1), AdaSpec(cutout=0))
    assert (out[..., 12:].mean() - out[..., :4].mean()) > 0.5


def test_ada_is_differentiable():
    x = torch.randn(4, 1, 16, 16, requires_grad=True)
    augment(x, 0.8, torch.Generator().manual_seed(0)).sum().backward()
    assert x.grad.abs().sum() > 0


def test_ada_controller_direction_and_state_round_trip():
    up = AdaController(target=0.6, interval=2, speed_kimg=0.1)
    for _ in range(4):
        up.update(torch.full((10,), 5.0))            # r_t = 1 > 0.6 -> overfitting -> p rises
    assert up.p == pytest.approx(2 * 20 / 100) and up.rt == 1.0
    down = AdaController(target=0.6, p=0.5, interval=2, speed_kimg=0.1)
    for _ in range(2):
        down.update(torch.tensor([1.0, -1.0, 1.0, -1.0]))   # r_t = 0 < 0.6 -> p falls
    assert down.p == pytest.approx(0.5 - 8 / 100)
    for _ in range(200):
        down.update(-torch.ones(4))
    assert down.p == 0.0
    up.update(torch.full((10,), 5.0))                 # half-way through an interval
    clone = AdaController()
    clone.load_state_dict(up.state_dict())
    assert clone.state_dict() == up.state_dict()
    a, b = up.update(torch.ones(3)), clone.update(torch.ones(3))
    assert a == b and a > 0.4
    loaded = torch.load(_saved(up.state_dict()), weights_only=True)
    assert loaded == up.state_dict()


def _saved(obj) -> "io.BytesIO":  # noqa: F821
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_perceptual_stats_loss(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    from xraygan.training.perceptual import VGGFeatureStats

    with pytest.raises(XrayganError, match="vgg-weights"):
        VGGFeatureStats(tmp_path / "missing.pt")
    torch.manual_seed(0)
    path = tmp_path / "vgg16.pt"
    stand_in = make_layers(cfgs["D"])        # torchvision vgg16().features, randomly initialised
    torch.save({f"features.{k}": v for k, v in stand_in.state_dict().items()}, path)
    vgg = VGGFeatureStats(path)
    real = torch.rand(3, 1, 32, 32) * 2 - 1
    assert vgg.loss(real, real.clone()) < 1e-10
    fake = (torch.rand(3, 1, 32, 32) * 2 - 1).requires_grad_(True)
    loss = vgg.loss(real, fake)
    assert loss > 0
    loss.backward()
    assert fake.grad.abs().sum() > 0 and all(p.grad is None for p in vgg.parameters())
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(XrayganError, match="cannot read"):
        VGGFeatureStats(tmp_path / "bad.pt")


def test_mode_seeking_term_by_hand_and_against_collapse():
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 2.0], [2.0, 0.0]])
    fake = torch.zeros(4, 1, 2, 2)
    fake[1] += 0.5  # the pair of label 0 differs by 0.5 per pixel; the pair of label 1 not at all
    labels = torch.tensor([0, 0, 1, 1])
    # pairs (0, 1) and (2, 3): image distance mean(0.5, 0) = 0.25, latent distance mean(1, 2) = 1.5
    assert L.mode_seeking_loss(fake, z, labels, eps=0.0).item() == pytest.approx(1.5 / 0.25)
    assert L.mode_seeking_loss(fake, z, torch.tensor([0, 1, 2, 3])) is None  # no two images share a label
    # pairs are formed within a label: shuffled labels give the same pairs
    perm = torch.tensor([2, 0, 3, 1])
    assert L.mode_seeking_loss(fake[perm], z[perm], labels[perm]).item() == pytest.approx(L.mode_seeking_loss(fake, z, labels).item())
    # one image per class, whatever the latent (collapse): the term explodes; varied images keep it small
    g = torch.Generator().manual_seed(0)
    zz, yy = torch.randn(16, 8, generator=g), torch.arange(16) % 2
    collapsed = torch.stack([torch.full((1, 8, 8), float(c)) for c in yy])
    varied = torch.rand(16, 1, 8, 8, generator=g) * 2 - 1
    assert L.mode_seeking_loss(collapsed, zz, yy).item() > 1e4 > 10 > L.mode_seeking_loss(varied, zz, yy).item()
    # its gradient pushes two images of one class apart
    a = torch.zeros(2, 1, 2, 2)
    a[1] += 0.1
    a.requires_grad_(True)
    L.mode_seeking_loss(a, torch.tensor([[0.0], [1.0]]), torch.tensor([0, 0])).backward()
    assert (a.grad[0] > 0).all() and (a.grad[1] < 0).all()
