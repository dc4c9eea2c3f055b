"""Time and peak memory of `xraygan prepare` on the shared chest X-ray data, split counts, and what
--patient-regex finds on the folder form of the same data.

Usage::

    python benchmarks/prepare_shared.py [DATA] [--workers 1 2]

DATA defaults to ../shared/data/chest-xray-pneumonia beside the checkout. Each run happens in a
fresh child process so its peak RSS (``ru_maxrss``, plus its worker processes) is its own. The
reference measured in the same run is a child that only decodes every JPEG (no resize, no
writes): prepare's time is reported as a ratio to it.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chest-xray-pneumonia"

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
if args["mode"] == "decode":
    import csv
    from xraygan.data.io import decode_gray
    base = Path(args["source"]).parent
    with open(args["source"]) as fh:
        n = sum(decode_gray(base / r["path"]).size > 0 for r in csv.DictReader(fh))
    result = {"n": n}
else:
    from xraygan.data.prepare import prepare
    ds = prepare(args["source"], args["out"], size=args["size"], workers=args["workers"], patient_regex=args.get("regex"), any_size=True)
    result = {"n": len(ds), "counts": ds.info["counts"], "n_patients": ds.info["n_patients"]}
result["seconds"] = time.perf_counter() - t0
kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result["peak_rss_mib"] = kib / 1024
result["peak_rss_workers_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps(result))
"""


def run_child(**args) -> dict:
    """Run one measurement in a fresh Python process and return its JSON answer."""
    p = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args, default=str)], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"child failed: {args}\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def patient_agreement(prepared: Path, labels_csv: Path) -> dict:
    """Compare regex patient ids of a prepared folder with labels.csv's patient_id."""
    with open(labels_csv, newline="") as fh:
        truth = {r["path"]: r["patient_id"] for r in csv.DictReader(fh)}
    with open(prepared / "manifest.csv", newline="") as fh:
        found = {r["source"]: r["patient_id"] for r in csv.DictReader(fh)}
    exact = sum(found[k] == truth.get(k) for k in found)
    # partition agreement: does each found patient map to exactly one true patient and back?
    f2t, t2f = defaultdict(set), defaultdict(set)
    for k, pid in found.items():
        f2t[pid].add(truth.get(k))
        t2f[truth.get(k)].add(pid)
    return {"images": len(found), "patients_found": len(f2t), "patients_in_csv": len(set(truth.values())),
            "exact_id_matches": exact, "found_patients_merging_csv_patients": sum(len(v) > 1 for v in f2t.values()),
            "csv_patients_split_by_regex": sum(len(v) > 1 for v in t2f.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA, help="chest-xray-pneumonia folder (with labels.csv)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time at 224 px")
    a = ap.parse_args()
    from xraygan.data.splits import KERMANY_PATIENT_REGEX

    labels = a.data / "labels.csv"
    with tempfile.TemporaryDirectory(prefix="xraygan-bench-") as tmp:
        ref = run_child(mode="decode", source=labels)
        print(f"reference: decode {ref['n']} JPEGs only: {ref['seconds']:.2f} s, peak RSS {ref['peak_rss_mib']:.0f} MiB")
        runs = [(64, 1)] + [(224, w) for w in a.workers]
        for size, workers in runs:
            r = run_child(mode="prepare", source=labels, out=f"{tmp}/csv{size}w{workers}", size=size, workers=workers)
            print(f"prepare labels.csv --size {size} --workers {workers}: {r['n']} images in {r['seconds']:.2f} s "
                  f"({r['seconds'] / ref['seconds']:.2f}x decode-only), peak RSS {r['peak_rss_mib']:.0f} MiB "
                  f"(largest worker {r['peak_rss_workers_mib']:.0f} MiB)")
            if (size, workers) == runs[0]:
                for split, per in r["counts"].items():
                    print(f"  {split:5s} " + "  ".join(f"{c}={n}" for c, n in per.items()) + f"  total={sum(per.values())}")
                print(f"  patients: {r['n_patients']}")
        r = run_child(mode="prepare", source=a.data, out=f"{tmp}/folder", size=64, workers=1, regex=KERMANY_PATIENT_REGEX)
        print(f"folder form + --patient-regex '{KERMANY_PATIENT_REGEX}' --size 64: {r['seconds']:.2f} s")
        print("  " + json.dumps(patient_agreement(Path(f"{tmp}/folder"), labels)))


if __name__ == "__main__":
    main()
