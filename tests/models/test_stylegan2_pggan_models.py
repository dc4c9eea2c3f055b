"""StyleGAN2 and PGGAN networks: shapes, ranges, gradients, conditioning, truncation, fade-in."""
from __future__ import annotations

import pytest
import torch

from xraygan.models.layers import MinibatchStdDev, downsample2x, upsample2x, binomial_kernel
from xraygan.models.pggan import PGGANConfig, PGGANDiscriminator, PGGANGenerator, real_at_stage
from xraygan.models.stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator

TINY = dict(z_dim=16, channel_base=128, channel_max=16)


def sg2(size: int, classes: int = 0):
    torch.manual_seed(0)
    cfg = StyleGAN2Config(size=size, num_classes=classes, w_dim=16, mapping_layers=2, **TINY)
    return StyleGAN2Generator(cfg), StyleGAN2Discriminator(cfg)


def pg(size: int, classes: int = 0):
    torch.manual_seed(0)
    cfg = PGGANConfig(size=size, num_classes=classes, **TINY)
    return PGGANGenerator(cfg), PGGANDiscriminator(cfg)


def test_resampling_keeps_constants_and_shapes():
    k = binomial_kernel()
    x = torch.full((2, 3, 8, 8), 0.7)
    up, down = upsample2x(x, k), downsample2x(x, k)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    # away from the zero-padded border a constant stays constant
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 0.7), atol=1e-6)
    assert torch.allclose(down[:, :, 1:-1, 1:-1], torch.full_like(down[:, :, 1:-1, 1:-1], 0.7), atol=1e-6)


def test_fast_resampling_equals_zero_insertion_and_filtering():
    from xraygan.models.layers import upfirdn2d

    k = binomial_kernel()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    ref_up = upfirdn2d(x, k * 4, up=2, pad=(2, 1))
    assert torch.allclose(upsample2x(x, k), ref_up, atol=1e-12)
    # downsampling = full-resolution filtering, then every other pixel
    full = upfirdn2d(x, k, pad=(1, 1))
    assert torch.allclose(downsample2x(x, k), full[:, :, ::2, ::2], atol=1e-12)


def test_minibatch_stddev_measures_spread():
    same = torch.ones(4, 2, 3, 3)
    assert torch.allclose(MinibatchStdDev()(same)[:, 2], torch.full((4, 3, 3), 1e-4), atol=1e-3)
    spread = torch.randn(6, 2, 3, 3) * 5
    out = MinibatchStdDev(4)(spread)          # 6 is not divisible by 4: groups of 3
    assert out.shape == (6, 3, 3, 3) and out[:, 2].mean() > 1


@pytest.mark.parametrize("family", ["stylegan2", "pggan"])
@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("classes", [0, 2])
def test_shapes_and_ranges(family, size, classes):
    G, D = sg2(size, classes) if family == "stylegan2" else pg(size, classes)
    z = torch.randn(4, 16)
    y = torch.tensor([0, 1, 0, 1]) if classes else None
    img = G(z, y)
    assert img.shape == (4, 1, size, size)
    assert torch.isfinite(img).all() and img.abs().max() < 10 and img.std() > 1e-4
    logits, feats = D(img, y, return_features=True)
    assert logits.shape == (4,) and feats.shape == (4, D.feature_dim) and torch.isfinite(logits).all()


@pytest.mark.parametrize("family", ["stylegan2", "pggan"])
@pytest.mark.parametrize("classes", [0, 2])
def test_gradient_reaches_every_parameter(family, classes):
    G, D = sg2(32, classes) if family == "stylegan2" else pg(32, classes)
    z = torch.randn(4, 16)
    y = torch.tensor([0, 1, 1, 0]) if classes else None
    # PGGAN: every stage with a half-faded block, so each toRGB/fromRGB is used at some point
    stages = [dict(stage=s, alpha=0.5) for s in range(4)] if family == "pggan" else [{}]
    for kw in stages:
        D(G(z, y, **kw), y, **kw).sum().backward()
    for net in (G, D):
        dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        # noise strengths start at 0, so their gradient is the noise-weighted activation: non-zero
        assert not dead, dead


def test_conditioning_changes_outputs():
    G, D = sg2(32, 2)
    z = torch.randn(3, 16)
    a, b = G(z, torch.zeros(3, dtype=torch.long), noise_mode="const"), G(z, torch.ones(3, dtype=torch.long), noise_mode="const")
    assert (a - b).abs().mean() > 1e-4
    x = torch.randn(3, 1, 32, 32)
    assert (D(x, torch.zeros(3, dtype=torch.long)) - D(x, torch.ones(3, dtype=torch.long))).abs().max() > 1e-5
    with pytest.raises(ValueError):
        G(z)


def test_truncation_zero_gives_the_mean_image_per_class():
    G, _ = sg2(32, 2)
    for _ in range(5):       # a few training-mode mapping passes to move w_avg away from 0
        G.make_ws(torch.randn(8, 16), torch.tensor([0, 1] * 4), update_w_avg=True)
    assert (G.mapping.w_avg[0] - G.mapping.w_avg[1]).abs().sum() > 0
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    img = G(torch.randn(6, 16) * 3, y, truncation=0.0, noise_mode="const")
    assert torch.allclose(img[0], img[1], atol=1e-5) and torch.allclose(img[0], img[2], atol=1e-5)
    assert torch.allclose(img[3], img[5], atol=1e-5)
    assert (img[0] - img[3]).abs().mean() > 1e-4
    ws = G.mapping.w_avg[y][:, None].repeat(1, G.cfg.num_ws, 1)
    assert torch.allclose(img, G.synthesis(ws, noise_mode="const"), atol=1e-5)
    # truncation 1 keeps variety
    img1 = G(torch.randn(6, 16), y, truncation=1.0, noise_mode="const")
    assert (img1[0] - img1[1]).abs().mean() > 1e-4


def test_style_mixing_is_seeded_and_mixes():
    G, _ = sg2(32)
    z = torch.randn(4, 16)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ws1 = G.make_ws(z, mixing_prob=1.0, generator=g1)
    ws2 = G.make_ws(z, mixing_prob=1.0, generator=g2)
    assert torch.equal(ws1, ws2)
    assert (ws1[:, 0] - ws1[:, -1]).abs().sum() > 0      # first and last layers use different w
    assert torch.equal(G.make_ws(z)[:, 0], G.make_ws(z)[:, -1])


def test_random_noise_from_generator_is_reproducible():
    G, _ = sg2(32)
    for layer in G.synthesis.modules():
        if hasattr(layer, "strength"):
            layer.strength.data.fill_(0.5)
    z = torch.randn(2, 16)
    a = G(z, generator=torch.Generator().manual_seed(1))
    b = G(z, generator=torch.Generator().manual_seed(1))
    c = G(z, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pggan_stage_shapes_and_alpha_is_continuous():
    G, D = pg(32)
    z = torch.randn(2, 16)
    for stage in range(4):
        assert G(z, stage=stage).shape[-1] == 4 * 2**stage
        assert D(torch.randn(2, 1, 4 * 2**stage, 4 * 2**stage), stage=stage).shape == (2,)
    # alpha -> 0 at stage s equals stage s-1 upsampled; small alpha steps give small output steps
    low = torch.nn.functional.interpolate(G(z, stage=2), scale_factor=2, mode="nearest")
    assert torch.allclose(G(z, stage=3, alpha=0.0), low, atol=1e-6)
    outs = [G(z, stage=3, alpha=a) for a in (0.5, 0.501, 0.502)]
    d1, d2 = (outs[1] - outs[0]).abs().max(), (outs[2] - outs[1]).abs().max()
    assert d1 < 1e-2 and torch.allclose(d1, d2, rtol=1e-2, atol=1e-6)
    x = torch.randn(2, 1, 32, 32)
    dl = [D(real_at_stage(x, 3, a), stage=3, alpha=a) for a in (0.3, 0.3001)]
    assert (dl[0] - dl[1]).abs().max() < 1e-2
    with pytest.raises(ValueError):
        D(torch.randn(2, 1, 16, 16), stage=3)


def test_real_at_stage_matches_fade():
    x = torch.randn(2, 1, 32, 32)
    assert real_at_stage(x, 3, 1.0).shape[-1] == 32 and torch.equal(real_at_stage(x, 3, 1.0), x)
    r = real_at_stage(x, 2, 1.0)
    assert r.shape[-1] == 16 and torch.allclose(r.mean(), x.mean(), atol=1e-6)
    faded = real_at_stage(x, 3, 0.0)
    assert torch.allclose(faded[:, :, ::2, ::2], r, atol=1e-6)


def test_one_channel_1x1_convolutions_equal_conv2d() -> None:
    """fromRGB / toRGB of one-channel images run as broadcast multiplies: the same numbers as conv2d."""
    import torch.nn.functional as F

    from xraygan.models.layers import conv1x1

    gen = torch.Generator().manual_seed(3)
    for out_ch, in_ch in ((1, 6), (6, 1), (3, 4)):
        x = torch.randn(2, in_ch, 8, 8, generator=gen)
        w, b = torch.randn(out_ch, in_ch, 1, 1, generator=gen), torch.randn(out_ch, generator=gen)
        assert torch.allclose(conv1x1(x, w, b), F.conv2d(x, w, b), atol=1e-5)
        assert torch.allclose(conv1x1(x, w), F.conv2d(x, w), atol=1e-5)
