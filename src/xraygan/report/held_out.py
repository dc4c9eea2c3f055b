"""What an experiment's held-out sets are, in words: the "internal vs external" sentence and the
held-out AUCs printed beside the fold-test AUCs (the verdict text of :mod:`xraygan.experiments.summary`
and the run report both use it)."""
from __future__ import annotations


HELD_OUT_MEANING = {
    "test": "PREPARED's test split (patients kept out of every fold, from the same source as the training data)",
    "external": "the --test set (another source: the external check)",
}


def held_out_names(results: dict) -> list[str]:
    first = next(iter(results["arms"].values()), {})
    return [n for n, m in (first.get("test_sets") or {}).items() if isinstance((m or {}).get("auc"), dict)]


def held_out_auc(arm: dict) -> str:
    """``; held-out test 0.912 (95% CI 0.88-0.94)`` for every held-out set of ``arm``, beside its fold-test AUC."""
    parts = []
    for name, m in (arm.get("test_sets") or {}).items():
        auc = (m or {}).get("auc")
        if isinstance(auc, dict) and auc.get("value") is not None:
            ci = f" (95% CI {auc['lo']:.3f}-{auc['hi']:.3f})" if auc.get("lo") is not None and auc.get("hi") is not None else ""
            parts.append(f"held-out {name} {auc['value']:.3f}{ci}")
    return ("; " + ", ".join(parts)) if parts else ""


def internal_vs_external(results: dict) -> str:
    """The sentence that says what the fold-test intervals describe and where the held-out figures are."""
    sets = "; ".join(f"'{n}' is {HELD_OUT_MEANING.get(n, 'a held-out set')}" for n in held_out_names(results))
    return ("Internal vs external: the fold-test confidence intervals describe new patients from the training data's own "
            "distribution (the folds split one source), not other hospitals, scanners or populations. The held-out figures "
            f"are shown beside them: {sets}. Trust a gain only where the held-out figures agree.")
