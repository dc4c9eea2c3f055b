"""What every benchmark prints beside its figures: the CPU model, the vector/matrix extensions that
decide torch's CPU speed (AVX2, AVX-512, AVX-512 BF16, AMX) and the load average. Imported by the
scripts in this folder (run as ``python benchmarks/NAME.py``, so this folder is on sys.path)."""
from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_line() -> str:
    """``CPU <model>, <n> logical cores; flags: avx2 ...``."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    have = [f for f in FLAGS if f in flags]
    return f"CPU {model}, {os.cpu_count()} logical cores; flags: {' '.join(have) or 'none of avx2/avx512/amx'}"


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()
