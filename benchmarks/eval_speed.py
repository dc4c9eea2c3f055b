"""Wall time of `xraygan evaluate` for 2,000 real vs 2,000 synthetic images, cold and warm cache,
with the time of every stage, as ratios to references measured in the same run.

    xraygan prepare ../shared/data/chest-xray-pneumonia/labels.csv /tmp/cxr64 --size 64
    nice -n 5 python benchmarks/eval_speed.py /tmp/cxr64 [--n 2000] [--work /tmp/eval_speed] [--rounds 1] [--threads 1]

The synthetic set is 2,000 images of the shipped pretrained model (`xraygan generate --pretrained
pediatric-cxr-64`, written once under WORK). Each round runs the command in a fresh process
(start-up included, exactly what a user types) twice: with an empty feature cache (cold) and again
(warm: real features and the real-only memorisation distances read from the cache). The real set
is a prepared dataset, so memorisation (train split vs val+test) is included. Printed beside the
times: the stages (``timings`` in the result: opening/decoding, extractor loading, feature
extraction, FD/KID/PRDC, SSIM, class consistency, memorisation), the CPU seconds of the process
(user + system: the work, whatever the load of a shared machine), the machine load before and
after, the CPU model and flags, and two references measured in the same run: one bare pass of
the xray encoder over the 2,000 synthetic images (the least an evaluation must do) and the fp32
matmul peak. With ``--baseline SRC`` an older package (e.g. the last commit's, see ``--help``) runs
the same cold/warm pair first: the ratios of the two and whether their numbers agree are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from _machine import cpu_line, load  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def matmul_gflops(n: int = 1024, reps: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n matmul (torch, its default threads)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def encoder_pass(fake: Path) -> float:
    """Seconds of one bare xray-encoder pass over the synthetic images (decoded beforehand)."""
    import numpy as np

    from xraygan.data.sources import open_image_set
    from xraygan.metrics.features import get_extractor, to_tensor

    pix = np.asarray(open_image_set(fake).pixels)
    ex = get_extractor("xray")
    x = to_tensor(pix, int(pix.shape[-1]))
    t = time.perf_counter()
    ex.features(x)
    return time.perf_counter() - t


def synthetic(work: Path, n: int) -> Path:
    fake = work / "fake"
    if not (fake / "manifest.csv").is_file():
        from xraygan.generate import generate

        generate(None, n, fake, pretrained="pediatric-cxr-64", force=True, device="cpu")
    return fake


def evaluate_once(real: Path, fake: Path, out: Path, cache: Path, n: int, threads: int, src: Path | None = None) -> dict:
    """One `xraygan evaluate` in a fresh process (``src``: the folder holding another ``xraygan``
    package to run instead): wall and CPU seconds, and the result."""
    env = {**os.environ, "XRAYGAN_CACHE": str(cache)}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    if threads:
        env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "xraygan", "evaluate", "--real", str(real), "--fake", str(fake), "--n", str(n),
                    "--out", str(out), "--force", "--device", "cpu", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "res": json.loads(out.read_text())}


def report(o: dict, ref: float) -> None:
    res = o["res"]
    m = res["memorisation"]["pixel"]
    print(f"  xraygan evaluate {res['n']} vs {res['n']} (+ floor, per class, memorisation {m['n_train']} train / {m['n_heldout']} held-out): "
          f"{o['wall']:.1f} s wall, {o['cpu']:.1f} s CPU ({o['wall'] / ref:.1f}x the bare encoder pass)")
    stages = res.get("timings", {})
    if stages:
        print("  stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
              + f"; start-up and writing {o['wall'] - sum(stages.values()):.2f}")
        print("  stages, CPU s: " + ", ".join(f"{k} {v:.2f}" for k, v in res.get("timings_cpu", {}).items()))
    print(f"  fd {res['overall']['fd']['value']:.6g} (floor {res['overall']['fd']['floor']:.6g}), "
          f"kid {res['overall']['kid']['value']:.6g}, precision {res['overall']['precision']['value']:.4f}, "
          f"memorisation below 1st pct: pixel {m['fake_below']}, feature {res['memorisation']['feature']['fake_below']}", flush=True)


def compare_runs(got: dict) -> None:
    """Speed ratios to the baseline and whether the numbers agree (FD/KID relative, counts exactly)."""
    for kind in ("cold", "warm"):
        b, t = got["baseline", kind], got["this tree", kind]
        print(f"\n{kind}: this tree / baseline = {t['wall'] / b['wall']:.3f} wall, {t['cpu'] / b['cpu']:.3f} CPU")
    b, t = got["baseline", "warm"]["res"], got["this tree", "warm"]["res"]
    worst, same = 0.0, True
    for blk in ["overall", *b.get("per_class", {})]:
        x, y = (b["overall"], t["overall"]) if blk == "overall" else (b["per_class"][blk], t["per_class"][blk])
        for k in ("fd", "kid"):
            for side in ("value", "floor"):
                worst = max(worst, abs(y[k][side] - x[k][side]) / max(abs(x[k][side]), 1e-300))
        same &= all(x[k][s] == y[k][s] for k in ("precision", "recall", "density", "coverage") for s in ("value", "floor"))
    mem = all(b["memorisation"][sp][k] == t["memorisation"][sp][k] for sp in ("pixel", "feature")
              for k in ("fake_below", "authenticity", "authenticity_heldout", "heldout_below_share"))
    cc = b.get("class_consistency") == t.get("class_consistency")
    print(f"FD/KID largest relative difference {worst:.2e}; precision/recall/density/coverage identical: {same}; "
          f"memorisation counts identical: {mem}; class consistency identical: {cc}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("real", type=Path, help="prepared dataset of the shared chest X-rays at 64 px")
    p.add_argument("--n", type=int, default=2000, help="images per side")
    p.add_argument("--work", type=Path, default=Path("/tmp/xraygan_eval_speed"), help="scratch folder (synthetic set, caches, results)")
    p.add_argument("--rounds", type=int, default=1, help="cold + warm pairs to run")
    p.add_argument("--baseline", type=Path, default=None, help="folder holding an older xraygan package to time in the same run and "
                   "compare with, e.g. `mkdir /tmp/old && git archive HEAD src/xraygan | tar -x -C /tmp/old` then --baseline /tmp/old/src")
    p.add_argument("--threads", type=int, default=0, help="threads of the evaluate process (OMP/MKL/OpenBLAS; 0: their default, "
                   "one per core); with 1 its CPU seconds are the work itself, not inflated by threads spinning on a loaded machine")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # the references run with the evaluate process's threads
    print(f"{cpu_line()}; evaluate threads: {args.threads or 'default'}")
    fake = synthetic(args.work, args.n)
    print(f"{load()}; reference: fp32 matmul {matmul_gflops():.0f} GFLOP/s", flush=True)
    ref = encoder_pass(fake)
    print(f"reference: one xray-encoder pass over the {args.n} synthetic images {ref:.2f} s", flush=True)
    impls = ([("baseline", args.baseline)] if args.baseline else []) + [("this tree", None)]
    for r in range(args.rounds):
        got = {}
        for name, src in impls:
            cache = args.work / f"cache{r}_{name.replace(' ', '_')}"
            shutil.rmtree(cache, ignore_errors=True)
            for kind in ("cold", "warm"):
                print(f"\nround {r + 1}, {name}, {kind} cache: {load()}", flush=True)
                got[name, kind] = o = evaluate_once(args.real, fake, args.work / f"eval_{r}_{name[:4]}_{kind}.json", cache, args.n, args.threads, src)
                report(o, ref)
        if args.baseline:
            compare_runs(got)
    print(f"\n{load()}")


if __name__ == "__main__":
    main()
