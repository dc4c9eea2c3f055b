"""An experiment's protocol.json is read on resume through the one format-version rule
(docs/formats.md): format 2 (today's, the committed fixture) and format 1 (written without a
format_version, before --repeats) resume; a newer format, or a file that is not a protocol, is a
one-line error naming the file, with what to do (upgrade xraygan, or run into another --out), and
nothing in the folder is touched."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import tiny_experiment
from xraygan.cli import main
from xraygan.errors import XrayganError
from xraygan.experiments.protocol import FORMAT, PROTOCOL_FORMAT_VERSION, open_out, read_protocol
from xraygan.utils.formats import FormatVersionError
from xraygan.utils.fs import write_marker

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "formats"


def _folder(tmp_path: Path, **protocol) -> tuple:
    """An experiment folder killed right after protocol.json was written (``protocol``: its fields
    beside today's, ``None`` drops one), and the config that resumes it."""
    cfg = tiny_experiment(FIX / "prepared-v1", tmp_path / "exp")
    out = Path(cfg.out)
    out.mkdir()
    write_marker(out, "experiment")
    doc = {"format": FORMAT, "format_version": PROTOCOL_FORMAT_VERSION, "unit_fingerprint": cfg.unit_fingerprint(),
           "config": cfg.to_dict()}
    for k, v in protocol.items():
        doc.pop(k) if v is None else doc.update({k: v})
    (out / "protocol.json").write_text(json.dumps(doc))
    return cfg, out / "protocol.json"


def test_the_committed_protocol_is_read():
    doc = read_protocol(FIX / "experiment-v3" / "protocol.json")
    assert doc["format"] == FORMAT and doc["format_version"] == PROTOCOL_FORMAT_VERSION == 2
    assert doc["config"]["prepared"] == "tests/fixtures/formats/prepared-v1"


@pytest.mark.parametrize("version", [None, 1, 2])
def test_formats_1_and_2_resume_and_are_rewritten_as_today(tmp_path, version):
    cfg, proto = _folder(tmp_path, format_version=version)
    assert open_out(cfg) == proto.parent
    doc = json.loads(proto.read_text())
    assert doc["format_version"] == PROTOCOL_FORMAT_VERSION and doc["unit_fingerprint"] == cfg.unit_fingerprint()
    assert (proto.parent / "units").is_dir()


@pytest.mark.parametrize("changes, cls, words", [
    (dict(format_version=3), FormatVersionError, ("newer", "upgrade xraygan", "another --out")),
    (dict(format_version=0), FormatVersionError, ("older", "another --out")),
    (dict(format_version="2"), XrayganError, ("damaged", "another --out")),
    (dict(format="xraygan-run"), XrayganError, ("not an xraygan experiment protocol", "another --out")),
])
def test_other_formats_are_refused_and_the_folder_is_left_alone(tmp_path, changes, cls, words):
    cfg, proto = _folder(tmp_path, **changes)
    before = proto.read_text()
    with pytest.raises(cls) as e:
        open_out(cfg)
    msg = str(e.value)
    assert "\n" not in msg and str(proto) in msg and all(w in msg for w in words), msg
    assert proto.read_text() == before and not (proto.parent / "units").exists()


def test_a_damaged_protocol_is_one_line_naming_it(tmp_path):
    cfg, proto = _folder(tmp_path)
    proto.write_text('{"format": "xraygan-exp')
    with pytest.raises(XrayganError) as e:
        read_protocol(proto)
    assert "\n" not in str(e.value) and str(proto) in str(e.value) and "unreadable" in str(e.value)


def test_the_command_refuses_a_newer_protocol_with_exit_1(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg, proto = _folder(tmp_path, format_version=PROTOCOL_FORMAT_VERSION + 1)
    rc = main(["experiment", str(FIX / "prepared-v1"), "--gan-config", "noise", "--out", cfg.out, "--arms", "real",
               "--folds", "2", "--seeds", "1", "--input-size", "16", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and str(proto) in err and "upgrade xraygan" in err, err
    assert not (proto.parent / "units").exists()


def test_fold_gans_of_other_gan_defaults_are_not_resumed(tmp_path, monkeypatch):
    """An experiment whose GAN config leaves options to xraygan's defaults (mode seeking, DiffAugment)
    is refused on resume by an xraygan whose defaults resolve differently: its finished fold GANs
    would be mixed with new ones in one verdict. A control (oracle) trains no GAN and is not affected."""
    import xraygan.training.config as tconfig

    gan = tmp_path / "gan.yaml"
    gan.write_text("model: dcgan\nsize: 16\nsteps: 2\n")
    cfg = tiny_experiment(FIX / "prepared-v1", tmp_path / "exp", gan_config=str(gan))
    oracle = tiny_experiment(FIX / "prepared-v1", tmp_path / "o", gan_config="oracle")
    before = (cfg.unit_fingerprint(), oracle.unit_fingerprint())
    Path(cfg.out).mkdir()
    write_marker(Path(cfg.out), "experiment")
    (Path(cfg.out) / "protocol.json").write_text(json.dumps({"format": FORMAT, "format_version": PROTOCOL_FORMAT_VERSION,
                                                             "unit_fingerprint": before[0], "config": cfg.to_dict()}))
    assert open_out(cfg) == Path(cfg.out)  # today's defaults: resumes
    monkeypatch.setattr(tconfig, "GAN_DEFAULTS_RULE", "some-later-defaults")
    assert cfg.unit_fingerprint() != before[0] and oracle.unit_fingerprint() == before[1]
    with pytest.raises(XrayganError, match="different options"):
        open_out(cfg)
