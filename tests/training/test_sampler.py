"""xraygan.training.sampler on its own, over a tiny real (untrained) conditional DCGAN generator:
per-image seeds make images independent of n and of the batch, the same seed gives the same images
and another label other images, labels are resolved by name or index with clear errors, and
to_uint8 / save_grid write exactly the rounded pixels on a white grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xraygan.errors import XrayganError
from xraygan.training.config import TrainConfig
from xraygan.training.families import get_family
from xraygan.training.sampler import UNCONDITIONAL_FOLDER, Sampler, image_seed, save_grid, to_uint8

CLASSES = ["NORMAL", "PNEUMONIA"]


def _sampler(conditional=True, label=None) -> Sampler:
    torch.manual_seed(0)
    cfg = TrainConfig(model="dcgan", size=16, latent_dim=8, width=4, conditional=conditional, label=label, device="cpu")
    n_classes = 2 if conditional else 0
    fam = get_family("dcgan")(cfg, n_classes, "cpu")
    return Sampler(fam, fam.G, CLASSES if label is None else [label], n_classes, Path("tiny-run"), "in-memory", 0)


@pytest.fixture(scope="module")
def cond() -> Sampler:
    return _sampler()


def test_image_seed_is_a_stable_63_bit_seed_per_image():
    seeds = [image_seed(s, i) for s in (0, 1) for i in range(50)]
    assert all(0 <= v < 2**63 for v in seeds) and len(set(seeds)) == 100
    assert image_seed(7, 3) == image_seed(7, 3) and image_seed(7, 3) != image_seed(3, 7)


def test_same_seed_same_images_other_seed_or_label_other_images(cond):
    was = cond.generator.training
    x = cond.sample(6, seed=4)
    assert x.shape == (6, 1, 16, 16) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    assert cond.generator.training == was  # the generator goes back to its mode
    assert torch.equal(cond.sample(6, seed=4), x)
    assert torch.allclose(cond.sample(3, seed=4), x[:3], atol=1e-6)  # image i depends on (seed, i) only, not on n (up to float rounding)
    assert not torch.allclose(cond.sample(6, seed=5), x)
    normal, pneu = cond.sample(4, "NORMAL", seed=4), cond.sample(4, "PNEUMONIA", seed=4)
    assert not torch.allclose(normal, pneu)  # same latents, other class
    assert torch.equal(normal[[0, 2]], x[[0, 2]]) and torch.equal(pneu[[1, 3]], x[[1, 3]])  # default labels i % 2


def test_sample_is_the_generator_in_eval_mode_on_the_per_image_latents(cond):
    seeds, labels = [image_seed(9, i) for i in range(5)], [1, 0, 0, 1, 1]
    g = cond.generator
    g.eval()
    with torch.no_grad():
        z = torch.cat([torch.randn(1, 8, generator=torch.Generator().manual_seed(s)) for s in seeds])
        want = g(z, torch.tensor(labels)).clamp(-1, 1)
    g.train()
    assert torch.allclose(cond.sample(5, labels, seed=9), want, atol=1e-6)
    assert torch.allclose(cond.sample_seeds(seeds, labels, batch=2), cond.sample_seeds(seeds, labels, batch=64), atol=1e-6)
    assert cond.sample_seeds([], []).shape == (0, 1, 16, 16)


def test_labels_by_name_index_or_digit_and_clear_errors(cond):
    assert cond.label_names == CLASSES
    assert cond.labels_for(5) == [0, 1, 0, 1, 0]
    assert cond.labels_for(3, "PNEUMONIA") == cond.labels_for(3, 1) == cond.labels_for(3, "1") == [1, 1, 1]
    assert cond.labels_for(2, ["PNEUMONIA", 0]) == [1, 0]
    with pytest.raises(XrayganError, match=r"--label COVID: unknown label for this conditional run .*NORMAL, PNEUMONIA"):
        cond.labels_for(2, "COVID")
    with pytest.raises(XrayganError, match="--label 2"):
        cond.label_index(2)
    with pytest.raises(ValueError, match="3 labels for 2 images"):
        cond.labels_for(2, [0, 1, 0])
    one = _sampler(conditional=False, label="PNEUMONIA")
    assert one.label_names == ["PNEUMONIA"] and one.labels_for(2) == [0, 0]
    with pytest.raises(XrayganError, match="run trained on one label"):
        one.label_index("NORMAL")
    assert _sampler(conditional=False).label_names == [UNCONDITIONAL_FOLDER]


def test_to_uint8_and_save_grid(tmp_path):
    k = torch.arange(0, 256, 17, dtype=torch.float32)  # 16 grey levels
    x = (k / 127.5 - 1).reshape(1, 1, 4, 4).repeat(3, 1, 1, 1)
    x[1] = -x[1]
    u = to_uint8(x)
    assert u.dtype == np.uint8 and u.shape == (3, 4, 4)
    assert np.array_equal(u[0], k.numpy().astype(np.uint8).reshape(4, 4)) and np.array_equal(u[1], 255 - u[0])
    canvas = save_grid(x, tmp_path / "grid.png", ncol=2, pad=1)
    assert canvas.shape == (2 * 5 + 1, 2 * 5 + 1)
    assert np.array_equal(canvas[1:5, 1:5], u[0]) and np.array_equal(canvas[1:5, 6:10], u[1]) and np.array_equal(canvas[6:10, 1:5], u[2])
    assert (canvas[6:10, 6:10] == 255).all() and (canvas[0] == 255).all() and (canvas[:, 5] == 255).all()
    assert np.array_equal(np.asarray(Image.open(tmp_path / "grid.png")), canvas)
