"""`xraygan train` family options: `--help-options` shows every declaration (type, range, default,
help), and the shortcut flags (--r1-gamma, ...) are those declarations: same help, same parsing,
same errors and the same config as `--model-option KEY=VALUE`."""
from __future__ import annotations

import dataclasses
import re

import pytest

from xraygan.cli import main
from xraygan.commands import train_shortcuts as shortcuts
from xraygan.training.families import get_family
from xraygan.training.family_options import FAMILIES


def _words(text: str) -> str:
    return " ".join(text.split())  # argparse wraps lines


def _range(meta: dict) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    if meta.get("choices"):
        return "one of " + "|".join(meta["choices"])
    if lo is not None and hi is not None:
        return f"{lo:g}..{hi:g}"
    if lo is not None:
        return f"{'>' if meta.get('lo_open') else '>='} {lo:g}"
    return f"<= {hi:g}" if hi is not None else ""


@pytest.mark.parametrize("model", list(FAMILIES))
def test_help_options_lists_every_declaration(model, capsys):
    assert main(["train", "--model", model, "--help-options"]) == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(get_family(model).Options):
        block = re.search(rf"^  {f.name} \((.*)\)\n      (.*)$", out, re.M)
        assert block, f.name
        assert block.group(2) == f.metadata["help"] and _range(f.metadata) in block.group(1), (f.name, block.groups())
    flags = [shortcuts.flag(k) for k in shortcuts.KEYS if k in {f.name for f in dataclasses.fields(get_family(model).Options)}]
    assert out.rstrip().splitlines()[-1].startswith("shortcut flags:") and all(fl in out for fl in flags)


def test_every_shortcut_is_a_declared_option_and_its_help_is_the_declaration(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = _words(capsys.readouterr().out)
    for key in shortcuts.KEYS:
        decl = shortcuts.declarations(key)
        assert decl, f"{shortcuts.flag(key)}: no family declares {key}"
        for model, kind, help_text in decl:
            assert f"{shortcuts.flag(key)} VALUE" in text and model in text
            assert _words(help_text) in text and _words(kind[len(key) + 1:]) in text, key


@pytest.mark.parametrize("key, value", [("r1_gamma", "2.5"), ("ada", "off"), ("ada_target", "0.7"), ("pl_weight", "1"),
                                        ("phase_kimg", "3"), ("feature_matching", "0.5"), ("vgg_weights", "012")])
def test_a_shortcut_flag_and_model_option_give_the_same_config(tmp_path, key, value):
    from xraygan.cli import build_parser
    from xraygan.commands.train import _config

    model = next(m for m, _, _ in shortcuts.declarations(key) if m != "dcgan-tutorial")
    base = ["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--model", model]
    via_flag = _config(build_parser().parse_args([*base, shortcuts.flag(key), value]))
    via_option = _config(build_parser().parse_args([*base, "--model-option", f"{key}={value}"]))
    assert via_flag == via_option
    from xraygan.training.family_options import parse_options

    opts = parse_options(get_family(model).Options, via_flag.model_options, model)  # what the family trains with
    assert getattr(opts, key) != getattr(get_family(model).Options(), key)  # the value arrived, parsed by its declared type


@pytest.mark.parametrize("args, says", [(["--model", "stylegan2", "--ada-target", "2"], "--ada-target 2: must be in [0, 1]"),
                                        (["--model", "stylegan2", "--ada", "of"], "--ada of: expected true or false"),
                                        (["--model", "pggan", "--phase-kimg", "0"], "--phase-kimg 0"),
                                        (["--r1-gamma", "1"], "--r1-gamma: r1_gamma is not an option of --model dcgan (only of stylegan2")])
def test_bad_shortcut_values_are_usage_errors_naming_the_flag(tmp_path, capsys, args, says):
    assert main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *args, "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
