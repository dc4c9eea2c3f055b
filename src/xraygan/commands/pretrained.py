"""List the pretrained models that ship inside the package (no network needed).

Each one is a generator plus its model card (data provenance and licence, config, evaluation
figures with their floors, intended use, known limits) in the package's `pretrained/` folder.
Sample one with `xraygan generate --pretrained NAME`.

Example:
  xraygan pretrained
  xraygan generate --pretrained pediatric-cxr-64 --n 100 --out synthetic/
"""
from __future__ import annotations

import argparse

HELP = "list the pretrained models shipped in the package"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `xraygan pretrained`."""
    p.add_argument("--cards", action="store_true", help="also print where each model card (.md) is")


def run(args: argparse.Namespace) -> int:
    """Print one line per shipped model: name, size, classes, file size, description."""
    from xraygan.run import Run

    models = Run.shipped()
    if not models:
        print("no pretrained models are shipped in this installation")
        return 0
    print(f"{'name':<20} {'size':>5}  {'classes':<20} {'file':>8}  description")
    for m in models:
        c = m.config
        print(f"{c['name']:<20} {c['size']:>3}px  {','.join(c['classes']):<20} {c['file_bytes'] / 1e6:>6.1f}MB  {c['description']}")
        if args.cards:
            print(f"{'':<20} card: {m.pretrained_path.with_suffix('.md')}")
    return 0
