"""Images per second of `xraygan generate` against the bare sampling forward pass of the same
model in the same run (issue 16: generate should reach >= 90% of it).

    nice -n 5 python benchmarks/generate_speed.py [--n 4000] [--batch 64] [--rounds 3] [--threads 2]

Model: the shipped pretrained ``pediatric-cxr-64`` (what `xraygan generate --pretrained
pediatric-cxr-64 --n 4000` samples). Per round, interleaved so that load from other processes
hits both alike:

- ``bare``: ``family.sample`` of the generator in eval mode without gradients, batch after batch
  of ``--batch`` latents made beforehand (no seeds, no conversion, no files): the ceiling;
- ``generate``: the whole :func:`xraygan.generate.generate` call (model loading, per-image seeds,
  sampling, uint8 conversion, PNG encoding with metadata -- on a writer thread where a core is
  spare, else inline --, manifest, the staged output folder's rename) writing ``--n`` PNGs under
  ``--work``.

It prints both img/s, their ratio per round and the median ratio (also by CPU seconds of the
process, all threads: on a loaded machine the work, where wall time also counts the waiting;
with ``--threads 1`` no thread spins waiting for another), the PNG encoding time of the
same images on one thread (generate's encoder against Pillow's), the cost of creating as many
new files on this file system, the machine load and the CPU model and flags. To compare two
versions of the package under the same load, run the script for each
(``PYTHONPATH=/path/to/other/src``), alternately. Outputs go to ``--work`` (default under
/tmp), one new folder per round, all removed at the end: creating thousands of files right after
deleting thousands cost up to 1 ms of system time per file on this machine's ext4 (against 0.03-0.1
ms otherwise), which versions of this script before issue 16's PNG work charged to generate.
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
    """Seconds of one ``generate`` call into the new folder ``out`` (nothing is deleted before it)."""
    from xraygan.generate import generate

    t, c = time.perf_counter(), time.process_time()
    generate(None, n, out, pretrained=MODEL, batch=batch, device="cpu")
    return time.perf_counter() - t, time.process_time() - c


def png_encode_seconds(folder: Path, limit: int) -> tuple[float, float, float, int]:
    """CPU seconds to encode (not write) the PNGs of ``folder`` again on one thread, text chunks
    included: with generate's encoder, with Pillow's at its default level 6 (generate's encoder
    before), and with Pillow's at level 1; and how many images."""
    import io

    import numpy as np
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from xraygan.generate import _png_bytes

    files = sorted(folder.rglob("*.png"))[:limit]
    imgs = [np.asarray(Image.open(p)) for p in files]
    metas = [dict(Image.open(p).text) for p in files]
    t = time.process_time()
    for im, meta in zip(imgs, metas):
        _png_bytes(im, meta)
    ours = time.process_time() - t
    pil = []
    for level in (6, 1):
        t = time.process_time()
        for im, meta in zip(imgs, metas):
            info = PngInfo()
            for k, v in meta.items():
                info.add_text(k, v)
            Image.fromarray(im).save(io.BytesIO(), format="PNG", pnginfo=info, compress_level=level)
        pil.append(time.process_time() - t)
    return ours, pil[0], pil[1], len(imgs)


def file_create_seconds(folder: Path, n: int, size: int = 3000) -> tuple[float, float, float]:
    """CPU seconds (system time included) to create ``n`` new files of ``size`` bytes in ``folder``
    (what one file per image costs on this file system, whatever the encoder), then again right
    after deleting them (on ext4 here several times more: why no round deletes anything before
    its generate call); and wall seconds of the first."""
    data = b"x" * size

    def create(d: Path) -> tuple[float, float]:
        d.mkdir(parents=True)
        t, c = time.perf_counter(), time.process_time()
        for i in range(n):
            with open(d / f"f_{i:06d}.png", "wb", buffering=0) as fh:
                fh.write(data)
        return time.perf_counter() - t, time.process_time() - c

    wall, cpu = create(folder / "a")
    shutil.rmtree(folder / "a")
    _, cpu_after_rm = create(folder / "b")
    shutil.rmtree(folder, ignore_errors=True)
    return wall, cpu, cpu_after_rm


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
    shutil.rmtree(args.work, ignore_errors=True)  # leftovers; model loading and a bare pass come before any file is created
    sampler = Run.pretrained(MODEL).sampler(device="cpu")
    ratios, cpu_ratios = [], []
    for r in range(args.rounds):
        print(f"\nround {r + 1}: {load()}", flush=True)
        bare, bare_cpu = bare_forward(sampler, args.n, args.batch)
        gen, gen_cpu = generate_call(args.work / f"round{r + 1}", args.n, args.batch)  # kept until the end
        ratios.append(bare / gen)
        cpu_ratios.append(bare_cpu / gen_cpu)
        print(f"  bare forward {args.n / bare:.1f} img/s ({bare:.2f} s, {bare_cpu:.2f} CPU s); generate {args.n / gen:.1f} img/s "
              f"({gen:.2f} s, {gen_cpu:.2f} CPU s, model loading and all writing included); generate / bare img/s = {bare / gen:.3f} "
              f"(CPU seconds: {bare_cpu / gen_cpu:.3f})", flush=True)
    enc, pil, pil1, k = png_encode_seconds(args.work / f"round{args.rounds}", args.n)
    fc_wall, fc_cpu, fc_cpu_rm = file_create_seconds(args.work / "files", args.n)
    shutil.rmtree(args.work, ignore_errors=True)
    print(f"\nmedian generate / bare img/s over {args.rounds} round(s): {statistics.median(ratios):.3f} (each: {', '.join(f'{x:.3f}' for x in ratios)}); "
          f"by CPU seconds (the work, whatever the load): {statistics.median(cpu_ratios):.3f}")
    print(f"PNG encoding of {k} of these images (7 text chunks each) on one thread: {enc:.2f} CPU s with generate's encoder, "
          f"{pil:.2f} CPU s with Pillow's at level 6 (generate's before), {pil1:.2f} CPU s with Pillow's at level 1")
    print(f"creating {args.n} new 3-kB files here: {fc_wall:.2f} s wall, {fc_cpu:.2f} CPU s ({fc_cpu / args.n * 1e3:.3f} ms "
          f"per file; generate creates one per image); right after deleting as many: {fc_cpu_rm:.2f} CPU s")
    print(load())


if __name__ == "__main__":
    main()
