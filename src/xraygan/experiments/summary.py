"""From unit files to results: metrics with patient-level bootstrap CIs, paired tests, verdicts, charts.

For every arm:
- per fold x seed: every metric on the fold's test patients;
- the fold test sets: each train+val image is scored by the classifiers (one per seed, scores
  averaged) of the fold that held it out; each metric is the mean of the per-fold metrics, with a
  patient-level bootstrap CI (patients resampled within each fold);
- each held-out test set: scores averaged over all fold x seed classifiers (an ensemble).

Every arm against ``real``: corrected resampled t-test of the fold AUC differences (Nadeau &
Bengio 2003; n_test/n_train from the fold partition), paired DeLong on the fold test sets (per
fold, seed-averaged scores, combined over the disjoint folds) and on each held-out set, and the verdict of :func:`xraygan.experiments.stats.verdict`.
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


def _load_units(out: Path, folds: list[Fold], seeds: int, label: str) -> list[dict]:
    from xraygan.experiments.runner import _unit_name

    return [json.loads((out / "units" / f"{_unit_name(f.index, s, label)}.json").read_text())
            for f in folds for s in range(seeds)]


def _arm_scores(ds: PreparedDataset, units: list[dict], oof_rows: np.ndarray, seeds: int) -> tuple[np.ndarray, dict]:
    """Pooled OOF scores (averaged over seeds) over ``oof_rows`` and ensemble scores per test set."""
    pos = {int(r): i for i, r in enumerate(oof_rows)}
    oof = np.zeros((seeds, len(oof_rows)))
    tests: dict[str, list] = {}
    for u in units:
        idx = [pos[r] for r in u["fold_test"]["rows"]]
        oof[u["seed"], idx] = u["fold_test"]["score"]
        for name, t in u["test_sets"].items():
            tests.setdefault(name, []).append(t["score"])
    return oof.mean(axis=0), {k: np.mean(v, axis=0) for k, v in tests.items()}


def summarize(cfg, ds: PreparedDataset, folds: list[Fold], labels: list[tuple], data: dict, out: Path) -> dict:
    """Compute every number of results.json from the unit files of ``cfg``."""
    oof_rows = ds.indices(split=("train", "val"))
    y_oof, p_oof = ds.labels[oof_rows], ds.patients[oof_rows]
    tests = {name: (y, p) for name, (_, y, p) in data["tests"].items()}
    fold_of = np.empty(len(oof_rows), np.int64)
    where = {int(r): i for i, r in enumerate(oof_rows)}
    for f in folds:
        fold_of[[where[int(r)] for r in f.test]] = f.index
    arms, scores = {}, {}
    for label, arm, ratio in labels:
        units = _load_units(out, folds, cfg.seeds, label)
        oof, ens = _arm_scores(ds, units, oof_rows, cfg.seeds)
        scores[label] = {"oof": oof, **ens}
        per_unit = []
        for u in units:
            rows = np.asarray(u["fold_test"]["rows"])
            m = stats.binary_metrics(ds.labels[rows], np.asarray(u["fold_test"]["score"]))
            per_unit.append({"fold": u["fold"], "seed": u["seed"], "n_real": u["n_real"], "n_synthetic": u["n_synthetic"],
                             "classifier_steps": u.get("classifier_steps"), "wall_s": u["wall_s"], "fold_test": m})
        fold_aucs = [pu["fold_test"]["auc"] for pu in per_unit]
        arms[label] = {
            "arm": arm, "ratio": ratio, "units": per_unit,
            "fold_auc_mean": float(np.nanmean(fold_aucs)), "fold_auc_sd": float(np.nanstd(fold_aucs, ddof=1)) if len(fold_aucs) > 1 else 0.0,
            "fold_tests": stats.bootstrap_metrics(y_oof, oof, p_oof, n_boot=cfg.n_boot, seed=1, alpha=cfg.alpha, strata=fold_of),
            "test_sets": {name: stats.bootstrap_metrics(y, ens[name], p, n_boot=cfg.n_boot, seed=2, alpha=cfg.alpha)
                          for name, (y, p) in tests.items()},
            "wall_s": float(sum(u["wall_s"] for u in units)),
        }
    comparisons = {}
    n_train = float(np.mean([len(f.train) + len(f.dropped) for f in folds]))
    n_test = float(np.mean([len(f.test) for f in folds]))
    base = arms["real"]["units"]
    for label, _, _ in labels[1:]:
        diffs = [u["fold_test"]["auc"] - b["fold_test"]["auc"] for u, b in zip(arms[label]["units"], base)]
        tt = stats.corrected_ttest(diffs, n_train=n_train, n_test=n_test, alpha=cfg.alpha)
        d_oof = stats.delong_stratified(_fold_strata(ds, folds, oof_rows, scores["real"]["oof"], scores[label]["oof"]), alpha=cfg.alpha)
        d_tests = {name: stats.delong_paired(y, scores["real"][name], scores[label][name], alpha=cfg.alpha)
                   for name, (y, _) in tests.items() if min(np.bincount(y, minlength=2)) >= 2}
        comparisons[label] = {
            "fold_auc_differences": diffs, "corrected_ttest": tt.to_dict(), "delong_fold_test_sets": d_oof.to_dict(),
            "delong_test_sets": {k: v.to_dict() for k, v in d_tests.items()},
            **stats.verdict(tt, d_oof, d_tests, alpha=cfg.alpha),
        }
    return {
        "format": "xraygan-experiment-results", "format_version": 1,
        "protocol": _protocol(cfg, ds, folds, tests, n_train, n_test),
        "gans": _gan_records(out), "arms": arms, "comparisons": comparisons,
        "_scores": scores, "_truth": {"oof": y_oof, **{k: y for k, (y, _) in tests.items()}}, "_fold_of": fold_of,
    }


def _fold_strata(ds: PreparedDataset, folds: list[Fold], oof_rows: np.ndarray, a: np.ndarray, b: np.ndarray) -> list:
    """(labels, scores of a, scores of b) on each fold's test rows; seed-averaged OOF scores."""
    pos = {int(r): i for i, r in enumerate(oof_rows)}
    out = []
    for f in folds:
        idx = np.array([pos[int(r)] for r in f.test])
        out.append((ds.labels[f.test], a[idx], b[idx]))
    return out


def _gan_records(out: Path) -> list[dict]:
    """Fold GANs of this experiment (steps, training wall time) from their ``.done`` markers."""
    return [json.loads(p.read_text()) for p in sorted((out / "gans").glob("fold*/*.done"))]


def _protocol(cfg, ds: PreparedDataset, folds: list[Fold], tests: dict, n_train: float, n_test: float) -> dict:
    import sklearn
    import torch

    return {
        "config": cfg.to_dict(), "classes": ds.classes, "positive_class": ds.classes[1],
        "prepared_size": ds.size,
        "folds": [f.to_dict(ds) for f in folds],
        "held_out_sets": {k: {"n_images": int(len(y)), "n_patients": int(len(set(p)))} for k, (y, p) in tests.items()},
        "ttest_n_train": n_train, "ttest_n_test": n_test,
        "bootstrap": f"patient-level percentile bootstrap, {cfg.n_boot} resamples, {100 * (1 - cfg.alpha):g}% CI",
        "threshold": 0.5,
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
    """results.json, verdicts.txt, roc.png and ci.png in ``out`` (each written atomically)."""
    atomic_write_bytes(out / "roc.png", plot_roc(results))
    atomic_write_bytes(out / "ci.png", plot_ci(results))
    text = plain_language(results)
    results["verdicts_text"] = text
    atomic_write_text(out / "verdicts.txt", text)
    atomic_write_json(out / "results.json", _finite({k: v for k, v in results.items() if not k.startswith("_")}))
