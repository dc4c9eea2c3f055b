"""Data-parallel training with torchrun on CPU (Gloo): two processes, gradients averaged, rank 0 writes."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

CHECK = textwrap.dedent('''
    import sys, torch, torch.distributed as dist
    from xraygan.training.config import TrainConfig
    from xraygan.training.loop import _setup
    cfg = TrainConfig(data=sys.argv[1], out=sys.argv[2], batch=4, width=8, latent_dim=16, device="cpu", conditional=True, steps=3)
    ctx = _setup(cfg, resume=False)
    fam = ctx.family
    for step in range(3):
        real, labels = ctx.data.batch(4, ctx.gens["data"])
        fam.train_step(real, labels, step, ctx.gens["noise"])
    total = torch.stack([p.detach().double().sum() for m in (fam.G, fam.D) for p in m.parameters()]).sum().reshape(1)
    sums = [torch.zeros(1, dtype=torch.float64) for _ in range(ctx.dist.world)]
    dist.all_gather(sums, total)
    assert ctx.dist.world == 2 and torch.equal(sums[0], sums[1]), sums
    print("RANKS_AGREE", ctx.dist.rank)
    dist.barrier()
    dist.destroy_process_group()
''')


def _torchrun(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--tee", "3", "--master_port", str(29500 + os.getpid() % 1000), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=600)


@pytest.mark.slow
def test_two_processes_keep_identical_weights_and_rank0_writes_the_run(tiny_prepared: Path, tmp_path: Path) -> None:
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    res = _torchrun([str(script), str(tiny_prepared), str(tmp_path / "r0")], tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[:3000]
    assert res.stdout.count("RANKS_AGREE") == 2
    run = tmp_path / "run"
    res = _torchrun(["-m", "xraygan", "train", str(tiny_prepared), "--out", str(run), "--conditional", "--steps", "3",
                     "--batch", "4", "--width", "8", "--latent-dim", "16", "--device", "cpu", "-q"], tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[:3000]
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 3 and ck["images_seen"] == 3 * 4 * 2  # global batch = batch x processes
