"""Evaluation on the shared chest X-rays: the floor of every metric and the time per extractor.

    xraygan prepare ../shared/data/chest-xray-pneumonia/labels.csv /tmp/cxr64 --size 64
    OMP_NUM_THREADS=2 python benchmarks/eval_shared.py /tmp/cxr64 --n 2000 [--inception-weights FILE] [--radiomics-n 200]

For each extractor it runs the full ``evaluate_sets`` (real half A, real half B and a "synthetic"
set, n each, no cache) with a Gaussian-blurred copy of other real images (sigma 1 px) standing in
for synthetic images, so the table shows a degraded set beside the floor (real A vs real B).
It prints the floor of every metric, the blurred set's scores, and the wall time of 2,000 vs
2,000 (feature extraction included), also as a ratio to the ``xray`` extractor timed in the same
run (these machines are shared; only same-run ratios are comparable).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from xraygan.metrics.evaluate import Images, evaluate_sets, memorisation_sets

KEYS = ("fd", "kid", "precision", "recall", "density", "coverage", "ssim")


def blurred_stand_in(real: Images, seed: int, sigma: float = 1.0) -> Images:
    """A shuffled, blurred copy of the real images (labels kept) used as the "synthetic" set."""
    import torchvision.transforms.functional as TF

    x = torch.from_numpy(real.pixels.astype(np.float32)).unsqueeze(1)
    y = TF.gaussian_blur(x, kernel_size=2 * int(3 * sigma) + 1, sigma=sigma)
    perm = np.random.default_rng(seed + 1).permutation(len(real.pixels))
    return Images(y[:, 0].round().clamp(0, 255).byte().numpy()[perm], real.labels[perm], real.classes)


def untrained_inception(tmp: str):
    """torch-fidelity's FID Inception-v3 with its default random init: same compute as the real one,
    for timing only when the weights file is not at hand (its scores mean nothing)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from xraygan.metrics.features import get_extractor

    torch.save({}, tmp)
    original = FeatureExtractorInceptionV3.load_state_dict
    FeatureExtractorInceptionV3.load_state_dict = lambda self, *a, **k: None  # keep the random init
    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=tmp)
    finally:
        FeatureExtractorInceptionV3.load_state_dict = original
    return get_extractor("inception", args_device(), inception_net=net)


def args_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def run_one(name, real: Images, fake: Images, n: int, args, memo=(None, None)) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    res = evaluate_sets(real, fake, features=name, n=n, seed=args.seed, cache=False, device=args.device,
                        inception_weights=args.inception_weights, ssim_pairs=2000, train=memo[0], heldout=memo[1])
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, "res": res}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="prepared dataset of the shared chest X-rays at 64 px")
    p.add_argument("--n", type=int, default=2000, help="images per side")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--extractors", default="xray,random", help="comma-separated extractors to time (inception/radiomics need extras)")
    p.add_argument("--inception-weights", default=None, help="local pt_inception-2015-12-05-6726825d.pth (adds inception)")
    p.add_argument("--radiomics-n", type=int, default=0, help="also time radiomics at this smaller n (needs pyradiomics-bhklab)")
    p.add_argument("--inception-timing-n", type=int, default=0, help="time torch-fidelity's Inception-v3 with random weights at this n (no weights file needed; scores meaningless)")
    p.add_argument("--memorisation", action="store_true", help="also time memorisation (train split vs val+test) for the main extractors")
    p.add_argument("--json", default=None, help="also write all figures to this JSON file")
    args = p.parse_args()

    from xraygan.data.sources import open_image_set

    s = open_image_set(args.data)
    real = Images(np.asarray(s.pixels), np.asarray(s.labels, np.int64), list(s.classes))
    fake = blurred_stand_in(real, args.seed)
    names = args.extractors.split(",") + (["inception"] if args.inception_weights else [])
    memo = memorisation_sets(args.data, real, None, real.pixels.shape[-1])[:2] if args.memorisation else (None, None)
    print(f"torch threads {torch.get_num_threads()}; {len(real.pixels)} real images, {real.pixels.shape[-1]} px; stand-in = blurred real (sigma 1 px)", flush=True)
    jobs = [(nm, nm, args.n) for nm in names]
    if args.inception_timing_n:
        jobs.append(("inception-untrained (timing only)", "inception-untrained", args.inception_timing_n))
    if args.radiomics_n:
        jobs.append(("radiomics", "radiomics", args.radiomics_n))
    runs: dict = {}
    for label, name, n in jobs:
        ex = untrained_inception("/tmp/xraygan_empty_state.pt") if name == "inception-untrained" else name
        runs[label] = r = run_one(ex, real, fake, n, args, memo if name in ("xray", "random") else (None, None))
        report(label, r, runs[jobs[0][0]]["seconds"], jobs[0][0])
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({nm: {"seconds": r["seconds"], **r["res"]} for nm, r in runs.items()}, fh, indent=1, default=str)


def report(label: str, r: dict, ref: float, ref_name: str) -> None:
    """Print one extractor's floor and stand-in scores, time, and memorisation figures."""
    res = r["res"]
    print(f"\n== {label} ({res['features']['fingerprint']}, d={res['features']['dim']}), n={res['n']}: "
          f"{r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU for {res['n']} vs {res['n']} with floor ({r['seconds'] / ref:.2f}x {ref_name} wall)")
    for block, vals in [("overall", res["overall"])] + list(res["per_class"].items()):
        row = "  ".join(f"{k}={_f(vals[k]['floor'])}/{_f(vals[k]['value'])}" for k in KEYS)
        print(f"  {block:10s} n={vals.get('n', res['n']):5d} floor/blurred: {row}")
    for space, m in (res.get("memorisation") or {}).items():
        if isinstance(m, dict):
            print(f"  memorisation {space}: held-out below 1st pct {m['heldout_below_share']:.3f} (blurred {m['fake_below_share']:.3f}); "
                  f"authenticity held-out {m['authenticity_heldout']:.3f} (blurred {m['authenticity']:.3f})")
    print(flush=True)


def _f(v) -> str:
    return "-" if v is None else f"{v:.4g}"


if __name__ == "__main__":
    main()
