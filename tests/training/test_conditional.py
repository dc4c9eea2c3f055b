"""Conditional collapse (issue 12): a collapsed class is flagged, and a tiny conditional model
gives class-dependent, diverse outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import make_prepared


class OneImagePerClass:
    """A 'generator' that returns the same image for every latent of a class."""

    def __init__(self, images: dict[int, np.ndarray], names: list[str]) -> None:
        self.images, self.label_names = images, names

    def sample(self, n, labels=None, seed=0):
        labels = labels if labels is not None else [i % len(self.label_names) for i in range(n)]
        x = np.stack([self.images[int(y)] for y in labels]).astype(np.float32) / 127.5 - 1.0
        return torch.from_numpy(x)[:, None]


class RealImages(OneImagePerClass):
    """A 'generator' that returns fresh real images of the class (as diverse as real data)."""

    def __init__(self, pools: dict[int, np.ndarray], names: list[str]) -> None:
        self.pools, self.label_names = pools, names

    def sample(self, n, labels=None, seed=0):
        rng = np.random.default_rng(seed)
        x = np.stack([self.pools[int(y)][rng.integers(len(self.pools[int(y)]))] for y in labels]).astype(np.float32) / 127.5 - 1.0
        return torch.from_numpy(x)[:, None]


def test_per_class_scores_flag_one_repeated_image():
    from xraygan.metrics.per_class import class_scores, collapse_warnings, min_recall_ratio

    rng = np.random.default_rng(0)
    real, floor, good = (rng.normal(size=(200, 16)) for _ in range(3))
    bad = np.repeat(real[:1] + 0.01, 200, axis=0)
    pix = rng.integers(0, 255, (200, 8, 8), dtype=np.uint8)
    scores = {"NORMAL": class_scores(real, bad, floor, np.repeat(pix[:1], 200, 0), pix),
              "PNEUMONIA": class_scores(real, good, floor, pix[::-1], pix)}
    warn = collapse_warnings(scores)
    assert len(warn) == 1 and "NORMAL" in warn[0] and "collapsed" in warn[0]
    assert scores["NORMAL"]["pixel_std"]["value"] < 1e-9 < scores["NORMAL"]["pixel_std"]["floor"]
    assert min_recall_ratio(scores) < 0.1


def _hook(tmp_path, n=2000):
    from xraygan.data.dataset import PreparedDataset
    from xraygan.metrics.evaluate import Images
    from xraygan.metrics.training_hook import EvalHook

    data = make_prepared(tmp_path / "data", size=16, n_per_class=60, per_patient=1)
    ds = PreparedDataset.open(data)
    idx = ds.indices(split="train")
    real = Images(np.asarray(ds.pixels()[idx]), ds.labels[idx], ds.classes)
    return real, EvalHook(real, every=1, n=n, seed=0, device="cpu", features="random")


def test_eval_hook_flags_a_generator_that_returns_one_image_per_class(tmp_path, caplog):
    real, hook = _hook(tmp_path)
    collapsed = OneImagePerClass({i: real.pixels[real.labels == i][0] for i in range(2)}, real.classes)
    ev = hook.evaluate(collapsed)
    assert len(ev["warnings"]) == 2 and all("collapsed" in w for w in ev["warnings"])
    rec = ev["record"]
    for c in real.classes:  # every metric beside its floor, per class
        for m in ("precision", "recall", "density", "coverage", "fd", "pixel_std"):
            assert f"pc_{m}_{c}" in rec and f"pc_{m}_{c}_floor" in rec
        assert rec[f"pc_recall_{c}"] < 0.5 * rec[f"pc_recall_{c}_floor"]
        assert rec[f"pc_pixel_std_{c}"] < 1e-9
    diverse = RealImages({i: real.pixels[real.labels == i] for i in range(2)}, real.classes)
    ev2 = hook.evaluate(diverse)
    assert ev2["warnings"] == []
    assert ev2["score"] < ev["score"]  # the selection criterion prefers the diverse generator


@pytest.mark.slow
def test_tiny_conditional_model_gives_class_dependent_diverse_outputs(tmp_path):
    from xraygan.data.dataset import PreparedDataset
    from xraygan.generate import load_generator
    from xraygan.workflow import train

    data = make_prepared(tmp_path / "data", size=16, n_per_class=120, per_patient=1,
                         split_fracs=(0.05, 0.05))
    ds = PreparedDataset.open(data)
    # an unbalanced training set, as on the real data: the minority class must not collapse
    run = train({"data": str(data), "out": str(tmp_path / "run"), "conditional": True, "steps": 300, "batch": 32,
                 "width": 16, "latent_dim": 32, "sample_every": 1000, "ckpt_every": 1000, "log_every": 50,
                 "device": "cpu", "seed": 0, "threads": 1})
    s = load_generator(run, "latest", device="cpu")
    means = []
    for ci, name in enumerate(ds.classes):
        x = (s.sample(64, labels=name, seed=1)[:, 0].numpy() + 1) * 127.5  # (64, 16, 16)
        real = np.asarray(ds.pixels()[ds.indices(split="train", label=name)], np.float64)
        fake_std, real_std = x.std(axis=0).mean(), real.std(axis=0).mean()
        assert fake_std >= 0.25 * real_std, (name, fake_std, real_std)
        means.append(x.mean(axis=0))
    # the planted class signal: the bright blob sits left for class 0 and right for class 1
    diff = np.abs(means[0] - means[1]).mean()
    assert diff > 5.0, diff
    left, right = means[0][:, :8].mean() - means[0][:, 8:].mean(), means[1][:, :8].mean() - means[1][:, 8:].mean()
    assert left > right


def test_dcgan_layouts_load_into_the_default_networks():
    """Checkpoints written before the collapse fixes (concat G, D without minibatch std) still load."""
    from xraygan.models.dcgan import Discriminator, Generator

    z, y = torch.randn(4, 8), torch.tensor([0, 1, 0, 1])
    for cond in ("concat", "cbn", "both"):
        old = Generator(16, 8, 8, 2, cond=cond).eval()
        new = Generator(16, 8, 8, 2).eval()
        new.load_state_dict(old.state_dict())
        assert new.cond == cond and torch.equal(new(z, y), old(z, y))
    x = torch.randn(4, 1, 16, 16)
    for mbstd in (False, True):
        old = Discriminator(16, 8, 2, mbstd=mbstd).eval()
        new = Discriminator(16, 8, 2, mbstd=not mbstd).eval()
        new.load_state_dict(old.state_dict())
        assert new.mbstd == mbstd and torch.equal(new(x, y), old(x, y))


def test_class_minibatch_std_sees_a_collapsed_class():
    from xraygan.models.dcgan import ClassMinibatchStd

    h = torch.randn(6, 3, 2, 2)
    h[:3] = h[0]  # class 0 repeats one sample
    out = ClassMinibatchStd()(h, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert out.shape == (6, 4, 2, 2)
    assert float(out[0, 3].max()) < 1e-6 < float(out[3, 3].min())


def test_conditional_dcgan_defaults_fight_collapse(tmp_path):
    from xraygan.workflow import train

    data = make_prepared(tmp_path / "data", size=16, n_per_class=20)
    run = train({"data": str(data), "out": str(tmp_path / "run"), "conditional": True, "steps": 1, "batch": 8, "width": 8,
                 "latent_dim": 8, "sample_every": 10, "ckpt_every": 10, "device": "cpu"})
    import yaml

    opts = yaml.safe_load((run / "config.yaml").read_text())["options"]["model_options"]
    assert opts["mbstd"] is True and opts["balance"] is True and opts["g_cond"] == "concat"
