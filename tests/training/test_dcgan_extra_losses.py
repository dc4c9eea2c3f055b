"""The extra generator losses (issue 6: all models) on the DCGAN families: feature matching on D's
penultimate features and VGG16 batch statistics, through ``xraygan train``'s flags."""
from __future__ import annotations

import json

import pytest
import torch

from xraygan.cli import main
from xraygan.errors import XrayganError
from xraygan.models.dcgan import Discriminator, TutorialDiscriminator
from xraygan.training.config import TrainConfig
from xraygan.training.families import get_family


def _vgg_file(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    path = tmp_path / "vgg16.pt"
    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}, path)
    return path


@pytest.mark.parametrize("cls", [Discriminator, TutorialDiscriminator])
def test_features_are_what_the_logit_is_computed_from(cls):
    torch.manual_seed(0)
    D = cls(size=16, width=8).eval()
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    logits, feat = D(x, return_features=True)
    assert logits.shape == (3,) and feat.ndim == 2 and feat.shape[0] == 3
    assert torch.equal(logits, D(x))
    feat.sum().backward()  # the features depend on the input through D's layers
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())


@pytest.mark.parametrize("model", ["dcgan", "dcgan-tutorial"])
def test_flags_add_logged_losses_that_change_the_generator_update(tiny_prepared, tmp_path, model):
    vgg = _vgg_file(tmp_path)
    common = [str(tiny_prepared), "--model", model, "--size", "16", "--width", "8", "--batch", "8", "--steps", "2",
              "--sample-every", "1000", "--ckpt-every", "1000", "--log-every", "1", "--threads", "1", "--seed", "3"]
    assert main(["train", *common, "--out", str(tmp_path / "plain")]) == 0
    assert main(["train", *common, "--out", str(tmp_path / "extra"), "--feature-matching", "10",
                 "--perceptual", "1", "--vgg-weights", str(vgg)]) == 0
    last = [json.loads(line) for line in (tmp_path / "extra" / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["loss_fm"] > 0 and last["loss_perceptual"] > 0
    plain = torch.load(tmp_path / "plain" / "checkpoints" / "latest.pt", weights_only=True)["modules"]["G"]
    extra = torch.load(tmp_path / "extra" / "checkpoints" / "latest.pt", weights_only=True)["modules"]["G"]
    assert any(not torch.equal(plain[k], extra[k]) for k in plain if plain[k].is_floating_point())
    vgg.unlink()  # generating needs no VGG16: only training reads it
    assert main(["generate", str(tmp_path / "extra"), "--n", "2", "--out", str(tmp_path / "gen"), "--device", "cpu"]) == 0


def test_perceptual_without_weights_and_a_bad_d_norm_are_clear_errors(tiny_prepared, tmp_path):
    cfg = TrainConfig(data=str(tiny_prepared), out=str(tmp_path / "r"), model="dcgan", size=16, width=8,
                      model_options={"perceptual": 1.0})
    with pytest.raises(XrayganError, match="vgg_weights"):
        get_family("dcgan")(cfg, 0, torch.device("cpu"))
    cfg.model_options = {"d_norm": "foo"}
    with pytest.raises(XrayganError, match="d_norm"):
        get_family("dcgan")(cfg, 0, torch.device("cpu"))
