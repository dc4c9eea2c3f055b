"""Run the whole job end to end on the small chest X-ray sample shipped inside the package.

prepare -> conditional DCGAN training (a few minutes on 2 CPU cores) -> generate -> a grid of real
next to synthetic images per class, then a summary of where everything is.

Example:
  xraygan demo --out xraygan-demo
"""
from __future__ import annotations

import argparse

from xraygan.options import arg, nonneg_int, positive_float, positive_int

HELP = "the whole pipeline in a few minutes on the shipped sample (start here)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `xraygan demo`."""
    p.add_argument("--out", default="xraygan-demo", help="folder for everything the demo writes")
    p.add_argument("--quick", action="store_true", help="a handful of steps at 16 px (for tests; images will be noise)")
    p.add_argument("--steps", type=arg(positive_int), help="training steps (default: ~3 minutes on 2 CPU cores)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=arg(nonneg_int), default=0, help="CPU threads for PyTorch (0 = its default); 1 is fastest on a busy shared machine")
    p.add_argument("--max-time", type=arg(positive_float), help="cap on training seconds (default 200; none with --quick)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")


def run(args: argparse.Namespace) -> int:
    """Call xraygan.demo.demo and print its summary; on Ctrl-C (exit 130) or SIGTERM (143) say how to rerun."""
    import sys

    from xraygan.demo import demo
    from xraygan.utils.locks import Terminated, refuse_locked_ancestors

    refuse_locked_ancestors(args.out, "demo folder")
    try:
        summary = demo(args.out, quick=args.quick, steps=args.steps, device=args.device, force=args.force,
                       max_time=args.max_time, threads=args.threads)
    except (KeyboardInterrupt, Terminated) as e:
        from xraygan.training.loop import TrainingInterrupted, TrainingTerminated

        how = "Ctrl-C" if isinstance(e, KeyboardInterrupt) else "SIGTERM"
        where = f" during training (step {e.step} of {e.steps})" if isinstance(e, (TrainingInterrupted, TrainingTerminated)) else ""
        print(f"xraygan demo: interrupted by {how}{where}; the demo did not finish. Run `xraygan demo --out {args.out}` "
              "again to start it over (an interrupted demo folder is replaced without --force)", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 143
    print(summary.text())
    return 0
