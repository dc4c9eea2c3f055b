"""The experiment's charts: ROC curves, metrics with CIs, reliability diagrams, learning curves.

Each function takes the in-memory results of :func:`xraygan.experiments.summary.summarize` (with
its private ``_scores``/``_truth``/``_fold_of`` entries) and returns PNG bytes.
"""
from __future__ import annotations

import numpy as np

from xraygan.experiments import stats


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


def plot_ci(results: dict, ncols: int = 6) -> bytes:
    """Every metric of every arm with its 95% CI (fold test sets and held-out sets): the thresholded
    metrics and the threshold-free secondary ones (sensitivity at 90/95% specificity, PR-AUC, Brier,
    ECE), one panel per (set, metric), ``ncols`` panels a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(results["arms"])
    sets = ["fold_tests", *results["protocol"]["held_out_sets"]]
    first = results["arms"][arms[0]]["fold_tests"]
    metrics = [m for m in first if isinstance(first[m], dict) and "value" in first[m]]
    panels = [(s, m) for s in sets for m in metrics]
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, nrows * (0.35 * len(arms) + 1.2)), squeeze=False)
    for ax, (s, m) in zip(axes.ravel(), panels):
        for k, a in enumerate(arms):
            r = results["arms"][a]["fold_tests"][m] if s == "fold_tests" else results["arms"][a]["test_sets"][s][m]
            if r["value"] is None or not np.isfinite(r["value"]):
                continue
            lo = r["lo"] if r["lo"] is not None and np.isfinite(r["lo"]) else r["value"]
            hi = r["hi"] if r["hi"] is not None and np.isfinite(r["hi"]) else r["value"]
            # a percentile CI need not contain the full-sample value (biased metrics such as ECE): clip at 0
            ax.errorbar([r["value"]], [k], xerr=[[max(0.0, r["value"] - lo)], [max(0.0, hi - r["value"])]], fmt="o", capsize=3)
        ax.set_yticks(range(len(arms)), arms if ax in axes[:, 0] else [""] * len(arms), fontsize=7)
        ax.set_title(f"{m} ({'fold tests' if s == 'fold_tests' else s})", fontsize=8)
        ax.set_ylim(len(arms) - 0.5, -0.5)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
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


def plot_confusion(results: dict) -> bytes:
    """Row-normalised confusion matrix of every arm on the fold test sets (more than two classes):
    true class per row, argmax prediction per column, the rate and its patient-bootstrap 95% CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in results["arms"] if "confusion" in results["arms"][a]["fold_tests"]]
    ncols = min(4, len(arms))
    nrows = -(-len(arms) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.ravel()[len(arms):]:
        ax.axis("off")
    for ax, a in zip(axes.ravel(), arms):
        cm = results["arms"][a]["fold_tests"]["confusion"]
        rate, lo, hi, classes = np.asarray(cm["rate"], float), np.asarray(cm["lo"], float), np.asarray(cm["hi"], float), cm["classes"]
        ax.imshow(rate, vmin=0, vmax=1, cmap="Blues")
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{rate[i, j]:.2f}\n[{lo[i, j]:.2f}, {hi[i, j]:.2f}]", ha="center", va="center", fontsize=6,
                        color="white" if rate[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(classes)), classes, fontsize=7, rotation=30)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set(title=a, xlabel="predicted", ylabel="true")
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def plot_learning_curve(results: dict) -> bytes:
    """Fold-test AUC (macro with more than two classes) with its 95% CI against the mean number of
    real training patients per fold, one line per arm (log x axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for base, by in results["learning_curve"].items():
        pts = sorted(by.values(), key=lambda p: p["real_patients"])
        x = np.array([p["real_patients"] for p in pts], float)
        y = np.array([p["value"] for p in pts], float)
        lo = np.array([p["lo"] if p["lo"] is not None else np.nan for p in pts], float)
        hi = np.array([p["hi"] if p["hi"] is not None else np.nan for p in pts], float)
        ax.errorbar(x, y, yerr=[np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)], marker="o", ms=3, capsize=3, label=base)
    ax.set_xscale("log")
    ticks = sorted({round(p["real_patients"]) for by in results["learning_curve"].values() for p in by.values()})
    ax.set_xticks(ticks, [str(t) for t in ticks])  # the measured patient counts, not 3x10^1 beside 4x10^1
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="real training patients per fold", ylabel="AUC on the fold test sets", title="learning curve (95% CI)")
    ax.legend(fontsize=7)
    out = _png(fig)
    plt.close(fig)
    return out
