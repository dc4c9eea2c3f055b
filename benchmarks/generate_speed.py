"""Images per second of `xraygan generate` against the bare sampling forward pass of the same
model in the same run (issue 16: generate should reach >= 90% of it).

    nice -n 5 python benchmarks/generate_speed.py [--n 4000] [--batch 64] [--rounds 3] [--threads 2]

Model: the shipped pretrained ``pediatric-cxr-64`` (what `xraygan generate --pretrained
pediatric-cxr-64 --n 4000` samples). Per round, interleaved so that load from other processes
hits both alike:

- ``bare``: ``family.sample`` of the generator in eval mode without gradients, batch after batch
  of ``--batch`` latents made beforehand (no seeds, no conversion, no files): the ceiling;
- ``generate``: the whole :func:`xraygan.generate.generate` call (model loading, per-image seeds,
  sampling, uint8 conversion, PNG encoding with metadata on a writer thread, manifest, the staged
  output folder's rename) writing ``--n`` PNGs under ``--work``.

It prints both img/s, their ratio per round and the median ratio (also by CPU seconds of the
process, all threads: on a loaded machine the work, where wall time also counts the waiting;
with ``--threads 1`` no thread spins waiting for another), the PNG encoding time of the
same images on one thread (what the writer thread hides), the machine load and the CPU model and
flags. Outputs go to ``--work`` (default under /tmp) and are removed after each round.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import torch
from _machine import cpu_line, load  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

MODEL = "pediatric-cxr-64"


def bare_forward(sampler, n: int, batch: int) -> float:
    """Seconds of ``family.sample`` over ``n`` images in batches of ``batch`` (latents made beforehand)."""
    fam, g = sampler.family, sampler.generator
    z = fam.latent(n, torch.Generator().manual_seed(0))
    y = torch.tensor(sampler.labels_for(n), dtype=torch.long, device=fam.device)
    if not sampler.n_classes:
        y = torch.zeros_like(y)
    g.eval()
    with torch.no_grad():
        fam.sample(g, z[:batch], y[:batch], None)  # warm-up (allocations, kernel selection)
        t, c = time.perf_counter(), time.process_time()
        for lo in range(0, n, batch):
            fam.sample(g, z[lo:lo + batch], y[lo:lo + batch], None)
        return time.perf_counter() - t, time.process_time() - c


def generate_call(out: Path, n: int, batch: int) -> float:
    from xraygan.generate import generate

    shutil.rmtree(out, ignore_errors=True)
    t, c = time.perf_counter(), time.process_time()
    generate(None, n, out, pretrained=MODEL, batch=batch, device="cpu")
    return time.perf_counter() - t, time.process_time() - c


def png_encode_seconds(folder: Path, limit: int) -> tuple[float, float, int]:
    """CPU seconds to encode (not write) the PNGs of ``folder`` again on one thread with generate's
    encoder and with Pillow's (the encoder before issue 16), and how many."""
    import io

    import numpy as np
    from PIL import Image

    from xraygan.generate import _png_bytes

    files = sorted(folder.rglob("*.png"))[:limit]
    imgs = [np.asarray(Image.open(p)) for p in files]
    metas = [dict(Image.open(p).text) for p in files]
    t = time.process_time()
    for im, meta in zip(imgs, metas):
        _png_bytes(im, meta)
    ours = time.process_time() - t
    t = time.process_time()
    for im in imgs:
        Image.fromarray(im).save(io.BytesIO(), format="PNG")
    return ours, time.process_time() - t, len(imgs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=4000, help="images per measurement")
    p.add_argument("--batch", type=int, default=64, help="images per forward pass (generate's --batch default)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved bare/generate rounds")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--work", type=Path, default=Path("/tmp/xraygan_generate_speed"), help="scratch folder")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from xraygan.run import Run

    print(f"{cpu_line()}; torch threads {torch.get_num_threads()}")
    sampler = Run.pretrained(MODEL).sampler(device="cpu")
    ratios, cpu_ratios = [], []
    for r in range(args.rounds):
        print(f"\nround {r + 1}: {load()}", flush=True)
        bare, bare_cpu = bare_forward(sampler, args.n, args.batch)
        gen, gen_cpu = generate_call(args.work / "out", args.n, args.batch)
        ratios.append(bare / gen)
        cpu_ratios.append(bare_cpu / gen_cpu)
        print(f"  bare forward {args.n / bare:.1f} img/s ({bare:.2f} s, {bare_cpu:.2f} CPU s); generate {args.n / gen:.1f} img/s "
              f"({gen:.2f} s, {gen_cpu:.2f} CPU s, model loading and all writing included); generate / bare img/s = {bare / gen:.3f} "
              f"(CPU seconds: {bare_cpu / gen_cpu:.3f})", flush=True)
    enc, pil, k = png_encode_seconds(args.work / "out", args.n)
    shutil.rmtree(args.work, ignore_errors=True)
    print(f"\nmedian generate / bare img/s over {args.rounds} round(s): {statistics.median(ratios):.3f} (each: {', '.join(f'{x:.3f}' for x in ratios)}); "
          f"by CPU seconds (the work, whatever the load): {statistics.median(cpu_ratios):.3f}")
    print(f"PNG encoding of {k} of these images on one thread: {enc:.2f} CPU s with generate's encoder (on the writer thread), "
          f"{pil:.2f} CPU s with Pillow's (without the text chunks)")
    print(load())


if __name__ == "__main__":
    main()
