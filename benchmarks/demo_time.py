"""Wall time of `xraygan demo` (the README's first command), in a fresh subprocess.

    python benchmarks/demo_time.py                               # the full demo
    python benchmarks/demo_time.py --threads 1                   # one thread (fastest on a busy machine)
    python benchmarks/demo_time.py --quick                       # the test-sized demo

Reports the total wall time including Python start-up, the per-stage times the demo prints, the
steps the training reached within its time cap, and the load average (the machine may be shared).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="time `xraygan demo --quick` instead")
    p.add_argument("--threads", type=int, default=0, help="passed to `xraygan demo --threads` (0 = PyTorch default)")
    p.add_argument("--keep", metavar="DIR", help="write the demo to DIR (must not exist) instead of a temporary folder")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "demo"
        cmd = [sys.executable, "-m", "xraygan", "demo", "--out", str(out), "-q", "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
        load0 = os.getloadavg()[0]
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        load1 = os.getloadavg()[0]
    if res.returncode != 0:
        print(res.stdout, res.stderr, file=sys.stderr)
        raise SystemExit(res.returncode)
    print(f"command: {' '.join(cmd[1:])}")
    print(f"wall time: {wall:.1f} s   (1-min load average {load0:.1f} before, {load1:.1f} after, {os.cpu_count()} CPUs; shared machine)")
    print(res.stdout.strip())


if __name__ == "__main__":
    main()
