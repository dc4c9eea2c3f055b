"""From unit records to results: metrics with patient-level bootstrap CIs, calibrated tests, verdicts, charts.

For every arm:
- per unit (repeat x fold x seed): every metric on the fold's test patients;
- the fold test sets: in each repetition each train+val image is scored by the classifiers (one per
  seed, scores averaged) of the fold that held it out; each metric is the mean of the per-fold
  metrics over every fold of every repetition, with a patient-level bootstrap CI (patients
  resampled within each fold; the repetitions' folds are resampled independently, so with
  ``--repeats`` > 1 this CI is somewhat narrow -- the verdicts do not use it);
- each held-out test set: scores averaged over all repeat x fold x seed classifiers (an ensemble).

Every arm against ``real`` (issue 13):
- primary: :func:`stats.corrected_repeated_cv_ttest` of the fold AUC differences, seeds averaged
  within each (repeat, fold) first; n_train/n_test are patients per fold, n_train *before*
  ``--real-fraction`` subsampling (why: :func:`n_train_n_test`);
- Holm's adjustment (:func:`stats.holm`) across all comparisons of the experiment; raw and
  adjusted p in results.json (``p_raw``, ``p_holm``);
- secondary: the patient-clustered DeLong test (Obuchowski 1997) on the fold test sets and on
  every held-out set; a held-out test significant the other way makes the verdict "inconclusive";
- the verdict of :func:`stats.decide` -- improves / harms / equivalent (TOST, ``--margin``) /
  inconclusive -- beside the minimum detectable effect and the patient and image counts.

This module imports nothing from :mod:`xraygan.experiments.runner`: the runner loads the unit
records and passes them in.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from xraygan.data.dataset import PreparedDataset
from xraygan.experiments import stats
from xraygan.experiments.folds import Fold
from xraygan.utils.fs import atomic_write_bytes, atomic_write_json, atomic_write_text


RESULTS_FORMAT_VERSION = 2  # 2: repeats, seed-averaged corrected t-test, clustered DeLong, Holm, four verdict words


def _arm_scores(units: list[dict], oof_rows: np.ndarray, seeds: int, repeats: int) -> tuple[np.ndarray, dict]:
    """OOF scores per repetition (averaged over seeds; shape (repeats, rows)) and ensemble scores per test set."""
    pos = {int(r): i for i, r in enumerate(oof_rows)}
    oof = np.zeros((repeats, seeds, len(oof_rows)))
    tests: dict[str, list] = {}
    for u in units:
        idx = [pos[r] for r in u["fold_test"]["rows"]]
        oof[u.get("repeat", 0), u["seed"], idx] = u["fold_test"]["score"]
        for name, t in u["test_sets"].items():
            tests.setdefault(name, []).append(t["score"])
    return oof.mean(axis=1), {k: np.mean(v, axis=0) for k, v in tests.items()}


def _arm_thresholds(units: list[dict], oof_rows: np.ndarray, seeds: int, repeats: int) -> tuple[np.ndarray, float]:
    """Per repetition and row, the threshold of the fold that tested it (its seeds' Youden thresholds
    averaged, as their scores are); and the held-out ensemble's threshold, the mean over all units.
    Units from before thresholds count as 0.5."""
    pos = {int(r): i for i, r in enumerate(oof_rows)}
    thr = np.full((repeats, seeds, len(oof_rows)), 0.5)
    for u in units:
        thr[u.get("repeat", 0), u["seed"], [pos[r] for r in u["fold_test"]["rows"]]] = u.get("threshold", 0.5)
    return thr.mean(axis=1), float(np.mean([u.get("threshold", 0.5) for u in units])) if units else 0.5


def n_train_n_test(ds: PreparedDataset, folds: list[Fold]) -> tuple[float, float]:
    """The Nadeau-Bengio n_train and n_test: *patients* per fold, averaged over every fold of every repetition.

    n_train counts the fold's training patients *before* ``--real-fraction`` subsampling (kept plus
    dropped), on purpose: the factor n_test/n_train stands in for the correlation between fold
    differences that comes from folds sharing training data. Simulated under the null
    (``benchmarks/calibration.py``, binormal scores with patient effects), the subsampled count
    made the test far too conservative -- type-I error 0.001 instead of 0.05 at fraction 0.1 --
    while the partition's count kept it near 0.05 with seeds averaged within each fold.
    """
    pats = ds.patients
    n_train = float(np.mean([len(set(pats[np.concatenate([f.train, f.dropped])])) for f in folds]))
    n_test = float(np.mean([len(set(pats[f.test])) for f in folds]))
    return n_train, n_test


def _safe(fn, *args, **kw):
    """A clustered DeLong result, or None where it is undefined (fewer than two patients of a class)."""
    try:
        return fn(*args, **kw)
    except ValueError:
        return None


def summarize(cfg, ds: PreparedDataset, partitions: list[list[Fold]], labels: list[tuple], data: dict,
              units: dict[str, list[dict]], gans: list[dict] | None = None) -> dict:
    """Compute every number of results.json from the unit records of ``cfg`` (per arm label)."""
    repeats = len(partitions)
    folds = [f for part in partitions for f in part]
    oof_rows = ds.indices(split=("train", "val"))
    y_rows, p_rows = ds.labels[oof_rows], ds.patients[oof_rows]
    tests = {name: (y, p) for name, (_, y, p) in data["tests"].items()}
    where = {int(r): i for i, r in enumerate(oof_rows)}
    fold_of = np.empty((repeats, len(oof_rows)), np.int64)  # per repetition: the fold that tested each row
    for f in folds:
        fold_of[f.repeat, [where[int(r)] for r in f.test]] = f.index
    arms, scores = {}, {}
    for label, arm, ratio in labels:
        arm_units = units[label]
        oof, ens = _arm_scores(arm_units, oof_rows, cfg.seeds, repeats)
        oof_thr, ens_thr = _arm_thresholds(arm_units, oof_rows, cfg.seeds, repeats)
        scores[label] = {"oof": oof.ravel(), **ens}  # repetitions stacked (see _truth, _fold_of)
        per_unit = []
        for u in arm_units:
            rows = np.asarray(u["fold_test"]["rows"])
            m = stats.binary_metrics(ds.labels[rows], np.asarray(u["fold_test"]["score"]), u.get("threshold", 0.5))
            per_unit.append({"repeat": u.get("repeat", 0), "fold": u["fold"], "seed": u["seed"],
                             "threshold": u.get("threshold", 0.5),
                             "threshold_note": u.get("threshold_note", None if "threshold" in u else "threshold 0.5: unit from before thresholds"),
                             "real_fraction": u.get("real_fraction", cfg.real_fraction), "n_real": u["n_real"],
                             "n_synthetic": u["n_synthetic"], "classifier_steps": u.get("classifier_steps"),
                             "wall_s": u["wall_s"], "fold_test": m})
        fold_aucs = [pu["fold_test"]["auc"] for pu in per_unit]
        arms[label] = {
            "arm": arm, "ratio": ratio, "units": per_unit,
            "fold_auc_mean": float(np.nanmean(fold_aucs)), "fold_auc_sd": float(np.nanstd(fold_aucs, ddof=1)) if len(fold_aucs) > 1 else 0.0,
            "fold_tests": stats.bootstrap_metrics(np.tile(y_rows, repeats), oof.ravel(), np.tile(p_rows, repeats),
                                                  n_boot=cfg.n_boot, seed=1, alpha=cfg.alpha, threshold=oof_thr.ravel(),
                                                  strata=(fold_of + cfg.folds * np.arange(repeats)[:, None]).ravel()),
            "test_sets": {name: stats.bootstrap_metrics(y, ens[name], p, n_boot=cfg.n_boot, seed=2, alpha=cfg.alpha,
                                                        threshold=ens_thr)
                          for name, (y, p) in tests.items()},
            "held_out_threshold": ens_thr,
            "wall_s": float(sum(u["wall_s"] for u in arm_units)),
        }
    n_train, n_test = n_train_n_test(ds, folds)
    counts = {"n_patients": int(len(set(p_rows))), "n_images": int(len(oof_rows)),
              "held_out": {k: {"n_patients": int(len(set(p))), "n_images": int(len(y))} for k, (y, p) in tests.items()}}
    comparisons = {}
    for label, _, _ in labels[1:]:
        diffs = _auc_differences(arms["real"]["units"], arms[label]["units"], repeats, cfg.folds, cfg.seeds)
        tt = stats.corrected_repeated_cv_ttest(diffs, n_train=n_train, n_test=n_test, alpha=cfg.alpha)
        d_folds = _fold_test_delong(ds, partitions, oof_rows, scores["real"]["oof"], scores[label]["oof"], cfg.alpha)
        d_all = {name: _safe(stats.delong_clustered, y, scores["real"][name], scores[label][name], p, alpha=cfg.alpha)
                 for name, (y, p) in tests.items()}
        d_tests = {k: v for k, v in d_all.items() if v is not None}
        comparisons[label] = {
            "against": "real", "fold_auc_differences": diffs.tolist(), "corrected_ttest": tt.to_dict(),
            "delong_fold_test_sets": d_folds.to_dict() if d_folds else None,
            "delong_test_sets": {k: v.to_dict() for k, v in d_tests.items()},
            "p_raw": tt.p, "minimum_detectable_effect": tt.mde, **counts,
            "_tt": tt, "_d_folds": d_folds, "_d_tests": d_tests, "_d_all": d_all,
        }
    adjusted = stats.holm([c["p_raw"] for c in comparisons.values()])
    for (label, c), p_adj in zip(comparisons.items(), adjusted):
        tt, d_folds, d_tests, d_all = c.pop("_tt"), c.pop("_d_folds"), c.pop("_d_tests"), c.pop("_d_all")
        word, reason = stats.decide(tt.mean, float(p_adj), tt.lo90, tt.hi90, margin=cfg.margin, alpha=cfg.alpha, held_out=d_tests)
        c.update({"p_holm": float(p_adj), "n_comparisons": len(comparisons), "verdict": word, "verdict_reason": reason,
                  "alpha": cfg.alpha, "margin": cfg.margin,
                  "tost": stats.tost(tt.mean, tt.se, cfg.margin, df=tt.df, alpha=cfg.alpha).to_dict(),
                  "because": _because(word, reason, tt, float(p_adj), len(comparisons), d_folds, d_all, c, cfg.alpha)})
    return {
        "format": "xraygan-experiment-results", "format_version": RESULTS_FORMAT_VERSION,
        "protocol": _protocol(cfg, ds, folds, tests, n_train, n_test),
        "gans": gans or [], "arms": arms, "comparisons": comparisons,
        "_scores": scores, "_truth": {"oof": np.tile(y_rows, repeats), **{k: y for k, (y, _) in tests.items()}},
        "_fold_of": (fold_of + cfg.folds * np.arange(repeats)[:, None]).ravel(),
    }


def _auc_differences(base: list[dict], other: list[dict], repeats: int, n_folds: int, seeds: int) -> np.ndarray:
    """Paired fold AUC differences (other - real), shape (repeats, folds, seeds); the t-test averages the seeds."""
    d = np.full((repeats, n_folds, seeds), np.nan)
    key = lambda u: (u.get("repeat", 0), u["fold"], u["seed"])  # noqa: E731
    ref = {key(u): u["fold_test"]["auc"] for u in base}
    for u in other:
        d[key(u)] = u["fold_test"]["auc"] - ref[key(u)]
    return d


def _fold_test_delong(ds: PreparedDataset, partitions: list[list[Fold]], oof_rows: np.ndarray, a: np.ndarray,
                      b: np.ndarray, alpha: float) -> stats.DeLongResult | None:
    """Patient-clustered DeLong on the fold test sets (seed-averaged scores), combined over repetitions.

    Within a repetition the folds are disjoint: :func:`stats.delong_clustered_stratified`. The
    repetitions test the same patients, so their estimates are positively correlated; the
    combination is the mean difference with the mean of the repetitions' standard errors (an upper
    bound on the SE of the mean, whatever the correlation), i.e. conservative.
    """
    n = len(oof_rows)
    pos = {int(r): i for i, r in enumerate(oof_rows)}
    per = []
    for r, folds in enumerate(partitions):
        strata = []
        for f in folds:
            idx = np.array([pos[int(x)] for x in f.test])
            strata.append((ds.labels[f.test], a[r * n + idx], b[r * n + idx], ds.patients[f.test]))
        res = _safe(stats.delong_clustered_stratified, strata, alpha=alpha)
        if res is not None:
            per.append(res)
    if not per:
        return None
    if len(per) == 1:
        return per[0]
    se = float(np.mean([d.se for d in per]))
    res = stats._diff_result(float(np.mean([d.auc_a for d in per])), float(np.mean([d.auc_b for d in per])), se**2, alpha)
    return res


def _p_note(name: str, d: stats.DeLongResult | None, word: str, alpha: float, decided: bool = False) -> str:
    """A secondary test's figures, with why it does not decide when its p-value seems to disagree with the word."""
    if d is None:
        return f"{name}: not available (fewer than two patients of a class)"
    text = f"{name} {d.diff:+.3f} (p={d.p:.3g})"
    if decided and d.p < alpha:
        text += " -- see the reason above"
    elif d.p < alpha and word in ("equivalent", "inconclusive"):
        text += (" -- significant alone, but a secondary test: it treats the trained classifiers as fixed and ignores "
                 "the variation between training sets, which the primary corrected t-test includes")
    elif d.p < alpha and word in ("improves", "harms") and np.sign(d.diff) != (1 if word == "improves" else -1):
        text += " -- significant the other way; see the reason above"
    elif d.p >= alpha and word in ("improves", "harms"):
        text += " -- not significant alone; a secondary test, the verdict rests on the corrected t-test"
    return text


def _because(word: str, reason: str, tt, p_adj: float, m: int, d_folds, d_tests: dict, counts: dict, alpha: float) -> str:
    """The reason of the verdict and every number beside it, never a p-value that seems to contradict the word unexplained."""
    ci = 100 * (1 - alpha)
    primary = (f"mean AUC difference over {tt.n_repeats} repeat(s) x {tt.n_folds} folds (seeds averaged within a fold) "
               f"{tt.mean:+.3f} ({ci:g}% CI {tt.lo:+.3f} to {tt.hi:+.3f}; corrected repeated-CV t-test p={tt.p:.3g}, "
               f"Holm-adjusted over {m} comparison(s) p={p_adj:.3g}")
    if tt.p < alpha <= p_adj:
        primary += "; the raw p is below alpha but not after Holm's adjustment for the experiment's comparisons"
    primary += ")"
    parts = [reason, primary,
             f"minimum detectable effect {tt.mde:.3f} AUC (80% power); {counts['n_patients']} patients, "
             f"{counts['n_images']} images in the fold test sets"
             + "".join(f"; held-out {k}: {v['n_patients']} patients, {v['n_images']} images" for k, v in counts["held_out"].items()),
             _p_note("patient-clustered DeLong on the fold test sets", d_folds, word, alpha)]
    parts += [_p_note(f"patient-clustered DeLong on {name}", d, word, alpha, decided="held-out test on" in reason and name in reason)
              for name, d in d_tests.items()]
    return "; ".join(parts)


def _protocol(cfg, ds: PreparedDataset, folds: list[Fold], tests: dict, n_train: float, n_test: float) -> dict:
    import sklearn
    import torch

    return {
        "config": cfg.to_dict(), "classes": ds.classes, "positive_class": ds.classes[1],
        "prepared_size": ds.size,
        "folds": [f.to_dict(ds) for f in folds],  # every fold of every repetition
        "held_out_sets": {k: {"n_images": int(len(y)), "n_patients": int(len(set(p)))} for k, (y, p) in tests.items()},
        "repeats": cfg.repeats, "seeds": cfg.seeds, "n_folds": cfg.folds,
        "ttest_n_train": n_train, "ttest_n_test": n_test,
        "primary_test": "corrected repeated k-fold t-test (Nadeau & Bengio 2003; Bouckaert & Frank 2004) of the fold AUC "
                        "differences, seeds averaged within a fold; n_train = training patients per fold before --real-fraction",
        "multiplicity": "Holm across all comparisons of the experiment",
        "secondary_tests": "patient-clustered DeLong (Obuchowski 1997) on the fold test sets and each held-out set",
        "equivalence": f"TOST: {100 * (1 - 2 * cfg.alpha):g}% CI of the difference within +-{cfg.margin:g} AUC",
        "alpha": cfg.alpha, "margin": cfg.margin,
        "bootstrap": f"patient-level percentile bootstrap, {cfg.n_boot} resamples, {100 * (1 - cfg.alpha):g}% CI",
        "threshold": ("per unit: the Youden's J optimum on the classifier's scores for a patient-grouped, stratified 15% "
                      "inner split of the fold's training patients, which the classifier does not train on (0.5, with a "
                      "note, when a class has fewer than 2 patients there); fold test sets: the fold's seeds' thresholds "
                      "averaged; held-out sets: the mean over all units (arms.<label>.held_out_threshold)"),
        "secondary_metrics": "sensitivity at 90% and 95% specificity, PR-AUC (average precision, as scikit-learn's "
                             "average_precision_score), Brier score, expected calibration error (10 equal-width bins); "
                             "threshold-free, each with the patient bootstrap CI",
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__},
    }


def plain_language(results: dict) -> str:
    """One paragraph per arm: the verdict and the numbers that decided it."""
    lines = []
    real = results["arms"]["real"]["fold_tests"]["auc"]
    lines.append(f"real: AUC on the fold test sets {real['value']:.3f} (95% CI {real['lo']:.3f}-{real['hi']:.3f})")
    for label, c in results["comparisons"].items():
        a = results["arms"][label]["fold_tests"]["auc"]
        lines.append(f"{label}: {c['verdict'].upper()} compared with real. AUC on the fold test sets {a['value']:.3f} "
                     f"(95% CI {a['lo']:.3f}-{a['hi']:.3f}); {c['because']}.")
    return "\n".join(lines) + "\n"


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _mean_fold_roc(y: np.ndarray, score: np.ndarray, fold_of: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Vertical average of the per-fold ROC curves on a common FPR grid, and the mean fold AUC."""
    from sklearn.metrics import roc_curve

    grid = np.linspace(0, 1, 201)
    tprs, aucs = [], []
    for f in np.unique(fold_of):
        m = fold_of == f
        fpr, tpr, _ = roc_curve(y[m], score[m])
        tprs.append(np.interp(grid, fpr, tpr))
        aucs.append(stats.auc_score(y[m], score[m]))
    tpr = np.mean(tprs, axis=0)
    tpr[0] = 0.0
    return grid, tpr, float(np.mean(aucs))


def plot_roc(results: dict) -> bytes:
    """ROC curves of every arm, one panel per evaluation set (pooled OOF and each held-out set)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    truth, scores = results["_truth"], results["_scores"]
    sets = list(truth)
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 4), squeeze=False)
    for ax, name in zip(axes[0], sets):
        for label, sc in scores.items():
            if name == "oof":  # each fold has its own models: average the per-fold curves vertically
                fpr, tpr, auc = _mean_fold_roc(truth[name], sc[name], results["_fold_of"])
            else:
                fpr, tpr, _ = roc_curve(truth[name], sc[name])
                auc = roc_auc_score(truth[name], sc[name])
            ax.plot(fpr, tpr, label=f"{label} ({auc:.3f})")
        ax.plot([0, 1], [0, 1], ls=":", c="gray")
        ax.set(title="fold test sets (mean of per-fold ROC)" if name == "oof" else f"held-out: {name}",
               xlabel="1 - specificity", ylabel="sensitivity")
        ax.legend(fontsize=7, loc="lower right")
    out = _png(fig)
    plt.close(fig)
    return out


def plot_ci(results: dict) -> bytes:
    """Every metric of every arm with its 95% CI (fold test sets and held-out sets)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(results["arms"])
    sets = ["fold_tests", *results["protocol"]["held_out_sets"]]
    fig, axes = plt.subplots(len(sets), len(stats.METRICS), figsize=(2.6 * len(stats.METRICS), 0.5 * len(arms) * len(sets) + 1.5), squeeze=False)
    for i, s in enumerate(sets):
        for j, m in enumerate(stats.METRICS):
            ax = axes[i][j]
            for k, a in enumerate(arms):
                r = results["arms"][a]["fold_tests"][m] if s == "fold_tests" else results["arms"][a]["test_sets"][s][m]
                ax.errorbar([r["value"]], [k], xerr=[[r["value"] - r["lo"]], [r["hi"] - r["value"]]], fmt="o", capsize=3)
            ax.set_yticks(range(len(arms)), arms if j == 0 else [""] * len(arms), fontsize=7)
            ax.set_title(f"{m} ({'fold tests' if s == 'fold_tests' else s})", fontsize=8)
            ax.invert_yaxis()
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def plot_calibration(results: dict, bins: int = 10) -> bytes:
    """Reliability diagram of every arm (observed positive fraction against mean score in 10 equal-width
    score bins), one panel per evaluation set; the legend gives each arm's ECE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth, scores = results["_truth"], results["_scores"]
    sets = list(truth)
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 4), squeeze=False)
    for ax, name in zip(axes[0], sets):
        y = np.asarray(truth[name], np.float64)
        for label, sc in scores.items():
            s = np.asarray(sc[name], np.float64)
            idx = np.clip((s * bins).astype(np.int64), 0, bins - 1)
            n = np.bincount(idx, minlength=bins)
            ok = n > 0
            mean_s = np.bincount(idx, s, minlength=bins)[ok] / n[ok]
            frac = np.bincount(idx, y, minlength=bins)[ok] / n[ok]
            ax.plot(mean_s, frac, marker="o", ms=3, label=f"{label} (ECE {stats.expected_calibration_error(y, s, bins):.3f})")
        ax.plot([0, 1], [0, 1], ls=":", c="gray")
        ax.set(title="fold test sets (pooled)" if name == "oof" else f"held-out: {name}", xlim=(0, 1), ylim=(0, 1),
               xlabel="mean predicted probability", ylabel="observed positive fraction")
        ax.legend(fontsize=7, loc="upper left")
    out = _png(fig)
    plt.close(fig)
    return out


def _finite(obj):
    """NaN/inf -> None, recursively, so results.json is strict JSON."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_outputs(results: dict, out: Path) -> None:
    """results.json, verdicts.txt, roc.png, ci.png and calibration.png in ``out`` (each written atomically)."""
    atomic_write_bytes(out / "roc.png", plot_roc(results))
    atomic_write_bytes(out / "ci.png", plot_ci(results))
    atomic_write_bytes(out / "calibration.png", plot_calibration(results))
    text = plain_language(results)
    results["verdicts_text"] = text
    atomic_write_text(out / "verdicts.txt", text)
    atomic_write_json(out / "results.json", _finite({k: v for k, v in results.items() if not k.startswith("_")}))
