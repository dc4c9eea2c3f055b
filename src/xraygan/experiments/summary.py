"""From unit records to results: metrics with patient-level bootstrap CIs, calibrated tests, verdicts, charts.

For every arm:
- per unit (repeat x fold x seed): every metric on the fold's test patients;
- the fold test sets: in each repetition each train+val image is scored by the classifiers (one per
  seed, scores averaged) of the fold that held it out; each metric is the mean of the per-fold
  metrics over every fold of every repetition, with a patient-level bootstrap CI (patients
  resampled within each fold; the repetitions' folds are resampled independently, so with
  ``--repeats`` > 1 this CI is somewhat narrow -- the verdicts do not use it);
- each held-out test set: scores averaged over all repeat x fold x seed classifiers (an ensemble).

The comparisons (every arm against ``real``, and the synthetic arms against ``real+classic``), their
calibrated tests, Holm's adjustment, the oracle gating and the verdicts: :mod:`xraygan.experiments.compare`.
Charts: :mod:`xraygan.experiments.plots`.

This module imports nothing from :mod:`xraygan.experiments.runner`: the runner loads the unit
records and passes them in.
"""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from xraygan.data.dataset import PreparedDataset
from xraygan.experiments import stats
from xraygan.experiments.folds import Fold
from xraygan.experiments.compare import Context, compare_all
from xraygan.experiments.plots import plot_calibration, plot_ci, plot_confusion, plot_roc
from xraygan.experiments.stats_multiclass import bootstrap_multiclass, multiclass_metrics
from xraygan.utils.fs import atomic_write_bytes, atomic_write_json, atomic_write_text
from xraygan.report.held_out import held_out_auc, held_out_names, internal_vs_external


RESULTS_FORMAT_VERSION = 3  # 2: repeats, seed-averaged corrected t-test, clustered DeLong, Holm, four verdict words;
# 3: comparisons against real+classic too (keys "<label> vs real+classic"), control arms and oracle gating,
#    paired tests of the secondary metrics (comparisons.<key>.secondary_tests)


def _arm_scores(units: list[dict], oof_rows: np.ndarray, seeds: int, repeats: int) -> tuple[np.ndarray, dict]:
    """OOF scores per repetition (averaged over seeds; shape (repeats, rows)) and ensemble scores per test set."""
    pos = {int(r): i for i, r in enumerate(oof_rows)}
    extra = np.shape(units[0]["fold_test"]["score"])[1:] if units else ()  # (classes,) with more than two classes
    oof = np.zeros((repeats, seeds, len(oof_rows), *extra))
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
        thr[u.get("repeat", 0), u["seed"], [pos[r] for r in u["fold_test"]["rows"]]] = u.get("threshold") or 0.5
    return thr.mean(axis=1), float(np.mean([u.get("threshold") or 0.5 for u in units])) if units else 0.5


def _unit_summary(u: dict, ds: PreparedDataset, cfg) -> dict:
    """A unit's key, counts, steps and every metric on its fold's test patients."""
    rows = np.asarray(u["fold_test"]["rows"])
    score = np.asarray(u["fold_test"]["score"])
    m = (multiclass_metrics(ds.labels[rows], score, ds.classes) if score.ndim == 2 else
         stats.binary_metrics(ds.labels[rows], score, u.get("threshold", 0.5)))
    return {"repeat": u.get("repeat", 0), "fold": u["fold"], "seed": u["seed"],
            "threshold": u.get("threshold", 0.5),
            "threshold_note": u.get("threshold_note", None if "threshold" in u else "threshold 0.5: unit from before thresholds"),
            "real_fraction": u.get("real_fraction", cfg.real_fraction), "n_real": u["n_real"],
            "n_synthetic": u["n_synthetic"], "classifier_steps": u.get("classifier_steps"),
            "wall_s": u["wall_s"], "fold_test": m}


def n_train_n_test(ds: PreparedDataset, folds: list[Fold]) -> tuple[float, float]:
    """The Nadeau-Bengio n_train and n_test: *patients* per fold, averaged over every fold of every repetition.

    n_train counts the fold's training patients *before* ``--real-fraction`` subsampling (kept plus
    dropped), on purpose: the factor n_test/n_train stands in for the correlation between fold
    differences that comes from folds sharing training data. Simulated under the null
    (``benchmarks/calibration.py``, binormal scores with patient effects), the subsampled count
    made the test far too conservative -- type-I error 0.001 instead of 0.05 at fraction 0.1. That
    the subsampled folds share fewer training patients is what :func:`train_overlap` measures.
    """
    pats = ds.patients
    n_train = float(np.mean([len(set(pats[np.concatenate([f.train, f.dropped])])) for f in folds]))
    n_test = float(np.mean([len(set(pats[f.test])) for f in folds]))
    return n_train, n_test


def train_overlap(ds: PreparedDataset, partitions: list[list[Fold]]) -> float:
    """How much of their training patients the folds share, relative to the full partition (omega).

    Per repetition, the mean over pairs of folds of |P_i & P_j| / sqrt(|P_i| |P_j|) for the patients
    the folds train on (``Fold.train``), divided by the same for the partition's training patients
    before ``--real-fraction`` (``train`` plus ``dropped``); averaged over repetitions. 1 at fraction 1;
    about f at fraction f, since each fold keeps its own random f of its patients. It scales the
    Nadeau-Bengio correlation of :func:`xraygan.experiments.stats_tests.corrected_repeated_cv_ttest`.
    """
    pats = ds.patients
    ratios = []
    for part in partitions:
        full = pairwise_overlap([set(pats[np.concatenate([f.train, f.dropped])]) for f in part])
        if full > 0:
            ratios.append(min(1.0, pairwise_overlap([set(pats[f.train]) for f in part]) / full))
    return float(np.mean(ratios)) if ratios else 1.0


def pairwise_overlap(sets: list[set]) -> float:
    """Mean over pairs of sets of |A & B| / sqrt(|A| |B|) (0 with fewer than two non-empty sets)."""
    pairs = [len(a & b) / np.sqrt(len(a) * len(b)) for i, a in enumerate(sets) for b in sets[i + 1:] if a and b]
    return float(np.mean(pairs)) if pairs else 0.0


def summarize(cfg, ds: PreparedDataset, partitions: list[list[Fold]], labels: list[tuple], data: dict,
              units: dict[str, list[dict]], gans: list[dict] | None = None, curve: dict | None = None) -> dict:
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
    multi = len(ds.classes) > 2

    def boot(y, score, pats, seed, threshold, strata=None):
        if multi:
            return bootstrap_multiclass(y, score, pats, ds.classes, n_boot=cfg.n_boot, seed=seed, alpha=cfg.alpha, strata=strata)
        return stats.bootstrap_metrics(y, score, pats, n_boot=cfg.n_boot, seed=seed, alpha=cfg.alpha, threshold=threshold, strata=strata)

    for label, arm, ratio in labels:
        arm_units = units[label]
        oof, ens = _arm_scores(arm_units, oof_rows, cfg.seeds, repeats)
        oof_thr, ens_thr = _arm_thresholds(arm_units, oof_rows, cfg.seeds, repeats)
        oof = oof.reshape(repeats * len(oof_rows), *oof.shape[2:])  # repetitions stacked (see _truth, _fold_of)
        scores[label] = {"oof": oof, **ens}
        per_unit = [_unit_summary(u, ds, cfg) for u in arm_units]
        fold_aucs = [pu["fold_test"]["auc"] for pu in per_unit]
        arms[label] = {
            "arm": arm, "ratio": ratio, "units": per_unit,
            "fold_auc_mean": float(np.nanmean(fold_aucs)), "fold_auc_sd": float(np.nanstd(fold_aucs, ddof=1)) if len(fold_aucs) > 1 else 0.0,
            "fold_tests": boot(np.tile(y_rows, repeats), oof, np.tile(p_rows, repeats), seed=1, threshold=oof_thr.ravel(),
                               strata=(fold_of + cfg.folds * np.arange(repeats)[:, None]).ravel()),
            "test_sets": {name: boot(y, ens[name], p, seed=2, threshold=ens_thr) for name, (y, p) in tests.items()},
            "held_out_threshold": ens_thr,
            "wall_s": float(sum(u["wall_s"] for u in arm_units)),
            "classifier_steps": [u.get("classifier_steps") for u in arm_units],  # per unit, (repeat, fold, seed) order
        }
    n_train, n_test = n_train_n_test(ds, folds)
    counts = {"n_patients": int(len(set(p_rows))), "n_images": int(len(oof_rows)),
              "held_out": {k: {"n_patients": int(len(set(p))), "n_images": int(len(y))} for k, (y, p) in tests.items()}}
    ctx = Context(cfg, ds, partitions, oof_rows, tests, arms, scores, n_train, n_test, counts,
                  strata=(fold_of + cfg.folds * np.arange(repeats)[:, None]).ravel(),
                  train_overlap=train_overlap(ds, partitions))
    comparisons = compare_all(ctx, labels)
    extra = {}
    if curve:  # several real fractions (issue 14)
        from xraygan.experiments.curves import learning_curve

        extra["learning_curve"], extra["data_equivalence"] = learning_curve(arms, curve, n_boot=cfg.n_boot)
    return {
        "format": "xraygan-experiment-results", "format_version": RESULTS_FORMAT_VERSION,
        "protocol": _protocol(cfg, ds, folds, tests, n_train, n_test),
        "gans": gans or [], "arms": arms, "comparisons": comparisons, **extra,
        "_scores": scores, "_truth": {"oof": np.tile(y_rows, repeats), **{k: y for k, (y, _) in tests.items()}},
        "_fold_of": (fold_of + cfg.folds * np.arange(repeats)[:, None]).ravel(),
    }


def _protocol(cfg, ds: PreparedDataset, folds: list[Fold], tests: dict, n_train: float, n_test: float) -> dict:
    import sklearn
    import torch

    return {
        "config": cfg.to_dict(), "classes": ds.classes, "positive_class": ds.classes[1] if len(ds.classes) == 2 else None,
        "prepared_size": ds.size,
        "folds": [f.to_dict(ds) for f in folds],  # every fold of every repetition
        "held_out_sets": {k: {"n_images": int(len(y)), "n_patients": int(len(set(p)))} for k, (y, p) in tests.items()},
        "repeats": cfg.repeats, "seeds": cfg.seeds, "n_folds": cfg.folds,
        "ttest_n_train": n_train, "ttest_n_test": n_test,
        "primary_test": "corrected repeated k-fold t-test (Nadeau & Bengio 2003; Bouckaert & Frank 2004) of the fold AUC "
                        "differences, seeds averaged within a fold; n_train = training patients per fold before --real-fraction",
        "multiplicity": "Holm across all comparisons of the experiment (AUC); the secondary-metric tests are a second Holm family",
        "comparisons": "every arm against real; with real+classic, every arm with synthetic images against real+classic too",
        "controls": list(getattr(cfg, "controls", ())),
        "oracle_gating": "an arm with synthetic images is 'inconclusive' when the oracle control (same ratio) ran and was not "
                         "judged 'improves' against real; 'not available' where nothing is held back (real fraction 1)",
        "tested_secondary_metrics": "balanced accuracy, sensitivity and specificity at the unit's threshold: the same "
                                    "corrected repeated-CV t-test, Holm-adjusted across all of them; named in the verdict text "
                                    "when significant",
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
    lines = [internal_vs_external(results)] if held_out_names(results) else []
    for label, arm in results["arms"].items():
        if arm["arm"] == "real":  # one per real fraction
            real = arm["fold_tests"]["auc"]
            lines.append(f"{label}: AUC on the fold test sets {real['value']:.3f} (95% CI {real['lo']:.3f}-{real['hi']:.3f})"
                         + held_out_auc(arm))
    for label, by in (results.get("data_equivalence") or {}).items():
        for f, e in by.items():
            if e["real_patients_equivalent"]:
                lines.append(f"{label} at real fraction {f}: as good as real-only training on {e['real_patients_equivalent']:.0f} "
                             f"real patients (95% interval {e['lo']:.0f}-{e['hi']:.0f}; it used {e['real_patients']:.0f})")
            else:
                lines.append(f"{label} at real fraction {f}: its AUC lies {e['beyond']} the real arm's learning curve, so no "
                             f"equivalent number of real patients is read off it (it used {e['real_patients']:.0f})")
    for c in results["comparisons"].values():
        label = c.get("label")
        a = results["arms"][label]["fold_tests"]["auc"]
        lines.append(f"{label}: {c['verdict'].upper()} compared with {c['against']}. AUC on the fold test sets {a['value']:.3f} "
                     f"(95% CI {a['lo']:.3f}-{a['hi']:.3f}){held_out_auc(results['arms'][label])}; {c['because']}.")
    return "\n".join(lines) + "\n"



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
    if len(results["protocol"]["classes"]) == 2:  # ROC curves and reliability diagrams of the positive class
        atomic_write_bytes(out / "roc.png", plot_roc(results))
        atomic_write_bytes(out / "calibration.png", plot_calibration(results))
    else:
        atomic_write_bytes(out / "confusion.png", plot_confusion(results))
    atomic_write_bytes(out / "ci.png", plot_ci(results))
    if results.get("learning_curve"):
        from xraygan.experiments.plots import plot_learning_curve

        atomic_write_bytes(out / "learning_curve.png", plot_learning_curve(results))
    text = plain_language(results)
    results["verdicts_text"] = text
    atomic_write_text(out / "verdicts.txt", text)
    atomic_write_json(out / "results.json", _finite({k: v for k, v in results.items() if not k.startswith("_")}))
