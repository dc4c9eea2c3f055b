"""Training throughput (images/s) of StyleGAN2 and PGGAN beside the DCGAN, measured in one run.

Usage::

    python benchmarks/models_speed.py [--size 64] [--batch 32] [--threads 2] [--rounds 3] [--steps 3]

Each model takes full family training steps (``family.train_step``: D and G updates with their
regularisers and augmentation, as ``xraygan train`` runs them) on random real batches at the
final resolution (PGGAN past its growing schedule, alpha 1), at the default ``--width 64`` and
``--latent-dim 128``. The models are timed in interleaved rounds (dcgan, stylegan2, pggan,
dcgan, ...) so that load from other processes on a shared machine hits them alike; the figure is
the median over rounds, and each model's ratio to the DCGAN of the same run is what to compare
across machines.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

import torch

MODELS = ("dcgan", "stylegan2", "pggan")


def make_family(model: str, size: int, batch: int, conditional: bool, device: str):
    from xraygan.training.config import TrainConfig
    from xraygan.training.families import get_family

    cfg = TrainConfig(data="", out=tempfile.gettempdir(), model=model, size=size, batch=batch,
                      conditional=conditional, device=device, diffaug="none")
    fam = get_family(model)(cfg, 2 if conditional else 0, torch.device(device))
    if model == "pggan":
        fam.images = 10**9   # past the schedule: final resolution
    return fam


def time_steps(fam, size: int, batch: int, steps: int, gen: torch.Generator) -> float:
    """Images per second over ``steps`` training steps."""
    real = torch.rand(batch, 1, size, size, generator=gen).to(fam.device) * 2 - 1
    labels = torch.randint(2, (batch,), generator=gen).to(fam.device)
    if fam.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        fam.train_step(real, labels, i, gen)
    if fam.device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per model per round (after 1 warm-up step)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--conditional", action="store_true")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    fams = {m: make_family(m, a.size, a.batch, a.conditional, a.device) for m in a.models}
    for fam in fams.values():
        time_steps(fam, a.size, a.batch, 1, gen)   # warm-up
    rates: dict[str, list[float]] = {m: [] for m in a.models}
    for _ in range(a.rounds):
        for m, fam in fams.items():
            rates[m].append(time_steps(fam, a.size, a.batch, a.steps, gen))
    ref = statistics.median(rates[a.models[0]])
    print(f"# {a.size} px, batch {a.batch}, {a.threads} threads, device {a.device}, conditional={a.conditional}, "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(f"{'model':<10} {'params_G':>10} {'params_D':>10} {'img/s (median)':>15} {'ratio to ' + a.models[0]:>16}  per-round")
    for m, fam in fams.items():
        pg = sum(p.numel() for p in fam.G.parameters())
        pd = sum(p.numel() for p in fam.D.parameters())
        med = statistics.median(rates[m])
        print(f"{m:<10} {pg:>10,} {pd:>10,} {med:>15.2f} {med / ref:>16.3f}  {', '.join(f'{r:.2f}' for r in rates[m])}")


if __name__ == "__main__":
    main()
