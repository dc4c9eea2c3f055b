"""Typed family options (issue 17 item 2): declared type/range/default/help, parsing by type (not
YAML), unset = None for the optimizer, --help-options, and a run's config.yaml fed back as --config."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from xraygan.cli import main
from xraygan.errors import UsageError
from xraygan.training.config import TrainConfig, config_from_options, options_from_run_config
from xraygan.training.families import FAMILIES, check_model_options, get_family
from xraygan.training.family_option_sets import FAMILY_OPTIONS
from xraygan.training.family_options import UNCONDITIONAL_FAMILIES, describe_options, parse_options

TINY = ["--batch", "8", "--width", "8", "--latent-dim", "16", "--device", "cpu", "-q"]


@pytest.mark.parametrize("model", list(FAMILIES))
def test_every_option_declares_type_default_and_help(model):
    fam = get_family(model)
    assert (model in UNCONDITIONAL_FAMILIES) == (not fam.supports_conditional)
    assert FAMILY_OPTIONS[model] is fam.Options  # the torch-free table --help reads is the family's own
    for f in dataclasses.fields(fam.Options):
        assert f.metadata.get("type") is not None, f"{model}: option {f.name} declares no type"
        assert f.metadata.get("help"), f"{model}: option {f.name} has no help"
        assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        assert f"  {f.name} (" in describe_options(fam.Options, model)
    fam.Options()  # every default is valid


@pytest.mark.parametrize("key, value, expected", [
    ("batch_per_res", "32:4", {32: 4}),           # YAML would read base 60: 1924
    ("batch_per_res", "{64: 32}", {64: 32}),
    ("batch_per_res", "128:32, 256:16", {128: 32, 256: 16}),
    ("batch_per_res", {16: 2}, {16: 2}),
    ("batch_per_res", "", {}),                     # what run configs of format 1 hold
    ("vgg_weights", "012", "012"),                 # YAML would read 10
    ("phase_kimg", "30", 30.0),
    ("channel_base", "none", None),
    ("channel_base", "128", 128),
])
def test_pggan_values_parsed_by_declared_type(key, value, expected):
    o = parse_options(get_family("pggan").Options, {key: value}, "pggan")
    assert getattr(o, key) == expected and type(getattr(o, key)) is type(expected)


@pytest.mark.parametrize("key, value, expected", [
    ("ada", "off", False), ("ada", "on", True), ("ada", "true", True), ("ada", False, False),
    ("mixing", "0.5", 0.5), ("mapping_layers", "2", 2), ("r1_gamma", "0", 0.0),
])
def test_stylegan2_values(key, value, expected):
    assert getattr(parse_options(get_family("stylegan2").Options, {key: value}, "stylegan2"), key) == expected


@pytest.mark.parametrize("model, key, value, words", [
    ("stylegan2", "ada", "of", "true or false"),
    ("stylegan2", "mapping_layers", "2.5", "integer"),
    ("stylegan2", "mixing", "high", "number"),
    ("stylegan2", "mixing", "1.5", "in [0, 1]"),
    ("stylegan2", "pl_interval", "0", "at least 1"),
    ("pggan", "batch_per_res", 1924, "RES:VALUE"),
    ("pggan", "batch_per_res", "32:x", "positive integers"),
    ("pggan", "vgg_weights", 10, "quote"),
    ("dcgan", "d_norm", "ln", "bn, sn"),
    ("dcgan", "mbstd", "maybe", "true or false"),
])
def test_bad_values_name_the_option(model, key, value, words):
    with pytest.raises(UsageError, match=key) as e:
        parse_options(get_family(model).Options, {key: value}, model)
    assert words in str(e.value)


@pytest.mark.parametrize("argv, words", [
    (["--model", "stylegan2", "--model-option", "mixing=high"], "mixing=high: must be a number"),
    (["--model", "stylegan2", "--model-option", "ada=of"], "ada=of"),
    (["--model", "stylegan2", "--model-option", "mapping_layers=2.5"], "mapping_layers"),
    (["--model", "stylegan2", "--model-option", "nope=1"], "nope"),
    (["--model", "stylegan3"], "stylegan3"),
])
def test_cli_refuses_bad_options_with_status_2(argv, words, capsys, tmp_path):
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "r"), *argv, "--print-config"]) == 2
    assert words in capsys.readouterr().err


def test_help_options_lists_every_option(capsys):
    assert main(["train", "--model", "stylegan2", "--help-options"]) == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(get_family("stylegan2").Options):
        assert f"  {f.name} (" in out
    assert "mixing (float, 0..1; default 0.9)" in out


def test_optimizer_options_unset_is_none_and_the_family_chooses():
    cfg = config_from_options({"model": "stylegan2", "size": 16, "width": 8, "latent_dim": 16, "lr_g": 2e-4})
    assert cfg.lr_g == 2e-4 and cfg.lr_d is None and cfg.beta1 is None
    fam = get_family("stylegan2")(cfg, 0, torch.device("cpu"))
    # 2e-4 equals the DCGAN default and is still what the user asked for
    assert fam.opt_g.param_groups[0]["lr"] == 2e-4  # no path-length regularisation: no lazy correction
    assert fam.opt_d.param_groups[0]["lr"] == pytest.approx(0.0025 * 16 / 17)  # lazy R1 every 16 steps
    assert (cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.beta2) == (2e-4, 0.0025, 0.0, 0.99)  # resolved, written to config.yaml
    dc = config_from_options({"model": "dcgan", "size": 16, "width": 8, "latent_dim": 16})
    get_family("dcgan")(dc, 0, torch.device("cpu"))
    assert (dc.lr_g, dc.lr_d, dc.beta1, dc.beta2) == (2e-4, 2e-4, 0.5, 0.999)


def test_config_from_options_accepts_every_spelling():
    a = config_from_options({"model": "pggan", "split": "train,val", "model_option": [("phase_kimg", "3")],
                             "model_options": {"drift": 0.01}, "resume": None, "print_config": False, "steps": None})
    assert a.split == ("train", "val") and a.model_options == {"drift": 0.01, "phase_kimg": "3"} and a.steps == TrainConfig.steps
    assert check_model_options(a).phase_kimg == 3.0
    with pytest.raises(UsageError, match="bogus"):
        config_from_options({"bogus": 1})


def test_a_run_config_never_carries_force_over(tiny_prepared: Path, tmp_path: Path, capsys):
    a = tmp_path / "a"
    assert main(["train", str(tiny_prepared), "--out", str(a), *TINY, "--steps", "1", "--force"]) == 0
    assert yaml.safe_load((a / "config.yaml").read_text())["options"]["force"] is True
    assert main(["train", "--config", str(a / "config.yaml"), "-q"]) != 0  # would retrain into a: refused
    assert (a / "checkpoints" / "latest.pt").is_file()
    assert config_from_options(yaml.safe_load((a / "config.yaml").read_text())).force is False


def test_version_1_run_config_reads_dcgan_optimizer_defaults_as_unset():
    doc = {"format": "xraygan-run", "format_version": 1, "options": {"model": "stylegan2", "lr_g": 2e-4, "lr_d": 1e-3, "beta1": 0.5}}
    assert options_from_run_config(doc) == {"model": "stylegan2", "lr_g": None, "lr_d": 1e-3, "beta1": None}
    doc["format_version"] = 2
    assert options_from_run_config(doc)["lr_g"] == 2e-4


RETRAIN = {
    "dcgan": ["--conditional", "--model-option", "d_norm=sn", "--model-option", "fake_labels=uniform"],
    "stylegan2": ["--model", "stylegan2", "--conditional", "--model-option", "mapping_layers=2", "--model-option", "channel_max=16",
                  "--model-option", "r1_interval=2", "--ada", "on", "--lr-g", "2e-4"],
    "pggan": ["--model", "pggan", "--model-option", "channel_max=16", "--phase-kimg", "0.016", "--model-option", "batch_per_res=16:4"],
}


@pytest.mark.parametrize("model", list(RETRAIN))
def test_retraining_from_a_runs_config_yaml_reproduces_it_bitwise(model, tiny_prepared: Path, tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", str(tiny_prepared), "--out", str(a), *TINY, "--steps", "3", "--sample-every", "3", *RETRAIN[model]]) == 0
    doc = yaml.safe_load((a / "config.yaml").read_text())
    assert doc["format_version"] == 2
    if model == "stylegan2":  # the lr given, although it equals the DCGAN default; the rest the paper's
        assert (doc["options"]["lr_g"], doc["options"]["lr_d"]) == (2e-4, 0.0025)
    assert main(["train", "--config", str(a / "config.yaml"), "-q", "--print-config"]) == 0
    assert main(["train", "--config", str(a / "config.yaml"), "--out", str(b), "-q"]) == 0
    ca = torch.load(a / "checkpoints" / "latest.pt", weights_only=True)
    cb = torch.load(b / "checkpoints" / "latest.pt", weights_only=True)
    assert cb["step"] == 3
    for key in ("G", "D"):
        for name, t in ca["modules"][key].items():
            assert torch.equal(t, cb["modules"][key][name]), f"{key}.{name} differs"
    assert (a / "samples" / "step_00000003.png").read_bytes() == (b / "samples" / "step_00000003.png").read_bytes()
    opts_b = yaml.safe_load((b / "config.yaml").read_text())["options"]
    assert {k: v for k, v in opts_b.items() if k != "out"} == {k: v for k, v in doc["options"].items() if k != "out"}
