"""Learning curves and data-equivalence of an experiment with several real fractions (issue 14).

Each arm's fold-test AUC (mean over every repeat x fold x seed unit, with the patient-bootstrap CI of
the fold test sets) is tabled against the mean number of real training patients per fold at each
fraction. Data-equivalence: the ``real`` arm's curve of mean fold AUC against log(patients) is made
non-decreasing and inverted by linear interpolation, so an arm's AUC at a fraction reads as "as good
as real-only training on N patients". Its interval: a bootstrap over (repeat, fold) pairs -- the same
resample of folds for every arm and fraction, the curve refitted each time -- percentile 95%. An AUC
above the real curve's maximum (or below its minimum) has no equivalent inside the curve: null, with
``beyond`` saying which side.
"""
from __future__ import annotations

import numpy as np


def _fold_aucs(units: list[dict]) -> dict[tuple, float]:
    """Mean over seeds of the fold AUC of each (repeat, fold)."""
    by: dict[tuple, list] = {}
    for u in units:
        by.setdefault((u["repeat"], u["fold"]), []).append(u["fold_test"]["auc"])
    return {k: float(np.nanmean(v)) for k, v in by.items()}


def _invert(real_x: np.ndarray, real_auc: np.ndarray, auc: float) -> tuple[float | None, str | None]:
    mono = np.maximum.accumulate(real_auc)
    if not np.isfinite(auc):
        return None, None
    if auc > mono[-1]:
        return None, "above"
    if auc < mono[0]:
        return None, "below"
    # the first point where the curve reaches auc, linearly in log(patients)
    return float(np.exp(np.interp(auc, mono, np.log(real_x)))), None


def learning_curve(arms: dict, curve: dict, n_boot: int = 1000, seed: int = 5) -> tuple[dict, dict]:
    """(learning_curve, data_equivalence) from the summary's arms (labels ``<arm> @<F>``)."""
    fracs = sorted(curve.values(), key=lambda c: c["fraction"])
    lc: dict[str, dict] = {}
    for label, a in arms.items():
        base, _, f = label.rpartition(" @")
        point = next(c for c in fracs if f"{c['fraction']:g}" == f)
        lc.setdefault(base, {})[f] = {"real_patients": point["real_patients"], **a["fold_tests"]["auc"],
                                       "_folds": _fold_aucs(a["units"])}
    real = lc.get("real", {})
    keys = [f"{c['fraction']:g}" for c in fracs if f"{c['fraction']:g}" in real]
    eq: dict[str, dict] = {}
    if len(keys) < 2:
        return _public(lc), eq
    x = np.array([real[k]["real_patients"] for k in keys])
    pairs = sorted(real[keys[0]]["_folds"])
    rng = np.random.default_rng(seed)
    draws = [pairs] + [[pairs[i] for i in rng.integers(0, len(pairs), len(pairs))] for _ in range(n_boot)]

    def mean_auc(point, draw):
        return float(np.nanmean([point["_folds"].get(k, np.nan) for k in draw]))

    for base, by in lc.items():
        if base == "real":
            continue
        for f, point in by.items():
            vals = []
            for draw in draws:
                y = np.array([mean_auc(real[k], draw) for k in keys])
                vals.append(_invert(x, y, mean_auc(point, draw)))
            est, beyond = vals[0]
            boot = np.array([v for v, _ in vals[1:] if v is not None])
            # no interval around an undefined estimate (an AUC off the real curve)
            lo, hi = (np.quantile(boot, [0.025, 0.975]) if len(boot) > 1 and est is not None else (np.nan, np.nan))
            eq.setdefault(base, {})[f] = {"real_patients": point["real_patients"], "real_patients_equivalent": est,
                                          "beyond": beyond, "lo": float(lo), "hi": float(hi),
                                          "ratio": est / point["real_patients"] if est else None,
                                          "n_boot_defined": int(len(boot))}
    return _public(lc), eq


def _public(lc: dict) -> dict:
    return {b: {f: {k: v for k, v in p.items() if not k.startswith("_")} for f, p in by.items()} for b, by in lc.items()}
