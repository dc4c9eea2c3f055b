"""Training and sampling speed of every family, and the speed switches, as ratios measured in one run.

For dcgan, stylegan2 and pggan (at 64 px; pggan past its growing schedule) at about the same
parameter count (G+D; stylegan2's and pggan's ``--width`` chosen to come within 10% of the DCGAN's
at ``--width``), training img/s (full ``family.train_step``: D and G updates with their
regularisers and augmentation) and sampling img/s (``family.sample`` without gradients) for:

- ``fp32``: eager fp32, for-loop Adam: the reference of every ratio;
- ``bf16``: bfloat16 autocast (only where bf16 is fast: CUDA, or a CPU with avx512_bf16 / AMX;
  on an AVX2-only CPU a bf16 matmul ran 500x slower than fp32, so it is skipped there);
- ``channels_last``: weights and activations NHWC;
- ``compile``: ``torch.compile`` of G and D (compile time reported apart; double backward of R1 /
  the gradient penalty may not compile);
- ``foreach`` / ``fused``: Adam's multi-tensor and fused implementations;
- ``auto``: what ``xraygan train`` picks on this machine by default (``--precision auto``, the
  family's channels-last choice, fused Adam).

Also the achieved FLOP/s of each (FLOPs of one step counted with ``torch.utils.flop_counter`` on a
step without R1 / gradient penalty, so a lower bound) as a fraction of this machine's fp32 matmul
peak (2048x2048, measured in the same run, best of several), the CPU model and flags, and the
rounds interleaved so that load from other processes hits every variant alike: compare ratios.

    OMP_NUM_THREADS=2 python benchmarks/train_speed.py --threads 2 --width 16 --batch 16
    python benchmarks/train_speed.py --tutorial --memory   # the older DCGAN-vs-tutorial and memory figures
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

FAMILIES = ("dcgan", "stylegan2", "pggan")
CLOCK = {"fn": time.perf_counter}  # --clock cpu: this process's CPU seconds (robust to other jobs' load at --threads 1)
VARIANTS = ("fp32", "bf16", "channels_last", "compile", "foreach", "fused", "auto")


def cpu_line() -> str:
    """CPU model, the flags that decide bf16 and vector width, and PyTorch's CPU capability."""
    from xraygan.training.family_common import cpu_flags

    model = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in cpu_flags()]
    return f"CPU {model}; flags: {' '.join(flags) or 'none of avx2/avx512/amx'}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}"


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 5) -> float:
    """Best FLOP/s of an n x n matmul in ``dtype``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = CLOCK["fn"]()
        a @ b
        sync(device)
        best = min(best, CLOCK["fn"]() - t)
    return 2 * n**3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(model: str, size: int, batch: int, width: int, device: torch.device, precision: str = "fp32",
          channels_last: bool | None = False):
    """A family as ``xraygan train`` builds it (DiffAugment off), with the speed switches given."""
    from xraygan.training.config import TrainConfig
    from xraygan.training.families import get_family

    cfg = TrainConfig(model=model, size=size, batch=batch, width=width, diffaug="none", device=device.type,
                      precision=precision, channels_last=channels_last)
    fam = get_family(model)(cfg, 0, device)
    if model == "pggan":
        fam.images = 10**9  # past the schedule: the final resolution, alpha 1
    return fam


def n_params(fam) -> int:
    return sum(p.numel() for m in (fam.G, fam.D) for p in m.parameters())


def equal_width(model: str, target: int, size: int, device: torch.device) -> int:
    """The ``--width`` of ``model`` whose G+D parameter count is closest to ``target``."""
    best, gap = 2, float("inf")
    for w in range(2, 129):  # parameters grow with the width: stop once past the target
        n = n_params(build(model, size, 4, w, torch.device("cpu")))
        if abs(n - target) < gap:
            best, gap = w, abs(n - target)
        if n > target:
            break
    return best


def set_adam(fam, impl: str) -> None:
    """Rebuild the family's optimizers with Adam's for-loop, foreach or fused implementation (same settings)."""
    kw = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[impl]
    for name in ("opt_g", "opt_d"):
        old = getattr(fam, name)
        g = old.param_groups[0]
        setattr(fam, name, torch.optim.Adam(g["params"], lr=g["lr"], betas=g["betas"], eps=g["eps"], **kw))


def variant(model: str, name: str, size: int, batch: int, width: int, device: torch.device):
    """(family, note) for one variant; note says why a variant is skipped (family None)."""
    from xraygan.training.family_common import fast_bf16

    if name == "bf16" and not fast_bf16(device):
        return None, "skipped: bf16 is not fast here (no avx512_bf16/AMX on this CPU)"
    precision = {"bf16": "bf16", "auto": "auto"}.get(name, "fp32")
    fam = build(model, size, batch, width, device, precision, channels_last=None if name == "auto" else name == "channels_last")
    if name != "auto":
        set_adam(fam, name if name in ("foreach", "fused") else "loop")
    if name == "compile":
        for m in (fam.G, fam.D, *fam.G.children()):
            m.compile()
    return fam, ""


def batch_of(fam, batch: int, size: int, gen: torch.Generator):
    real = (torch.rand(batch, 1, size, size, generator=gen) * 2 - 1).to(fam.device)
    if fam.speed["channels_last"]:
        real = real.contiguous(memory_format=torch.channels_last)
    return real, torch.zeros(batch, dtype=torch.long, device=fam.device)


def train_rate(fam, batch: int, size: int, steps: int, gen: torch.Generator, step0: int) -> float:
    """Training images per second over ``steps`` steps (step numbers from ``step0``: lazy regularisers as in a run)."""
    real, labels = batch_of(fam, batch, size, gen)
    sync(fam.device)
    t = CLOCK["fn"]()
    for i in range(steps):
        fam.train_step(real, labels, step0 + i, gen)
    sync(fam.device)
    return batch * steps / (CLOCK["fn"]() - t)


def sample_rate(fam, n: int, gen: torch.Generator) -> float:
    """Sampling images per second (eval mode, no gradients, the family's autocast)."""
    z = fam.latent(n, gen)
    fam.G.eval()
    with torch.no_grad(), fam.autocast():
        sync(fam.device)
        t = CLOCK["fn"]()
        fam.sample(fam.G, z, None)
        sync(fam.device)
        dt = CLOCK["fn"]() - t
    fam.G.train()
    return n / dt


def step_flops(model: str, size: int, batch: int, width: int, device: torch.device) -> tuple[float, float]:
    """(training FLOPs per image of a step without R1 / gradient penalty, sampling FLOPs per image)."""
    from torch.utils.flop_counter import FlopCounterMode

    fam = build(model, size, batch, width, device)
    if model == "pggan":
        fam.options.gp_weight = 0.0  # the counter cannot follow a double backward
    gen = torch.Generator().manual_seed(1)
    real, labels = batch_of(fam, batch, size, gen)
    with FlopCounterMode(display=False) as fc:
        fam.train_step(real, labels, 1, gen)  # step 1: no lazy R1 / path length
    train = fc.get_total_flops() / batch
    z = fam.latent(batch, gen)
    fam.G.requires_grad_(False)  # FlopCounterMode's module tracker wants a graph for inputs that require grad
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        fam.sample(fam.G, z, None)
    return train, fc.get_total_flops() / batch



# --- the older figures: our DCGAN vs the PyTorch tutorial's, and peak memory ----------------------
def make(model: str, size: int, batch: int, conditional: bool):
    from xraygan.training.config import TrainConfig
    from xraygan.training.ema import make_ema
    from xraygan.training.families import get_family

    cfg = TrainConfig(model=model, size=size, batch=batch, diffaug="none", conditional=conditional, device="cpu", precision="fp32")
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


def families(args: argparse.Namespace, device: torch.device) -> None:
    """The per-family table: img/s of each variant as a ratio to fp32 eager, and % of the matmul peak."""
    from xraygan.training.family_common import fast_bf16

    peak32 = matmul_peak(torch.float32, device)
    peak16 = matmul_peak(torch.bfloat16, device) if fast_bf16(device) else None
    ref_params = n_params(build("dcgan", args.size, 4, args.width, torch.device("cpu")))
    widths = {m: args.width if m == "dcgan" else equal_width(m, ref_params, args.size, device) for m in args.families}
    gen = torch.Generator().manual_seed(0)
    fams, notes, compile_s = {}, {}, {}
    for m in args.families:
        for v in args.variants:
            fam, note = variant(m, v, args.size, args.batch, widths[m], device)
            if fam is None:
                notes[m, v] = note
                continue
            t = time.perf_counter()
            try:
                train_rate(fam, args.batch, args.size, 2, gen, 15)  # warm-up: a step with lazy R1 (step 16) and one without
                sample_rate(fam, args.batch, gen)
            except Exception as e:  # noqa: BLE001 - a variant that cannot run here is reported, not fatal
                notes[m, v] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:90]}"
                continue
            compile_s[m, v] = time.perf_counter() - t
            fams[m, v] = fam
    train: dict = {k: [] for k in fams}
    sample: dict = {k: [] for k in fams}
    for r in range(args.rounds):
        for k, fam in fams.items():
            train[k].append(train_rate(fam, args.batch, args.size, args.steps, gen, 17 + r * args.steps))
            sample[k].append(sample_rate(fam, args.sample_batch, gen))
    peak32 = max(peak32, matmul_peak(torch.float32, device))
    print(f"fp32 matmul peak (2048x2048, best of 10): {peak32 / 1e9:.1f} GFLOP/s" +
          (f"; bf16 {peak16 / 1e9:.1f} GFLOP/s ({peak16 / peak32:.2f}x)" if peak16 else "; bf16 not measured (not fast here)"))
    dc = statistics.median(train.get(("dcgan", "fp32"), [float("nan")]))
    for m in args.families:
        fl_t, fl_s = step_flops(m, args.size, args.batch, widths[m], device)
        fam0 = build(m, args.size, 4, widths[m], torch.device("cpu"))
        print(f"\n{m} --width {widths[m]}: G+D {n_params(fam0):,} parameters ({n_params(fam0) / ref_params:.2f}x dcgan's); "
              f"{fl_t / 1e9:.3f} GFLOP per trained image (without R1/GP), {fl_s / 1e9:.4f} GFLOP per sampled image")
        ref_t = statistics.median(train[m, "fp32"]) if (m, "fp32") in train else float("nan")
        ref_s = statistics.median(sample[m, "fp32"]) if (m, "fp32") in sample else float("nan")
        print(f"  {'variant':14s} {'train img/s':>11s} {'ratio':>6s} {'% fp32 peak':>11s} {'sample img/s':>12s} {'ratio':>6s} {'% peak':>7s}  warm-up s")
        for v in args.variants:
            if (m, v) not in fams:
                print(f"  {v:14s} {notes[m, v]}")
                continue
            t, s = statistics.median(train[m, v]), statistics.median(sample[m, v])
            print(f"  {v:14s} {t:11.1f} {t / ref_t:6.2f} {100 * t * fl_t / peak32:10.1f}% {s:12.1f} {s / ref_s:6.2f} "
                  f"{100 * s * fl_s / peak32:6.1f}%  {compile_s[m, v]:6.1f}" + (f"  (auto = {fams[m, v].speed['precision']}, channels_last {fams[m, v].speed['channels_last']})" if v == "auto" else ""))
        if m != "dcgan" and dc == dc:
            best = max(statistics.median(train[m, v]) for v in args.variants if (m, v) in train)
            print(f"  {m} / dcgan training img/s at ~equal parameters: fp32 {ref_t / dc:.3f}, best variant {best / dc:.3f} "
                  f"(FLOPs per image {fl_t / step_flops('dcgan', args.size, args.batch, args.width, device)[0]:.1f}x dcgan's)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--width", type=int, default=16, help="dcgan --width; the other families get the width of equal parameters")
    p.add_argument("--steps", type=int, default=2, help="timed steps per variant per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: PyTorch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="time steps by the wall clock, or by this process's CPU seconds (use with --threads 1 on a loaded machine)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--tutorial", action="store_true", help="also: our DCGAN vs the PyTorch tutorial's (older figure)")
    p.add_argument("--memory", action="store_true", help="also: peak training memory per size in --mem-sizes")
    p.add_argument("--mem-sizes", type=int, nargs="*", default=[64, 128])
    p.add_argument("--child-size", type=int, default=-1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_size >= 0:
        return child(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        CLOCK["fn"] = time.process_time
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; {cpu_line()}")
    if device.type == "cuda":
        print(f"GPU {torch.cuda.get_device_name(device)}")
    print("machine may be shared with other jobs: compare ratios within this run only")
    if args.memory:  # first: Linux keeps a parent's ru_maxrss across fork+exec, so measure while this process is small
        print("peak memory (fresh subprocess each, started before this process allocates anything):")
        memory(args)
    if args.tutorial:
        print(f"training speed of our DCGAN vs the tutorial's at {args.size} px, batch {args.batch}:")
        speed(args)
    print(f"\nper family at {args.size} px, batch {args.batch} (sampling batch {args.sample_batch}), "
          f"median of {args.rounds} interleaved rounds of {args.steps} steps, {args.clock} clock:")
    families(args, device)


if __name__ == "__main__":
    main()
