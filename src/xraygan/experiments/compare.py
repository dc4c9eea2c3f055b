"""Comparisons of the experiment's arms and their verdicts (issue 13).

Which pairs are compared (:func:`comparison_pairs`): every arm against ``real`` (key: the arm's
label); when ``real+classic`` runs, every arm with synthetic images (``real+synthetic``,
``real+classic+synthetic``, ``synthetic``) against it as well (key ``<label> vs real+classic``).

Each comparison: the corrected repeated-CV t-test of the fold AUC differences (seeds averaged
within a fold), Holm-adjusted across *all* comparisons of the experiment; the same paired test of
balanced accuracy, sensitivity and specificity at the unit's threshold (Holm-adjusted across all
those secondary tests of the experiment, a family of its own); the patient-clustered DeLong test on
the fold test sets and every held-out set (with more than two classes: the paired patient bootstrap of
the macro-AUC difference, :func:`stats_multiclass.paired_bootstrap_delta`; the primary test reads the
units' macro one-vs-rest AUCs); TOST; and :func:`stats.decide`'s verdict.

Oracle gating: when the ``oracle`` control ran (``--controls oracle``, where something is held
back), the verdict of every arm with synthetic images is gated by the oracle comparison at the same
ratio (the largest ratio for ``synthetic``): an oracle not judged "improves" against ``real`` makes
the verdict "inconclusive" -- the experiment could not detect a gain of the size a perfect generator
gives. Where the oracle could not run (nothing held back) the gate is "not available".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xraygan.data.dataset import PreparedDataset
from xraygan.experiments import stats
from xraygan.experiments.folds import Fold
from xraygan.experiments.stats_multiclass import paired_bootstrap_delta
from xraygan.experiments.stats_auc import diff_result

SYNTHETIC_ARMS = ("real+synthetic", "real+classic+synthetic", "synthetic")
TESTED_SECONDARY = ("balanced_accuracy", "sensitivity", "specificity")  # paired-tested like AUC (issue 13)


@dataclass
class Context:
    """What a comparison reads: the experiment's config, data, folds, arm summaries and scores."""

    cfg: object
    ds: PreparedDataset
    partitions: list
    oof_rows: np.ndarray
    tests: dict  # held-out set -> (labels, patients)
    arms: dict
    scores: dict
    n_train: float
    n_test: float
    counts: dict
    strata: np.ndarray | None = None  # per stacked OOF row: (repeat, fold) index
    train_overlap: float = 1.0  # summary.train_overlap: shared training patients, relative to fraction 1

    @property
    def multi(self) -> bool:
        return len(self.ds.classes) > 2


def fraction_suffix(label: str) -> str:
    """`` @0.1`` of ``real+synthetic x1 @0.1`` (several real fractions), else ''."""
    _, sep, frac = label.rpartition(" @")
    return sep + frac if sep else ""


def comparison_pairs(labels: list[tuple]) -> list[tuple[str, str, str]]:
    """(key, label, against) of every comparison, in results order; with several real fractions
    (labels ``<arm> @<F>``) the arms of one fraction are compared with each other."""
    names = [lab for lab, _, _ in labels]
    pairs = [(lab, lab, "real" + fraction_suffix(lab)) for lab, arm, _ in labels if arm != "real"]
    pairs += [(f"{lab} vs real+classic", lab, "real+classic" + fraction_suffix(lab)) for lab, arm, _ in labels
              if arm in SYNTHETIC_ARMS and "real+classic" + fraction_suffix(lab) in names]
    return pairs


def _compare(ctx: Context, label: str, against: str) -> dict:
    """The tests of one comparison (label - against), before Holm and the verdict."""
    cfg, repeats = ctx.cfg, len(ctx.partitions)
    base, other = ctx.arms[against]["units"], ctx.arms[label]["units"]
    diffs = _auc_differences(base, other, repeats, cfg.folds, cfg.seeds)
    tt = stats.corrected_repeated_cv_ttest(diffs, n_train=ctx.n_train, n_test=ctx.n_test, alpha=cfg.alpha,
                                           train_overlap=ctx.train_overlap)
    secondary = {}
    for m in [m for m in TESTED_SECONDARY if other and m in other[0]["fold_test"]]:
        t2 = _safe(stats.corrected_repeated_cv_ttest, _auc_differences(base, other, repeats, cfg.folds, cfg.seeds, m),
                   n_train=ctx.n_train, n_test=ctx.n_test, alpha=cfg.alpha, train_overlap=ctx.train_overlap)
        if t2 is not None:
            secondary[m] = {"mean": t2.mean, "se": t2.se, "df": t2.df, "lo": t2.lo, "hi": t2.hi, "p": t2.p}
    sa, sb = ctx.scores[against], ctx.scores[label]
    if ctx.multi:  # DeLong is binary: a paired patient bootstrap of the macro-AUC difference instead
        rows = np.tile(ctx.oof_rows, repeats)
        d_folds = _safe(paired_bootstrap_delta, ctx.ds.labels[rows], sa["oof"], sb["oof"], ctx.ds.patients[rows],
                        n_boot=cfg.n_boot, seed=3, alpha=cfg.alpha, strata=ctx.strata)
        d_all = {name: _safe(paired_bootstrap_delta, y, sa[name], sb[name], p, n_boot=cfg.n_boot, seed=4, alpha=cfg.alpha)
                 for name, (y, p) in ctx.tests.items()}
    else:
        d_folds = _fold_test_delong(ctx.ds, ctx.partitions, ctx.oof_rows, sa["oof"], sb["oof"], cfg.alpha)
        d_all = {name: _safe(stats.delong_clustered, y, sa[name], sb[name], p, alpha=cfg.alpha) for name, (y, p) in ctx.tests.items()}
    d_tests = {k: v for k, v in d_all.items() if v is not None}
    return {
        "label": label, "against": against, "fold_auc_differences": diffs.tolist(), "corrected_ttest": tt.to_dict(),
        "delong_fold_test_sets": d_folds.to_dict() if d_folds else None,
        "delong_test_sets": {k: v.to_dict() for k, v in d_tests.items()},
        "p_raw": tt.p, "minimum_detectable_effect": tt.mde, "secondary_tests": secondary, **ctx.counts,
        "_tt": tt, "_d_folds": d_folds, "_d_tests": d_tests, "_d_all": d_all,
    }


def compare_all(ctx: Context, labels: list[tuple]) -> dict:
    """Every comparison of the experiment with Holm-adjusted p-values, oracle gating and verdicts."""
    cfg = ctx.cfg
    comparisons = {key: _compare(ctx, label, against) for key, label, against in comparison_pairs(labels)}
    for key, p_adj in zip(comparisons, stats.holm([c["p_raw"] for c in comparisons.values()])):
        comparisons[key]["p_holm"] = float(p_adj)
    sec = [(c, m) for c in comparisons.values() for m in c["secondary_tests"]]
    for (c, m), p_adj in zip(sec, stats.holm([c["secondary_tests"][m]["p"] for c, m in sec])):
        c["secondary_tests"][m].update({"p_holm": float(p_adj), "n_tests": len(sec)})
    arm_of = {lab: (arm, ratio) for lab, arm, ratio in labels}
    oracle = {}  # ratio -> (detected, comparison) of the oracle control against real
    for c in comparisons.values():
        arm, ratio = arm_of[c["label"]]
        if arm == "oracle" and c["against"] == "real" + fraction_suffix(c["label"]):
            tt = c["_tt"]
            word, _ = stats.decide(tt.mean, c["p_holm"], tt.lo90, tt.hi90, margin=cfg.margin, alpha=cfg.alpha, held_out=c["_d_tests"])
            oracle[(fraction_suffix(c["label"]), ratio)] = (word == "improves", c)
    for c in comparisons.values():
        tt, d_folds, d_tests, d_all = c.pop("_tt"), c.pop("_d_folds"), c.pop("_d_tests"), c.pop("_d_all")
        suffix = fraction_suffix(c["label"])
        gate, detected, gate_note = _oracle_gate(cfg, *arm_of[c["label"]], {r: v for (s, r), v in oracle.items() if s == suffix})
        word, reason = stats.decide(tt.mean, c["p_holm"], tt.lo90, tt.hi90, margin=cfg.margin, alpha=cfg.alpha,
                                    held_out=d_tests, oracle_detected=detected)
        if detected is False:
            reason += f" ({gate_note})"
        c.update({"n_comparisons": len(comparisons), "verdict": word, "verdict_reason": reason, "oracle_gate": gate,
                  "alpha": cfg.alpha, "margin": cfg.margin,
                  "tost": stats.tost(tt.mean, tt.se, cfg.margin, df=tt.df, alpha=cfg.alpha).to_dict()})
        c["because"] = _because(word, reason, tt, c["p_holm"], len(comparisons), d_folds, d_all, c, cfg.alpha,
                                secondary=c["secondary_tests"], gate_note=gate_note if detected is not False else None,
                                held_out_test="paired patient bootstrap of macro-AUC" if ctx.multi else "patient-clustered DeLong")
    return comparisons


def _oracle_gate(cfg, arm: str, ratio: float | None, oracle: dict) -> tuple[str | None, bool | None, str | None]:
    """(gate, oracle detected or None for no gating, text) of an arm: only arms with synthetic images are gated."""
    if arm not in SYNTHETIC_ARMS:
        return None, None, None
    if "oracle" not in getattr(cfg, "controls", ()):
        return "not run", None, None
    if not oracle:
        return "not available", None, ("oracle control: not available (nothing held back at this real fraction, "
                                       "so whether the experiment could detect a gain is unknown)")
    key = ratio if ratio in oracle else max(oracle)
    detected, c = oracle[key]
    size = f"oracle x{key:g}: {c['corrected_ttest']['mean']:+.3f} AUC, Holm-adjusted p={c['p_holm']:.3g}"
    if detected:
        return "detected", True, f"oracle control detected ({size})"
    return "not detected", False, f"{size}; a real-data gain of that size went undetected"


def _safe(fn, *args, **kw):
    """A clustered DeLong result, or None where it is undefined (fewer than two patients of a class)."""
    try:
        return fn(*args, **kw)
    except ValueError:
        return None


def _auc_differences(base: list[dict], other: list[dict], repeats: int, n_folds: int, seeds: int,
                     metric: str = "auc") -> np.ndarray:
    """Paired fold differences of ``metric`` (other - base), shape (repeats, folds, seeds); the t-test averages the seeds."""
    d = np.full((repeats, n_folds, seeds), np.nan)
    key = lambda u: (u.get("repeat", 0), u["fold"], u["seed"])  # noqa: E731
    ref = {key(u): u["fold_test"][metric] for u in base}
    for u in other:
        a, b = u["fold_test"][metric], ref[key(u)]
        d[key(u)] = np.nan if a is None or b is None else a - b
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
    res = diff_result(float(np.mean([d.auc_a for d in per])), float(np.mean([d.auc_b for d in per])), se**2, alpha)
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


def _because(word: str, reason: str, tt, p_adj: float, m: int, d_folds, d_tests: dict, counts: dict, alpha: float,
             secondary: dict | None = None, gate_note: str | None = None, held_out_test: str = "patient-clustered DeLong") -> str:
    """The reason of the verdict and every number beside it, never a p-value that seems to contradict the word unexplained."""
    ci = 100 * (1 - alpha)
    what = "macro one-vs-rest AUC" if "macro" in held_out_test else "AUC"
    primary = (f"mean {what} difference over {tt.n_repeats} repeat(s) x {tt.n_folds} folds (seeds averaged within a fold) "
               f"{tt.mean:+.3f} ({ci:g}% CI {tt.lo:+.3f} to {tt.hi:+.3f}; corrected repeated-CV t-test p={tt.p:.3g}, "
               f"Holm-adjusted over {m} comparison(s) p={p_adj:.3g}")
    if tt.p < alpha <= p_adj:
        primary += "; the raw p is below alpha but not after Holm's adjustment for the experiment's comparisons"
    primary += ")"
    parts = [reason, primary,
             f"minimum detectable effect {tt.mde:.3f} AUC (80% power); {counts['n_patients']} patients, "
             f"{counts['n_images']} images in the fold test sets"
             + "".join(f"; held-out {k}: {v['n_patients']} patients, {v['n_images']} images" for k, v in counts["held_out"].items()),
             _p_note(f"{held_out_test} on the fold test sets", d_folds, word, alpha)]
    parts += [_p_note(f"{held_out_test} on {name}", d, word, alpha, decided="held-out test on" in reason and name in reason)
              for name, d in d_tests.items()]
    parts += _secondary_text(secondary or {}, alpha)
    if gate_note:
        parts.append(gate_note)
    return "; ".join(parts)


def _secondary_text(secondary: dict, alpha: float) -> list[str]:
    """The secondary metrics that differ significantly (Holm-adjusted), as verdict-text parts."""
    out = []
    for m, t in secondary.items():
        if t.get("p_holm", 1.0) < alpha:
            out.append(f"{m.replace('_', ' ')} differs significantly: {t['mean']:+.3f} (corrected t-test p={t['p']:.3g}, "
                       f"Holm-adjusted over {t['n_tests']} secondary tests p={t['p_holm']:.3g}) -- the verdict word is "
                       "about AUC; this metric depends on the chosen threshold")
    return out
