"""Builders of run and experiment folders written the way the run-dir contract says (issue 3-5).

Real files, no mocks: PNG sample grids with one row per class, a metrics.jsonl with one JSON object
per logged step, a config.yaml, a tiny checkpoint, eval JSON and figures made with matplotlib.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from tests.helpers import make_prepared, synthetic_xrays


def _grid(step: int, classes: int = 2, per_row: int = 4, size: int = 16) -> np.ndarray:
    """A (classes*size, per_row*size) uint8 grid, one row per class; noisier early in training."""
    rows = []
    for c in range(classes):
        imgs = synthetic_xrays(per_row, size, c, seed=step)
        noise = np.random.default_rng(step + c).normal(0, 200 / (1 + step / 10), imgs.shape)
        rows.append(np.concatenate(list(np.clip(imgs + noise, 0, 255).astype(np.uint8)), axis=1))
    return np.concatenate(rows, axis=0)


def _figure(path: Path, kind: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2), dpi=60)
    x = np.linspace(0, 1, 20)
    ax.plot(x, x ** 0.5 if kind == "roc" else 1 - x)
    ax.set_title(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _eval_result(step: int, fd: float) -> dict:
    """An evaluation result in the format ``xraygan evaluate`` stores as RUN/eval/step_*_<features>.json."""
    vf = lambda v, f: {"value": v, "floor": f}  # noqa: E731
    overall = {"fd": vf(fd, 3.25), "kid": {**vf(0.011, 0.002), "std": 0.001, "floor_std": 0.001},
               "precision": vf(0.61, 0.8), "recall": vf(0.4, 0.78), "density": vf(0.9, 1.0), "coverage": vf(0.5, 0.9),
               "ssim": {**vf(0.3, 0.25), "std": 0.05, "pairs": 100, "method": "ssim"}}
    memo = {"threshold": 1.0, "percentile": 1.0, "n_fake": 64, "n_heldout": 20, "n_train": 100, "fake_below": 1,
            "fake_below_share": 0.016, "heldout_below_share": 0.0, "fake_median_nn": 4.2, "heldout_median_nn": 5.1,
            "authenticity": 0.7, "authenticity_heldout": 0.8}
    return {"n": 64, "resolution": 16, "features": {"name": "xray", "dim": 128}, "versions": {"xraygan": "0.1.0"},
            "options": {"seed": 0}, "warnings": ["n=64 is small for 128-d features"], "overall": overall,
            "per_class": {"NORMAL": {"n": 32, "fd": vf(15.0, 4.0)}, "PNEUMONIA": {"n": 32, "fd": vf(14.0, 4.5)}},
            "class_consistency": {"NORMAL": {**vf(0.7, 0.9), "n_fake": 32, "n_real": 32}},
            "memorisation": {"pixel": memo, "feature": memo, "closest_pairs_png": None},
            "run": {"step": step, "checkpoint": "latest.pt"}, "seconds": 1.5}


def make_run(root: Path, with_eval: bool = True, steps: int = 40, every: int = 10, label: str | None = None) -> Path:
    """A finished 2-class conditional run at 16 px trained on a tiny prepared dataset.

    With ``label`` the run is unconditional on that one class (grids of 4 rows of that class).
    """
    root = Path(root)
    prepared = make_prepared(root.parent / f"{root.name}-prepared", size=16, n_per_class=8)
    info = json.loads((prepared / "dataset.json").read_text())
    info["source"] = "../shared/data/chest-xray-pneumonia"
    (prepared / "dataset.json").write_text(json.dumps(info))
    (root / "checkpoints").mkdir(parents=True)
    (root / "samples").mkdir()
    options = {"data": str(prepared), "out": str(root), "model": "dcgan", "size": 16, "conditional": label is None,
               "label": label, "split": ["train"], "loss": "bce", "steps": steps, "batch": 8, "lr_g": 0.0002,
               "lr_d": 0.0002, "ema": 0.999, "sample_every": every, "seed": 0, "model_options": {}}
    config = {"format": "xraygan-run", "format_version": 1, "xraygan_version": "0.1.0", "created": "2026-01-01T00:00:00+00:00",
              "model": "dcgan", "classes": ["NORMAL", "PNEUMONIA"], "n_classes": 0 if label else 2, "n_train_images": 8,
              "data": str(prepared), "options": options}
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with open(root / "metrics.jsonl", "w") as fh:
        for step in range(1, steps + 1):
            rec = {"step": step, "loss_d": 1.4 - step / 100, "loss_g": 0.7 + step / 100, "img_per_s": 50.0}
            if step % every == 0:
                rec["fd_xray"] = 100.0 / step + (5 if step == steps else 0)
                rec["fd_xray_best"] = min(100.0 / s + (5 if s == steps else 0) for s in range(every, step + 1, every))
                if step == every:
                    rec["fd_xray_floor"], rec["fd_xray_n"] = 1.5, 64
                Image.fromarray(_grid(step, classes=4 if label else 2)).save(root / "samples" / f"step_{step:08d}.png")
            fh.write(json.dumps(rec) + "\n")
    (root / "checkpoints" / "latest.pt").write_bytes(b"\0" * 16)
    _figure(root / "loss.png", "loss")
    if with_eval:
        (root / "eval").mkdir()
        (root / "eval" / f"step_{steps // 2:08d}_xray.json").write_text(json.dumps(_eval_result(steps // 2, fd=20.0)))
        (root / "eval" / f"step_{steps:08d}_xray.json").write_text(json.dumps(_eval_result(steps, fd=12.5)))
        _figure(root / "eval" / f"step_{steps:08d}.pairs.png", "closest pairs")
    return root


def make_experiment(root: Path, prepared: Path | None = None, verdict: str = "no detectable difference") -> Path:
    """An experiment folder as ``xraygan experiment`` writes it: results.json, verdicts.txt, roc.png, ci.png.

    The default is a results format 1 folder (verdict "no detectable difference"); a verdict word
    of issue 13 (improves, harms, equivalent, inconclusive) gives format 2."""
    root = Path(root)
    root.mkdir(parents=True)
    ci = lambda v, w=0.04: {"value": v, "lo": v - w, "hi": v + w}  # noqa: E731
    metrics = lambda auc: {"auc": ci(auc), "accuracy": ci(auc - 0.05), "sensitivity": ci(0.9)}  # noqa: E731
    arm = lambda auc: {"arm": "real", "ratio": None, "units": [], "fold_auc_mean": auc, "fold_auc_sd": 0.02,  # noqa: E731
                       "fold_tests": metrics(auc), "test_sets": {"test": metrics(auc - 0.01)}, "wall_s": 10.0}
    text = f"real: AUC 0.810\nreal+synthetic x1: {verdict.upper()} compared with real.\n"
    results = {
        "format": "xraygan-experiment-results", "format_version": 1 if verdict == "no detectable difference" else 2,
        "protocol": {"config": {"prepared": str(prepared or root / "missing"), "out": str(root), "folds": 5, "seeds": 3},
                     "classes": ["NORMAL", "PNEUMONIA"], "positive_class": "PNEUMONIA"},
        "arms": {"real": arm(0.81), "real+synthetic x1": arm(0.83)},
        "comparisons": {"real+synthetic x1": {"fold_auc_differences": [0.01, 0.03], "verdict": verdict,
                                              "alpha": 0.05, "because": "corrected t-test p=0.21; DeLong p=0.30"}},
        "verdicts_text": text,
    }
    (root / "results.json").write_text(json.dumps(results, indent=2))
    (root / "verdicts.txt").write_text(text)
    _figure(root / "roc.png", "roc")
    _figure(root / "ci.png", "ci")
    return root
