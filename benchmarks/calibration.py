"""Issue 13: empirical type-I error (and power) of the experiment's tests, old and new, by simulation.

    OMP_NUM_THREADS=1 python benchmarks/calibration.py --sims 2000 [--seed 0] [--only ttest|delong]

Score-level simulations; no images, no training. A patient has a label (40% positive) and 1-4
images; image i of patient p has a latent score ``mu*c_p + b_p + e_i`` (binormal, patient random
effect b_p ~ N(0, 0.8^2), image noise e_i ~ N(0, 0.6^2)) and a feature vector
``z_i = z_p + z'_i`` (d=4, patient part N(0, 1), image part N(0, 0.5^2)).

t-tests (fold x seed structure). A "classifier" of arm a trained on the patient set T with seed s
scores image i as ``latent_i + z_i . (w_a(T) + v_{a,s}) + eps``: ``w_a(T)`` is the mean of per-
patient, per-arm vectors u_{p,a} over the training patients (scaled so its SD per component is
sigma_w * sqrt(100/|T|)): two folds sharing training patients get correlated models, the source of
the Nadeau-Bengio correction; ``v_{a,s}`` ~ N(0, sigma_v^2) is the seed's own model noise and eps
~ N(0, 0.3^2) per image. Seeds of one fold share T and the test patients, so they are correlated.
Arms are exchangeable (u, v, eps drawn alike), so the expected AUC difference is 0: the null.
Each unit's AUC is taken on its fold's test images; differences are arm b - arm a.

- old t-test: today's ``corrected_ttest`` on the K*S fold x seed differences (df = K*S - 1),
  n_train = training patients *before* ``--real-fraction`` (summary.py's len(train)+len(dropped)).
- new t-test: ``corrected_repeated_cv_ttest`` on the (R, K, S) differences (seeds averaged, df =
  R*K - 1), n_train/n_test = patients actually trained/tested on.

DeLong (one test set, two fixed scorers). Scorer a: ``latent_i + z_i . w_a + eps``; scorer b the
same with an independent direction of the same norm (equal population AUC: the null). Old:
``delong_paired`` (images independent). New: ``delong_clustered`` (Obuchowski 1997, patients as
clusters).

Power: arm/scorer b gets ``delta * c_i`` added, delta set by the binormal formula so that the
population AUC rises by 0.02; the table shows the mean delta-AUC actually realised.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from scipy import stats as sps

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from xraygan.experiments import stats  # noqa: E402

D = 4
MU, SB, SE_IMG, SZ_P, SZ_I, SEPS = 1.5, 0.8, 0.6, 1.0, 0.5, 0.3
SN_P, SN_I = 0.6, 0.4  # a trained model's own errors: patient part, image part
ALPHA = 0.05


def population(rng, n_pat):
    c = (rng.random(n_pat) < 0.4).astype(np.int64)
    c[:2], c[2:4] = 1, 0
    k = rng.integers(1, 5, n_pat)
    pid = np.repeat(np.arange(n_pat), k)
    y = c[pid]
    latent = MU * y + rng.normal(0, SB, n_pat)[pid] + rng.normal(0, SE_IMG, len(pid))
    z = rng.normal(0, SZ_P, (n_pat, D))[pid] + rng.normal(0, SZ_I, (len(pid), D))
    return c, pid, y, latent, z


def aucs(y, scores):
    """AUC of every row of scores (k, n)."""
    y = y.astype(bool)
    m, n = y.sum(), (~y).sum()
    r = sps.rankdata(scores, axis=1)
    return (r[:, y].sum(axis=1) - m * (m + 1) / 2) / (m * n)


def patient_folds(rng, c, k):
    """Stratified patient partition into k folds."""
    fold = np.empty(len(c), np.int64)
    for cls in (0, 1):
        idx = rng.permutation(np.flatnonzero(c == cls))
        fold[idx] = (np.arange(len(idx)) + rng.integers(k)) % k
    return fold


def subsample(rng, pats, c, frac):
    if frac >= 1:
        return pats
    keep = []
    for cls in (0, 1):
        members = pats[c[pats] == cls]
        keep.append(rng.permutation(members)[: max(1, int(round(frac * len(members))))])
    return np.sort(np.concatenate(keep))


def shift_for(delta_auc, model_var):
    """Mean shift of positives raising the binormal AUC by delta_auc, given the model-noise variance."""
    s = np.sqrt(2 * (SB**2 + SE_IMG**2 + model_var + SEPS**2))
    a0 = sps.norm.cdf(MU / s)
    return s * sps.norm.ppf(a0 + delta_auc) - MU


def sim_cv(rng, n_pat, repeats, k, seeds, frac, sigma_w, sigma_v, shift):
    """One simulated experiment: differences (R, K, S) of fold AUCs, n_train before/after subsampling, n_test."""
    c, pid, y, latent, _ = population(rng, n_pat)
    u = rng.normal(0, 1, (2, n_pat))  # per-arm, per-patient contribution to the trained model's quality
    diffs = np.empty((repeats, k, seeds))
    ntr_full, ntr, nte = [], [], []
    for r in range(repeats):
        fold = patient_folds(rng, c, k)
        # each arm's own errors on each image (patient part + image part), shared by its seeds
        err = rng.normal(0, SN_P, (2, n_pat))[:, pid] + rng.normal(0, SN_I, (2, len(pid)))
        for f in range(k):
            train_all = np.flatnonzero(fold != f)
            train = subsample(rng, train_all, c, frac)
            test_img = np.flatnonzero(fold[pid] == f)
            ntr_full.append(len(train_all))
            ntr.append(len(train))
            nte.append(int((fold == f).sum()))
            q_train = sigma_w * np.sqrt(100.0 / len(train)) * u[:, train].sum(axis=1) / np.sqrt(len(train))  # (2,)
            q = q_train[:, None] + rng.normal(0, sigma_v, (2, seeds))  # (arm, seed) log noise scale
            sc = latent[test_img][None, None, :] + np.exp(q)[:, :, None] * err[:, None, test_img]
            sc = sc + rng.normal(0, SEPS, sc.shape)
            sc[1] += shift * y[test_img]
            a = aucs(y[test_img], sc.reshape(2 * seeds, -1)).reshape(2, seeds)
            diffs[r, f] = a[1] - a[0]
    return diffs, float(np.mean(ntr_full)), float(np.mean(ntr)), float(np.mean(nte))


def run_ttests(n_sims, seed, scenarios, power_shift_auc=0.02):
    rows = []
    for name, kw in scenarios:
        model_var = SN_P**2 + SN_I**2
        for planted in (0.0, power_shift_auc):
            shift = 0.0 if planted == 0 else shift_for(planted, model_var)
            rng = np.random.default_rng([seed, hash(name) % 2**31, int(planted * 1000)])
            rej_old = rej_new = 0
            realised = []
            t0 = time.process_time()
            for _ in range(n_sims):
                d, ntr_full, ntr, nte = sim_cv(rng, shift=shift, **{k_: v for k_, v in kw.items()})
                realised.append(np.mean(d))
                if kw["repeats"] == 1:  # today's test only exists for one partition
                    old = stats.corrected_ttest(d[0].ravel(), n_train=ntr_full, n_test=nte)
                    rej_old += old.p < ALPHA
                new = stats.corrected_repeated_cv_ttest(d, n_train=ntr, n_test=nte)
                rej_new += new.p < ALPHA
            cpu = time.process_time() - t0
            tag = "type-I" if planted == 0 else f"power (dAUC {np.mean(realised):+.4f})"
            if kw["repeats"] == 1:
                rows.append(("old corrected_ttest (K*S diffs, n_train before subsampling)", name, tag, rej_old / n_sims, n_sims, cpu / 2))
            rows.append(("new corrected_repeated_cv_ttest (seeds averaged, actual n_train)", name, tag, rej_new / n_sims, n_sims,
                         cpu / (2 if kw["repeats"] == 1 else 1)))
    return rows


def run_delong(n_sims, seed, n_pat, sigma_w, power_shift_auc=0.02):
    rows = []
    model_var = D * (SZ_P**2 + SZ_I**2) * sigma_w**2
    for planted in (0.0, power_shift_auc):
        shift = 0.0 if planted == 0 else shift_for(planted, model_var)
        rng = np.random.default_rng([seed, 7, int(planted * 1000)])
        rej = {"old": 0, "new": 0}
        cpu = {"old": 0.0, "new": 0.0}
        realised = []
        for _ in range(n_sims):
            c, pid, y, latent, z = population(rng, n_pat)
            wa = rng.normal(0, sigma_w, D)
            wb = rng.normal(0, 1, D)
            wb *= np.linalg.norm(wa) / np.linalg.norm(wb)  # same norm: same population AUC
            a = latent + z @ wa + rng.normal(0, SEPS, len(y))
            b = latent + z @ wb + rng.normal(0, SEPS, len(y)) + shift * y
            t0 = time.process_time()
            r_old = stats.delong_paired(y, a, b)
            t1 = time.process_time()
            r_new = stats.delong_clustered(y, a, b, pid)
            t2 = time.process_time()
            cpu["old"] += t1 - t0
            cpu["new"] += t2 - t1
            rej["old"] += r_old.p < ALPHA
            rej["new"] += r_new.p < ALPHA
            realised.append(r_new.diff)
        tag = "type-I" if planted == 0 else f"power (dAUC {np.mean(realised):+.4f})"
        scen = f"{n_pat} patients, 1-4 images each"
        rows.append(("old delong_paired (images independent)", scen, tag, rej["old"] / n_sims, n_sims, cpu["old"]))
        rows.append(("new delong_clustered (Obuchowski 1997)", scen, tag, rej["new"] / n_sims, n_sims, cpu["new"]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sims", type=int, default=2000, help="simulations per test and setting (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("ttest", "delong"), default=None)
    args = ap.parse_args(argv)
    common = dict(sigma_w=0.15, sigma_v=0.15)
    scenarios = [
        ("R=1 K=5 S=3, 150 patients, fraction 1.0", dict(n_pat=150, repeats=1, k=5, seeds=3, frac=1.0, **common)),
        ("R=1 K=5 S=3, 300 patients, fraction 0.1", dict(n_pat=300, repeats=1, k=5, seeds=3, frac=0.1, **common)),
        ("R=2 K=3 S=3, 150 patients, fraction 1.0", dict(n_pat=150, repeats=2, k=3, seeds=3, frac=1.0, **common)),
        ("R=5 K=5 S=1, 150 patients, fraction 1.0", dict(n_pat=150, repeats=5, k=5, seeds=1, frac=1.0, **common)),
        # training-set variation dominating (sigma_w 0.6): the regime the Nadeau-Bengio term is for
        ("R=1 K=5 S=3, 150 patients, fraction 1.0, sigma_w 0.6", dict(n_pat=150, repeats=1, k=5, seeds=3, frac=1.0, sigma_w=0.6, sigma_v=0.15)),
        ("R=1 K=5 S=3, 300 patients, fraction 0.1, sigma_w 0.6", dict(n_pat=300, repeats=1, k=5, seeds=3, frac=0.1, sigma_w=0.6, sigma_v=0.15)),
    ]
    t0 = time.process_time()
    rows = []
    if args.only in (None, "ttest"):
        rows += run_ttests(args.sims, args.seed, scenarios)
    if args.only in (None, "delong"):
        rows += run_delong(args.sims, args.seed, n_pat=150, sigma_w=0.4)
    print(f"| test | setting | measure | rate at alpha {ALPHA} | MC SE | within 0.05 +- 2 MC SE | sims | CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for test, scen, tag, rate, n, cpu in rows:
        mcse = np.sqrt(rate * (1 - rate) / n)
        ok = ""
        if tag == "type-I":  # the target band uses the MC SE at the nominal 0.05
            inside = abs(rate - ALPHA) <= 2 * np.sqrt(ALPHA * (1 - ALPHA) / n)
            ok = "yes" if inside else ("no (conservative)" if rate < ALPHA else "no (liberal)")
        print(f"| {test} | {scen} | {tag} | {rate:.3f} | {mcse:.3f} | {ok} | {n} | {cpu:.1f} |")
    print(f"\ntotal CPU {time.process_time() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
