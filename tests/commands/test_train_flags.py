"""The StyleGAN2/PGGAN shortcut flags of `xraygan train` land in the run's model options."""
import yaml

from xraygan.cli import main

TINY = ["--batch", "4", "--width", "8", "--latent-dim", "16", "--device", "cpu", "--steps", "1", "-q"]


def _options(run):
    conf = yaml.safe_load((run / "config.yaml").read_text())
    return (conf.get("options", conf))["model_options"]


def test_stylegan2_flags_become_model_options(tmp_path):
    from tests.helpers import make_prepared

    data = make_prepared(tmp_path / "d", size=32, n_per_class=6)
    run = tmp_path / "sg"
    assert main(["train", str(data), "--out", str(run), "--model", "stylegan2", "--r1-gamma", "0.5", "--ada", "off",
                 "--ada-target", "0.7", "--model-option", "mixing=0.5", *TINY]) == 0
    opts = _options(run)
    assert opts["r1_gamma"] == 0.5 and opts["ada"] is False and opts["ada_target"] == 0.7 and opts["mixing"] == 0.5


def test_pggan_phase_kimg_and_wrong_family_flag(tmp_path, capsys):
    from tests.helpers import make_prepared

    data = make_prepared(tmp_path / "d", size=32, n_per_class=6)
    assert main(["train", str(data), "--out", str(tmp_path / "pg"), "--model", "pggan", "--phase-kimg", "0.5", *TINY]) == 0
    assert _options(tmp_path / "pg")["phase_kimg"] == 0.5
    assert main(["train", str(data), "--out", str(tmp_path / "dc"), "--model", "dcgan", "--r1-gamma", "1", *TINY]) == 2
    assert "r1_gamma" in capsys.readouterr().err
    assert not (tmp_path / "dc").exists()
