"""Generate synthetic X-rays from a trained run.

Writes N PNGs in one sub-folder per label (so DIR is itself a valid `prepare`/`evaluate` input)
and DIR/manifest.csv (file,label,seed,run,checkpoint). Each PNG carries text metadata
synthetic=true, run and checkpoint. Image i's latent comes from a seed derived from --seed and i,
so --n 37 gives the first 37 images of --n 100. A conditional run without --label generates the
classes in equal shares. A label that is not a safe folder name (e.g. ../x, a/b, CON) gets a
cleaned, distinct folder name that stays inside DIR; manifest.csv keeps the label's own text.

Examples:
  xraygan generate runs/cxr --n 500 --out synthetic/ --seed 0
  xraygan generate --pretrained pediatric-cxr-64 --n 100 --out synthetic/   # shipped model, no network
"""
from __future__ import annotations

import argparse

from xraygan.options import arg, nonneg_float, positive_int, seed

HELP = "generate labelled synthetic images from a trained run"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `xraygan generate`."""
    p.add_argument("run", nargs="?", help="run folder written by `xraygan train` (or give --pretrained instead)")
    p.add_argument("--pretrained", metavar="NAME", help="use a model shipped in the package instead of a RUN (see `xraygan pretrained`), e.g. pediatric-cxr-64")
    p.add_argument("--n", type=arg(positive_int), default=500, help="number of images")
    p.add_argument("--out", required=True, help="output folder (refused if not empty, unless --force)")
    p.add_argument("--label", help="generate only this class (conditional runs); default: all classes in equal shares")
    p.add_argument("--seed", type=arg(seed), default=0, help="base seed; image i uses a seed derived from it and i")
    p.add_argument("--checkpoint", default="latest", help="latest, best (needs training with --eval-every) or a checkpoint path")
    p.add_argument("--truncation", type=arg(nonneg_float), help="truncation psi for models that support it (StyleGAN2); ignored by DCGAN")
    p.add_argument("--batch", type=arg(positive_int), default=64, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--format", default="png", choices=["png", "dicom"], help="png (8-bit, with synthetic=true metadata) or dicom (Secondary Capture marked SYNTHETIC; needs the `dicom` extra)")


def run(args: argparse.Namespace) -> int:
    """Call xraygan.generate.generate with the options."""
    from xraygan.generate import generate
    from xraygan.utils.locks import refuse_locked_ancestors

    refuse_locked_ancestors(args.out, "--out")
    out = generate(args.run, args.n, args.out, label=args.label, seed=args.seed, checkpoint=args.checkpoint,
                   truncation=args.truncation, force=args.force, device=args.device, batch=args.batch,
                   fmt=args.format, pretrained=args.pretrained)
    print(f"wrote {args.n} images and manifest.csv to {out}")
    return 0
