"""Training speed of our DCGAN vs the PyTorch tutorial DCGAN (same run), and peak training memory.

Speed: img/s of the full training step (real batch from uint8 memory, D and G updates with
DiffAugment off, EMA update) at --size px and --batch, both models interleaved over --rounds rounds
in one process so machine load hits both alike; the ratio is the figure that means something.
Memory: peak resident set size (ru_maxrss, and VmHWM from /proc) of a fresh subprocess that trains a few steps at each
size in --mem-sizes, next to the RSS of a subprocess that only imports torch and builds nothing.

    OMP_NUM_THREADS=2 python benchmarks/train_speed.py --size 64 --batch 64
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def make(model: str, size: int, batch: int, conditional: bool):
    from xraygan.training.config import TrainConfig
    from xraygan.training.ema import make_ema
    from xraygan.training.families import get_family

    cfg = TrainConfig(model=model, size=size, batch=batch, diffaug="none", conditional=conditional, device="cpu")
    fam = get_family(model)(cfg, 2 if conditional else 0, torch.device("cpu"))
    return fam, make_ema(fam.G)


def run_steps(fam, ema, pixels: torch.Tensor, labels: torch.Tensor, steps: int, gen: torch.Generator) -> float:
    """Seconds for ``steps`` training steps (data sampling, family step, EMA update)."""
    from xraygan.training.ema import update_ema

    t = time.perf_counter()
    for s in range(steps):
        idx = torch.randint(len(pixels), (fam.cfg.batch,), generator=gen)
        real = pixels[idx].float() / 127.5 - 1
        fam.train_step(real, labels[idx], s, gen)
        update_ema(ema, fam.G, 0.999)
    return time.perf_counter() - t


def speed(args: argparse.Namespace) -> dict:
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (512, 1, args.size, args.size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 2, (512,), generator=gen)
    models = {"dcgan (ours, conditional)": make("dcgan", args.size, args.batch, True),
              "dcgan (ours, unconditional)": make("dcgan", args.size, args.batch, False),
              "dcgan-tutorial": make("dcgan-tutorial", args.size, args.batch, False)}
    times: dict[str, list[float]] = {k: [] for k in models}
    for fam, ema in models.values():
        run_steps(fam, ema, pixels, labels, 1, gen)  # warm-up
    for _ in range(args.rounds):
        for name, (fam, ema) in models.items():
            times[name].append(args.steps * args.batch / run_steps(fam, ema, pixels, labels, args.steps, gen))
    res = {k: statistics.median(v) for k, v in times.items()}
    ref = res["dcgan-tutorial"]
    for k, v in res.items():
        print(f"  {k:30s} {v:7.1f} img/s  (median of {args.rounds} rounds: {', '.join(f'{x:.1f}' for x in times[k])})  ratio to tutorial {v / ref:.2f}")
    return res


def child(args: argparse.Namespace) -> None:
    """Train a few steps (or only import torch) and print peak RSS in MiB as JSON."""
    if args.child_size > 0:
        fam, ema = make("dcgan", args.child_size, args.batch, True)
        gen = torch.Generator().manual_seed(0)
        pixels = torch.randint(0, 256, (256, 1, args.child_size, args.child_size), dtype=torch.uint8, generator=gen)
        run_steps(fam, ema, pixels, torch.randint(0, 2, (256,), generator=gen), 3, gen)
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "vm_hwm_mib": vm_hwm_mib()}))


def vm_hwm_mib() -> float | None:
    """Peak RSS of this process image from /proc (Linux); unlike ru_maxrss it is not inherited across exec."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def memory(args: argparse.Namespace) -> None:
    for size in [0, *args.mem_sizes]:
        cmd = [sys.executable, __file__, "--child-size", str(size), "--batch", str(args.batch)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rec = json.loads(out)
        what = f"training dcgan (conditional) at {size} px, batch {args.batch}" if size else "baseline: python + import torch"
        hwm = f"{rec['vm_hwm_mib']:7.0f}" if rec["vm_hwm_mib"] is not None else "    n/a"
        print(f"  {what:55s} peak RSS (ru_maxrss) {rec['peak_rss_mib']:7.0f} MiB, VmHWM {hwm} MiB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="steps per model per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--mem-sizes", type=int, nargs="*", default=[64, 128])
    p.add_argument("--child-size", type=int, default=-1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_size >= 0:
        return child(args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; machine shared with other jobs: compare ratios only")
    # memory first: Linux keeps a parent's ru_maxrss across fork+exec, so measure while this process is small
    print("peak memory (fresh subprocess each, started before this process allocates anything):")
    memory(args)
    print(f"training speed at {args.size} px, batch {args.batch}:")
    speed(args)


if __name__ == "__main__":
    main()
