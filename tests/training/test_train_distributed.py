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


EQUIV = textwrap.dedent('''
    import os, sys, torch
    from xraygan.augment.ada import AdaController
    from xraygan.training.config import TrainConfig
    from xraygan.training.distributed import all_sum
    from xraygan.training.loop import _setup

    data, out, result = sys.argv[1:4]
    world, B = int(os.environ.get("WORLD_SIZE", "1")), 8  # global batch 8: 8 x 1 process or 4 x 2 processes
    res = {}

    def run(model, opts, steps, fixed_latents):
        cfg = TrainConfig(data=data, out=f"{out}/{model}", model=model, batch=B // world, width=4, latent_dim=8, device="cpu",
                          diffaug="none", steps=steps, ema=0, threads=1, model_options=opts, precision="fp32")
        ctx = _setup(cfg, resume=False)
        fam, r, trace = ctx.family, ctx.dist.rank, []
        g = torch.Generator().manual_seed(123)  # the global batch, the same in every process; each takes its slice
        for step in range(steps):
            b = fam.batch_size(step)
            real, z = torch.rand(b * world, 1, 16, 16, generator=g) * 2 - 1, torch.randn(b * world, fam.latent_dim, generator=g)
            part = slice(r * b, (r + 1) * b)
            if fixed_latents:
                fam.latent = lambda n, gen, z=z[part]: z
            logs = fam.train_step(real[part], torch.zeros(b, dtype=torch.long), step, ctx.gens["noise"])
            trace.append([logs.get(k) for k in ("resolution", "alpha", "ada_p", "ada_rt")] + [fam.extra_state().get("images")])
        state = {f"{k}.{n}": t.detach().clone() for k, m in fam.modules().items() for n, t in m.state_dict().items()}
        return state, trace

    res["dcgan"] = run("dcgan", {"d_norm": "sn", "mbstd": True}, 3, True)  # mbstd: of the global batch too
    res["pggan"] = run("pggan", {"phase_kimg": 0.016}, 7, False)
    res["stylegan2"] = run("stylegan2", {"ada_interval": 1, "ada_kimg": 0.05, "ada_p": 0.5, "r1_interval": 2}, 3, False)
    ada = AdaController(target=0.6, p=0.5, interval=1, speed_kimg=0.1)
    logits = torch.tensor([1.0] * 4 + [-1.0] * 4)  # the first half of the global batch says "real", the second "fake"
    rank = int(os.environ.get("RANK", "0"))
    ada.update(logits[rank * 8 // world:(rank + 1) * 8 // world], reduce=all_sum)
    res["ada"] = (ada.p, ada.rt)
    torch.save(res, f"{result}.{rank}.pt")
''')


def _close(a: dict, b: dict, tol: float) -> list[str]:
    return [k for k in a if a[k].dtype.is_floating_point and not torch.allclose(a[k], b[k], rtol=0, atol=tol)]


@pytest.mark.slow
def test_two_processes_equal_one_process_at_the_same_global_batch(tiny_prepared: Path, tmp_path: Path) -> None:
    """Image counts, PGGAN stage/alpha, ADA p and weights: identical on both ranks; DCGAN with a
    spectral-norm D, its minibatch-std feature and globally synchronised BatchNorm in G (both of
    the global batch) equals one process within 1e-5."""
    script = tmp_path / "equiv.py"
    script.write_text(EQUIV)
    res = _torchrun([str(script), str(tiny_prepared), str(tmp_path / "two"), str(tmp_path / "two")], tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    one = subprocess.run([sys.executable, str(script), str(tiny_prepared), str(tmp_path / "one"), str(tmp_path / "one")],
                         capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, cwd=tmp_path, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    r0, r1, ref = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("two.0", "two.1", "one.0"))
    for model in ("dcgan", "pggan", "stylegan2"):
        (w0, t0), (w1, t1) = r0[model], r1[model]
        assert t0 == t1, model  # image counts, stage, alpha, ADA p and r_t on both ranks
        assert set(w0) == set(w1) and not _close(w0, w1, 0.0), model  # weights and buffers bitwise equal across ranks
    # PGGAN's schedule follows global images: equal to the 1-process run and past the first fade-in
    assert r0["pggan"][1] == ref["pggan"][1]
    assert [t[4] for t in ref["pggan"][1]] == [8 * (i + 1) for i in range(7)]
    assert [tuple(t[:2]) for t in ref["pggan"][1]] == [(4, 1), (4, 1), (8, 0), (8, 0.5), (8, 1), (8, 1), (16, 0)]
    assert r0["stylegan2"][1][-1][2] != 0.5  # ADA p moved from 0.5, the same on both ranks
    # the sign statistic is summed over processes: r_t = 0 for the global batch (p falls) although rank 0 alone saw 1
    assert r0["ada"] == r1["ada"] == ref["ada"] and ref["ada"][1] == 0.0 and ref["ada"][0] < 0.5
    bad = _close(r0["dcgan"][0], ref["dcgan"][0], 1e-5)
    assert not bad, {k: float((r0["dcgan"][0][k] - ref["dcgan"][0][k]).abs().max()) for k in bad}
    assert any("running_var" in k for k in ref["dcgan"][0])  # G's BatchNorm statistics are compared too
