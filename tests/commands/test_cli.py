"""The CLI shell: help for every command, config files, presets, --print-config, errors."""
import subprocess
import sys

import pytest
import yaml

from xraygan import cli
from xraygan.cli import main


def test_every_command_has_help(capsys):
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "--config" in out and "--print-config" in out, name


def test_top_level_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_config_file_sets_positional_and_cli_overrides(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: dcgan-64\n")
    assert main(["presets", "--config", str(cfg), "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["name"] == "dcgan-64"
    assert main(["presets", "other", "--config", str(cfg), "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["name"] == "other"


def test_config_file_errors_name_the_file(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("no_such_option: 3\n")
    assert main(["presets", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "no_such_option" in err
    assert main(["presets", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_presets_listing_and_unknown_preset(capsys):
    assert main(["presets"]) == 0
    assert "dcgan-64" in capsys.readouterr().out
    assert main(["presets", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "xraygan", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("xraygan ")


def test_config_file_can_supply_required_positionals(tmp_path, capsys):
    cfg = tmp_path / "prep.yaml"
    cfg.write_text("source: data/labels.csv\nout: prepared\nsize: 32\n")
    assert main(["prepare", "--config", str(cfg), "--print-config"]) == 0
    got = yaml.safe_load(capsys.readouterr().out)
    assert (got["source"], got["out"], got["size"]) == ("data/labels.csv", "prepared", 32)
    assert main(["prepare", "a.csv", "b", "--config", str(cfg), "--size", "16", "--print-config"]) == 0
    got = yaml.safe_load(capsys.readouterr().out)
    assert (got["source"], got["out"], got["size"]) == ("a.csv", "b", 16)
