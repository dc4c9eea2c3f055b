"""The 20-minute showcase: conditional 64-px DCGAN on the shared chest X-rays, its grid and its scores.

    python benchmarks/train_showcase.py --work /tmp/showcase            # prepare + 20 min training + grid + evaluate
    python benchmarks/train_showcase.py --work /tmp/showcase --skip-train   # reuse WORK/run
    python benchmarks/train_showcase.py --work /tmp/ship --run QPM/cpu-auto/run --prepared PREPARED \
        --checkpoint QPM/cpu-auto/snapshots/min30.pt --features xray random   # show and score another run

Writes WORK/prepared (xraygan prepare labels.csv --size 64), WORK/run (xraygan train --conditional
--max-time 1200 --threads 1 --eval-every 150), docs/real_vs_synthetic.png (per class: 16 real
training images left, 16 synthetic from checkpoints/best.pt right; NORMAL on top) and
WORK/eval.json (xraygan evaluate RUN --real PREPARED --n 2000, xray features). Prints steps,
img/s, FD during training and every evaluation metric beside its floor.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/chest-xray-pneumonia/labels.csv"))
    ap.add_argument("--work", required=True)
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--skip-train", action="store_true", help="reuse WORK/run")
    ap.add_argument("--grid", default=str(ROOT / "docs/real_vs_synthetic.png"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--run", help="an existing run folder to show (implies --skip-train), e.g. a quality_per_minute.py arm's WORK/ARM/run")
    ap.add_argument("--prepared", help="its prepared dataset (default WORK/prepared)")
    ap.add_argument("--checkpoint", help="checkpoint to show and evaluate (default: best.pt when the run has one, else latest)")
    ap.add_argument("--per-class", type=int, default=8, help="real and synthetic images per class in the figure")
    ap.add_argument("--features", nargs="+", default=["xray"], help="feature spaces of the evaluations (e.g. xray random)")
    a = ap.parse_args()

    import numpy as np
    from PIL import Image

    import xraygan
    from xraygan.cli import main as cli

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    prep, run = Path(a.prepared or work / "prepared"), Path(a.run or work / "run")
    if not a.skip_train and not a.run:
        if not prep.exists():
            assert cli(["prepare", a.data, str(prep), "--size", "64", "-q"]) == 0
        t0 = time.time()
        assert cli(["train", str(prep), "--out", str(run), "--conditional", "--max-time", str(60 * a.minutes), "--threads", "1",
                    "--eval-every", "150", "--sample-every", "100", "--ckpt-every", "200", "--force"]) == 0
        print(f"training wall time {time.time() - t0:.0f} s")
    rows = [r for r in (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()) if "images" in r]
    last = rows[-1]  # the last training record (evaluation records have no image count)
    print(f"steps {last['step']}, images {last['images']}, train time {last['time']:.0f} s, mean img/s {last['images'] / last['time']:.1f}")
    for r in rows:
        if "fd_xray" in r:
            print(f"  step {r['step']}: FD(xray) {r['fd_xray']:.3f}" + (f" (floor {r['fd_xray_floor']:.3f})" if "fd_xray_floor" in r else ""))

    ckpt = a.checkpoint or ("best" if (run / "checkpoints/best.pt").is_file() else "latest")
    parts = []
    for label in ("NORMAL", "PNEUMONIA"):
        p = work / f"grid_{label}.png"
        xraygan.real_vs_synthetic_grid(run, p, label=label, n=a.per_class, checkpoint=ckpt, device="cpu")
        parts.append(np.asarray(Image.open(p).convert("L")))
    gap = np.full((8, parts[0].shape[1]), 255, np.uint8)
    Path(a.grid).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([parts[0], gap, parts[1]])).save(a.grid, optimize=True)
    print(f"grid ({ckpt if a.checkpoint else ckpt + '.pt'}): {a.grid}")

    for features in a.features:
        t0 = time.time()
        out = work / f"eval_{features}.json"
        assert cli(["evaluate", str(run), "--real", str(prep), "--checkpoint", str(ckpt), "--features", features,
                    "--n", str(a.n), "--out", str(out), "--force", "--device", "cpu", "-q"]) == 0
        res = json.loads(out.read_text())
        print(f"evaluate {a.n} vs {a.n} ({features} features): {time.time() - t0:.0f} s; checkpoint {res.get('run', {}).get('checkpoint')}; {out}")
        for k, v in res["overall"].items():
            if isinstance(v, dict) and "value" in v:
                print(f"  {k:22s} {v['value']:.4f}   floor {v.get('floor', float('nan')):.4f}")
        for label, per in (res.get("per_class") or {}).items():
            if isinstance(per, dict):
                print(f"  {label}: " + ", ".join(f"{k} {v['value']:.3f} (floor {v.get('floor', float('nan')):.3f})"
                                                 for k, v in per.items() if isinstance(v, dict) and isinstance(v.get("value"), float)))
        print("  class consistency", json.dumps(res.get("class_consistency")))
        mem = res.get("memorisation", {})
        for space in ("pixel", "feature"):
            if space in mem:
                print(f"  memorisation {space}: " + json.dumps({k: v for k, v in mem[space].items() if not isinstance(v, (list, dict))}))


if __name__ == "__main__":
    main()
