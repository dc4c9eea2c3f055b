"""Issue 13: why the seed-split t-test's df are Welch-Satterthwaite kept within [(J-1)/2, J-1].

    OMP_NUM_THREADS=1 python benchmarks/calibration_df.py [--sims 4000]

Type-I error at alpha 0.05 of the corrected repeated-CV t-test under the score-level nulls of
``benchmarks/calibration.py`` (``sim_cv``), training-set variation dominating (sigma_w 0.6 and 1.0),
for variants of its variance and df:

- ``correction on all``: the Nadeau-Bengio factor on all of the fold-mean variance, df J - 1
  (sessions 4-6);
- ``split, df J-1``: the seed part of the variance split off (measured within folds), df J - 1;
- ``split, Satterthwaite``: the same variance, Welch-Satterthwaite df (at most J - 1);
- ``split, bounded``: xraygan's ``corrected_repeated_cv_ttest`` (Satterthwaite df kept within [(J-1)/2, J-1]);
- ``split, floor 2/3``: kept within [2(J-1)/3, J-1].

The MC SE at 4,000 simulations is 0.0034 at 0.05.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from scipy import stats as sps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import calibration as C  # noqa: E402  (benchmarks/calibration.py: the simulation)
from calibration import stats  # noqa: E402  (xraygan.experiments.stats, from this checkout's src)

VARIANTS = ("correction on all", "split, df J-1", "split, Satterthwaite", "split, bounded", "split, floor 2/3")


def rejects(d: np.ndarray, n_train: float, n_test: float, variant: str) -> bool:
    if variant == "split, bounded":  # xraygan's own test, not a copy of it
        return stats.corrected_repeated_cv_ttest(d, n_train=n_train, n_test=n_test).p < 0.05
    r_, k, s = d.shape
    j, r = r_ * k, n_test / n_train
    x = d.mean(axis=2).ravel()
    s2 = x.var(ddof=1)
    v_e = ((d - d.mean(axis=2, keepdims=True)) ** 2).sum() / (j * (s - 1))
    b = max(0.0, s2 - v_e / s)
    var, df = s2 / j + r * b, j - 1.0
    if variant == "correction on all":
        var = (1 / j + r) * s2
    elif variant != "split, df J-1" and b > 0:
        satt = var**2 / (((1 / j + r) * s2) ** 2 / (j - 1) + (r * v_e / s) ** 2 / (j * (s - 1)))
        floor = 2 * (j - 1) / 3 if variant == "split, floor 2/3" else 0.0
        df = min(j - 1.0, max(floor, satt))
    return 2 * sps.t.sf(abs(x.mean()) / np.sqrt(var), df) < 0.05


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sims", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args(argv)
    scenarios = [
        ("sigma_w 0.6, R=1 K=5 S=3", dict(n_pat=150, repeats=1, k=5, seeds=3, frac=1.0, sigma_w=0.6, sigma_v=0.15)),
        ("sigma_w 0.6, R=2 K=3 S=2", dict(n_pat=150, repeats=2, k=3, seeds=2, frac=1.0, sigma_w=0.6, sigma_v=0.15)),
        ("sigma_w 0.6, R=1 K=3 S=2", dict(n_pat=150, repeats=1, k=3, seeds=2, frac=1.0, sigma_w=0.6, sigma_v=0.15)),
        ("sigma_w 0.6, R=1 K=10 S=2, 300 patients", dict(n_pat=300, repeats=1, k=10, seeds=2, frac=1.0, sigma_w=0.6, sigma_v=0.15)),
        ("sigma_w 1.0, R=1 K=5 S=3", dict(n_pat=150, repeats=1, k=5, seeds=3, frac=1.0, sigma_w=1.0, sigma_v=0.15)),
        ("sigma_w 0.6, sigma_v 0.4, R=1 K=5 S=3", dict(n_pat=150, repeats=1, k=5, seeds=3, frac=1.0, sigma_w=0.6, sigma_v=0.4)),
    ]
    print("| null | " + " | ".join(VARIANTS) + " |")
    print("|---|" + "---|" * len(VARIANTS))
    for name, kw in scenarios:
        rng = np.random.default_rng(a.seed)
        hits = dict.fromkeys(VARIANTS, 0)
        for _ in range(a.sims):
            d, n_train, _, n_test = C.sim_cv(rng, shift=0.0, **kw)
            for v in VARIANTS:
                hits[v] += rejects(d, n_train, n_test, v)
        print(f"| {name} | " + " | ".join(f"{hits[v] / a.sims:.4f}" for v in VARIANTS) + " |", flush=True)


if __name__ == "__main__":
    main()
