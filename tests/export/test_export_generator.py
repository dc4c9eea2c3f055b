"""`xraygan export RUN --format safetensors|onnx|pt2`: every family at 32 px gives the same images
through onnxruntime and torch.export as through PyTorch (within 1e-4), safetensors round-trips the
EMA weights bit for bit, and the output file follows the safety rules. Tiny runs (2 steps, width 4)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import make_prepared
from xraygan.cli import main
from xraygan.generate import image_seed, load_generator
from xraygan.training.config import TrainConfig
from xraygan.workflow import train

FAMILY_OPTIONS = {
    "dcgan": {},
    "dcgan-tutorial": {},
    "stylegan2": {"mapping_layers": 1, "channel_base": 64, "channel_max": 8, "ada": False},
    "pggan": {"channel_base": 64, "channel_max": 8, "phase_kimg": 0.004},  # mid-fade at 16 px after 2 steps
}
TOL = 1e-4


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export-runs")
    data = make_prepared(root / "prepared", size=32, n_per_class=8)
    out = {}
    for model, opts in FAMILY_OPTIONS.items():
        cfg = TrainConfig(data=str(data), out=str(root / model), model=model, steps=2, batch=4, latent_dim=8, width=4,
                          sample_every=1000, ckpt_every=1000, log_every=1, device="cpu", ema=0.5,
                          conditional=model != "dcgan-tutorial", model_options=opts)
        out[model] = train(cfg)
    return out


def reference(run: Path, n: int = 3, seed: int = 0):
    """(inputs, images): the latents and labels `generate` uses for its first n images, and its images."""
    s = load_generator(run, device="cpu")
    seeds = [image_seed(seed, i) for i in range(n)]
    z = torch.cat([s.family.latent(1, torch.Generator().manual_seed(sd)) for sd in seeds])
    labels = torch.tensor(s.labels_for(n), dtype=torch.long)
    inputs = (z, labels) if s.n_classes else (z,)
    return inputs, s.sample(n, seed=seed)


def export(run: Path, out: Path, fmt: str, *extra: str) -> Path:
    assert main(["export", str(run), "--format", fmt, "--out", str(out), "-q", *extra]) == 0
    assert out.is_file()
    return out


def check_pt2(program, run: Path) -> None:
    """``program`` saved with torch.export.save and loaded back gives PyTorch's images."""
    import io

    buf = io.BytesIO()
    torch.export.save(program, buf)
    buf.seek(0)
    loaded = torch.export.load(buf)
    inputs, expected = reference(run)  # batch 3: the export traced batch 2 (the batch is dynamic)
    got = loaded.module()(*inputs)
    assert got.shape == expected.shape == (3, 1, 32, 32)
    assert (got - expected).abs().max().item() <= TOL
    assert expected.std() > 0  # not a constant image


def check_onnx(onnx_model: bytes | Path, run: Path, conditional: bool = True) -> None:
    """onnxruntime runs ``onnx_model`` to PyTorch's images (batch 3 and 1)."""
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_model if isinstance(onnx_model, bytes) else str(onnx_model), opts,
                                providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names == (["z", "labels"] if conditional else ["z"])
    assert [o.name for o in sess.get_outputs()] == ["images"]
    for n in (3, 1):
        inputs, expected = reference(run, n=n, seed=7)
        got = sess.run(None, {k: v.numpy() for k, v in zip(names, inputs)})[0]
        assert got.shape == tuple(expected.shape) and got.dtype == np.float32
        assert np.abs(got - expected.numpy()).max() <= TOL


@pytest.mark.parametrize("model", [
    "dcgan", "pggan",  # dcgan-tutorial: through the command line below
    pytest.param("stylegan2", marks=pytest.mark.slow),  # the slowest ONNX export (~10 s on a busy CPU); pt2 below
])
def test_exported_program_and_onnxruntime_equal_pytorch(runs, model):
    """One torch.export program per family: saved as pt2 and translated to ONNX, both within 1e-4."""
    pytest.importorskip("onnxscript")
    from xraygan.export.generator import exported_program, onnx_bytes

    s = load_generator(runs[model], device="cpu")
    program = exported_program(s)
    check_pt2(program, runs[model])
    check_onnx(onnx_bytes(s, program=program), runs[model], conditional=model != "dcgan-tutorial")


def test_stylegan2_exported_program_equals_pytorch_with_constant_noise(runs):
    """StyleGAN2's graph uses the constant noise buffers (as generate does): equal images, run after run."""
    from xraygan.export.generator import example_inputs, exported_program, wrap

    s = load_generator(runs["stylegan2"], device="cpu")
    inputs = example_inputs(s, 2, seed=3)
    assert torch.equal(wrap(s)(*inputs), wrap(s)(*inputs))
    check_pt2(exported_program(s), runs["stylegan2"])


def test_command_writes_pt2_and_onnx_files(runs, tmp_path):
    """dcgan-tutorial (unconditional: input z only) through `xraygan export`."""
    run = runs["dcgan-tutorial"]
    program = torch.export.load(str(export(run, tmp_path / "g.pt2", "pt2")))
    check_pt2(program, run)
    check_onnx(export(run, tmp_path / "g.onnx", "onnx"), run, conditional=False)


@pytest.mark.parametrize("model", ["dcgan", "stylegan2"])
def test_safetensors_round_trips_bitwise(runs, tmp_path, model):
    st = pytest.importorskip("safetensors.torch")
    from safetensors import safe_open

    path = export(runs[model], tmp_path / "g.safetensors", "safetensors", "--checkpoint", "latest")
    loaded = st.load_file(str(path))
    ck = torch.load(runs[model] / "checkpoints" / "latest.pt", weights_only=True)
    ema = ck["ema"]
    assert set(loaded) == set(ema)
    for k, v in ema.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v), k
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    assert meta["format"] == "xraygan-generator" and meta["model"] == model
    assert json.loads(meta["classes"]) == ck["classes"] and int(meta["size"]) == 32 and int(meta["step"]) == 2
    # the metadata and the tensors rebuild a working generator
    from xraygan.training.families import get_family

    cfg = TrainConfig.from_dict(json.loads(meta["config"]))
    fam = get_family(meta["model"])(cfg, int(meta["n_classes"]), torch.device("cpu"))
    fam.G.load_state_dict(loaded)
    inputs, expected = reference(runs[model])
    assert torch.equal(fam.sample(fam.G.eval(), *inputs).clamp(-1, 1), expected)


def test_output_file_safety(runs, tmp_path, capsys):
    run = runs["dcgan-tutorial"]
    out = tmp_path / "g.safetensors"
    out.write_bytes(b"user data")
    # an existing file needs --force
    assert main(["export", str(run), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"user data"
    # format from the extension; --force replaces it atomically (no temporary file left behind)
    assert main(["export", str(run), "--out", str(out), "--force", "-q"]) == 0
    assert out.read_bytes()[8:9] == b"{" and sorted(p.name for p in tmp_path.iterdir()) == ["g.safetensors"]
    # never inside the run folder unless asked, never over a folder
    inside = run / "g.onnx"
    assert main(["export", str(run), "--out", str(inside)]) == 2
    assert "inside the run folder" in capsys.readouterr().err and not inside.exists()
    assert main(["export", str(run), "--out", str(run / "checkpoints" / "latest.pt"), "--format", "pt2", "--force",
                 "--inside-run"]) == 2
    assert main(["export", str(run), "--out", str(tmp_path), "--format", "pt2"]) == 2
    assert "is a folder" in capsys.readouterr().err
    inside_ok = run / "exported.safetensors"
    assert main(["export", str(run), "--out", str(inside_ok), "--inside-run", "-q"]) == 0 and inside_ok.is_file()
    inside_ok.unlink()


def test_command_line_errors(runs, tmp_path, capsys):
    run = str(runs["dcgan"])
    assert main(["export", run, "--out", str(tmp_path / "g.bin")]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["export", run, "--format", "tflite", "--out", str(tmp_path / "g.x")]) == 2
    assert main(["export", "--out", str(tmp_path / "g.pt2")]) == 2
    assert "RUN folder or --pretrained" in capsys.readouterr().err
    assert main(["export", run, "--pretrained", "pediatric-cxr-64", "--out", str(tmp_path / "g.pt2")]) == 2
    assert main(["export", "--pretrained", "pediatric-cxr-64", "--checkpoint", "best", "--out", str(tmp_path / "g.pt2")]) == 2
    assert main(["export", run, "--out", str(tmp_path / "g.pt2"), "--opset", "18"]) == 2
    assert main(["export", run, "--checkpoint", "best", "--out", str(tmp_path / "g.pt2")]) == 1
    assert "no best checkpoint" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "g.pt2")]) == 1
    assert not list(tmp_path.iterdir())
    assert main(["export", run, "--out", str(tmp_path / "g.onnx"), "--print-config"]) == 0
    assert "format: null" in capsys.readouterr().out


def test_missing_extra_is_a_clear_error(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript -> ImportError
    assert main(["export", str(runs["dcgan"]), "--out", str(tmp_path / "g.onnx")]) == 1
    err = capsys.readouterr().err
    assert "onnxscript" in err and "xraygan[export]" in err and not (tmp_path / "g.onnx").exists()


def test_pretrained_export(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    from xraygan.pretrained import load_pretrained

    out = tmp_path / "p.safetensors"
    assert main(["export", "--pretrained", "pediatric-cxr-64", "--out", str(out), "-q"]) == 0
    loaded = st.load_file(str(out))
    state = load_pretrained("pediatric-cxr-64", "cpu").generator.state_dict()
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
