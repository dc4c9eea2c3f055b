"""Every shipped preset resolves to valid training options and trains a step (at a tiny size)."""
import pytest
import yaml

from xraygan.cli import main
from xraygan.presets import list_presets


def test_the_issue_presets_ship():
    assert {"dcgan-64", "cond-dcgan-64", "stylegan2-ada-256", "pggan-512"} <= set(list_presets())


@pytest.mark.parametrize("name", list_presets())
def test_preset_trains_one_step(name, tmp_path, capsys):
    from tests.helpers import make_prepared

    data = make_prepared(tmp_path / "d", size=32, n_per_class=8)
    args = ["train", str(data), "--out", str(tmp_path / "run"), "--preset", name, "--size", "32", "--steps", "1",
            "--batch", "4", "--width", "8", "--latent-dim", "16", "--device", "cpu", "-q"]
    assert main([*args, "--print-config"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    preset = yaml.safe_load(open(__import__("xraygan.presets", fromlist=["x"]).preset_path(name)))
    assert resolved["model"] == preset["model"] and resolved["size"] == 32  # command line beats preset
    assert main(args) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").is_file()
    assert preset["model"] in yaml.safe_dump(saved)


def test_the_unconditional_preset_stays_unconditional(tmp_path, capsys):
    """`xraygan train` is conditional by default; the dcgan-64 preset opts out, --conditional overrides it."""
    base = ["train", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--print-config", "-q"]
    for preset, extra, want in (("dcgan-64", [], False), ("cond-dcgan-64", [], True), ("dcgan-64", ["--conditional"], True)):
        assert main([*base, "--preset", preset, *extra]) == 0
        assert yaml.safe_load(capsys.readouterr().out)["conditional"] is want
