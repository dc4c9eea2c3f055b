"""Write one self-contained HTML page about a training run or an experiment.

The page embeds every image (no other files, no network): sample grids per class over training
time, loss and Fréchet-distance curves, evaluation tables beside their floors, the memorisation
closest pairs, the experiment's verdicts, ROC curves and confidence-interval charts, and the config
with the training data's provenance. Parts missing from the folder are marked "not available".

Example: xraygan report runs/dcgan64 --out dcgan64.html
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write a self-contained HTML report on a run or experiment folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, nargs="?", metavar="RUN_OR_EXPERIMENT_DIR", help="a run folder (from `xraygan train`) or an experiment folder (from `xraygan experiment`)")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE.html", help="the HTML file to write; default: report.html inside the folder")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    from xraygan.errors import UsageError, XrayganError
    from xraygan.report.html import write_report

    if args.path is None:
        raise UsageError("give the folder to report on: xraygan report RUN_OR_EXPERIMENT_DIR [--out FILE.html]")
    from xraygan.utils.ownership import output_kind

    if Path(args.path).is_dir() and output_kind(args.path) not in ("run", "experiment", "demo"):
        raise XrayganError(f"{args.path} is not an xraygan training run, experiment or demo folder; nothing to report "
                           "(give the folder `xraygan train` or `xraygan experiment` wrote)")
    out = args.out if args.out is not None else Path(args.path) / "report.html"
    if out.is_file() and out.suffix.lower() not in (".html", ".htm"):  # --force replaces only an HTML page
        raise XrayganError(f"--out {out} is an existing file that is not an HTML report; refusing to replace it even with --force")
    if Path(out).resolve() == Path(args.path).resolve():
        raise XrayganError(f"--out {out} is the folder being reported on; give a file name such as report.html")
    if out.exists() and not args.force:
        raise XrayganError(f"--out {out} already exists; choose another file or pass --force to replace it")
    if out.exists() and out.is_dir():
        raise XrayganError(f"--out {out} is a folder; give a file name such as report.html")
    if out.is_file() and not _written_by_xraygan(out):
        raise XrayganError(f"--out {out} is an HTML page xraygan did not write; refusing to replace it even with --force")
    from xraygan.utils.locks import refuse_locked_ancestors

    refuse_locked_ancestors(out, "--out")
    path = write_report(args.path, out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _written_by_xraygan(path: Path) -> bool:
    """True if the HTML page ``path`` is an xraygan report (its generator tag, or the title of older ones)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return '<meta name="generator" content="xraygan report">' in head or "<title>xraygan report: " in head
