"""xraygan.run.Run: a run folder or a pretrained name as one object (config, metrics, checkpoints, sampling)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import make_prepared
from xraygan.cli import main
from xraygan.errors import XrayganError
from xraygan.generate import load_generator
from xraygan.run import Run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    prep = make_prepared(root / "prepared", size=16, n_per_class=16)
    out = root / "cond"
    assert main(["train", str(prep), "--out", str(out), "--steps", "4", "--ckpt-every", "2", "--batch", "8", "--width", "8",
                 "--latent-dim", "16", "--device", "cpu", "--conditional", "-q"]) == 0
    return out


def test_a_run_folder_reads_config_metrics_and_checkpoints(run_dir: Path) -> None:
    run = Run.open(run_dir)
    assert not run.is_pretrained
    assert run.config["format"] == "xraygan-run" and run.config["model"] == "dcgan"
    assert run.options.conditional and run.options.steps == 4
    assert run.metrics and run.metrics[-1]["step"] == 4
    names = [p.name for p in run.checkpoints()]
    assert names == ["step_00000002.pt", "step_00000004.pt", "latest.pt"]
    assert run.checkpoint("latest") == run_dir / "checkpoints" / "latest.pt"
    assert run.checkpoint("step_00000002.pt").name == "step_00000002.pt"


def test_sampling_is_deterministic_and_matches_load_generator(run_dir: Path) -> None:
    run = Run(run_dir)
    a = run.sample(6, seed=3, device="cpu")
    b = run.sample(6, seed=3, device="cpu")
    assert a.shape == (6, 1, 16, 16) and torch.equal(a, b)
    assert torch.equal(a, load_generator(run_dir, device="cpu").sample(6, seed=3))
    assert not torch.equal(a, run.sample(6, seed=4, device="cpu"))
    one = run.sample(4, labels="PNEUMONIA", seed=0, device="cpu")
    assert torch.equal(one, run.sampler(device="cpu").sample(4, labels=1, seed=0))
    old = run.sample(2, seed=3, checkpoint="step_00000002.pt", device="cpu")
    assert old.shape == (2, 1, 16, 16)


def test_a_pretrained_name_opens_as_a_run() -> None:
    run = Run.open("pediatric-cxr-64")
    assert run.is_pretrained and str(run.root) == "pretrained:pediatric-cxr-64"
    assert run.metrics == [] and run.checkpoints() == [run.pretrained_path]
    assert run.options.size == 64 and run.config["classes"]
    s = run.sampler(device="cpu")
    assert str(s.run) == "pretrained:pediatric-cxr-64" and s.size == 64
    assert torch.equal(run.sample(2, seed=1, device="cpu"), s.sample(2, seed=1))


def test_neither_a_run_nor_a_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(XrayganError, match="not an xraygan run"):
        Run.open(tmp_path).config
    with pytest.raises(XrayganError, match="not an xraygan run"):
        Run.open(tmp_path / "missing").sampler()
    with pytest.raises(XrayganError, match="no such pretrained model"):
        Run.pretrained("no-such-model")
