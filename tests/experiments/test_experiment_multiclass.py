"""Issue 14: the experiment with more than two classes -- macro one-vs-rest AUC (equal to
scikit-learn's), per-class AUC, confusion matrix, patient bootstraps -- and three classes through
every command (prepare, train --conditional, generate, evaluate, experiment)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import synthetic_xrays
from xraygan.experiments import stats_multiclass as M


def _probs(n: int, k: int, seed: int, signal: float = 0.6):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    p = rng.dirichlet(np.ones(k), n)
    p[np.arange(n), y] += signal * rng.random(n)
    return y, p / p.sum(axis=1, keepdims=True)


def test_macro_auc_is_sklearns_and_metrics_by_hand():
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score

    for seed in range(3):
        y, p = _probs(90, 3, seed)
        assert M.macro_auc(y, p) == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-12)
        assert M.per_class_auc(y, p)[2] == pytest.approx(roc_auc_score(y == 2, p[:, 2]))
        m = M.multiclass_metrics(y, p, ["a", "b", "c"])
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p.argmax(1)))
        assert np.array_equal(M.confusion(y, p, 3), confusion_matrix(y, p.argmax(1)))
    assert np.isnan(M.macro_auc(np.array([0, 1, 0, 1]), np.full((4, 3), 1 / 3)))  # a class absent: undefined


def test_multiclass_bootstrap_and_paired_delta_resample_patients():
    y, p = _probs(120, 3, 0)
    pats = np.array([f"p{i // 4}" for i in range(120)])  # 4 consecutive images a patient (clusters of mixed classes)
    res = M.bootstrap_multiclass(y, p, pats, ["a", "b", "c"], n_boot=200, seed=1)
    assert res["auc"]["lo"] < res["auc"]["value"] < res["auc"]["hi"]
    assert set(res["per_class_auc"]) == {"a", "b", "c"} and np.asarray(res["confusion"]["rate"]).shape == (3, 3)
    assert np.allclose(np.asarray(res["confusion"]["rate"]).sum(axis=1), 1)
    same = M.paired_bootstrap_delta(y, p, p, pats, n_boot=50)
    assert same.diff == 0 and same.p == 1.0
    _, noise = _probs(120, 3, 9, signal=0.0)
    worse = M.paired_bootstrap_delta(y, p, noise, pats, n_boot=300, seed=2)
    assert worse.diff < 0 and worse.p < 0.05 and worse.hi < 0  # pure noise is clearly worse
    # clustering widens the interval: the same images with every image its own patient give a smaller SE
    twice = np.concatenate([y, y]), np.concatenate([p, p]), np.concatenate([noise, noise])
    clustered = M.paired_bootstrap_delta(*twice[:2], twice[2], np.concatenate([pats, pats]), n_boot=300, seed=2)
    loose = M.paired_bootstrap_delta(*twice[:2], twice[2], np.arange(240).astype(str), n_boot=300, seed=2)
    assert clustered.se > loose.se


def _three_class_folder(root, n: int = 12, size: int = 16):
    for c, name in enumerate(("NORMAL", "BACTERIA", "VIRUS")):
        (root / name).mkdir(parents=True)
        for i, img in enumerate(synthetic_xrays(n, size, c, seed=10 + c)):
            if c == 2:
                img = np.clip(img.astype(int) + 60 * (np.arange(size)[:, None] > size // 2), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{name}_{i}.png")
    return root


def test_three_classes_through_every_command(tmp_path, capsys):
    from xraygan.cli import main

    prep = tmp_path / "prep"
    assert main(["prepare", str(_three_class_folder(tmp_path / "src")), str(prep), "--size", "16", "-q"]) == 0
    assert json.loads((prep / "dataset.json").read_text())["classes"] == ["BACTERIA", "NORMAL", "VIRUS"]
    run = tmp_path / "run"
    assert main(["train", str(prep), "--out", str(run), "--model", "dcgan", "--size", "16", "--conditional", "--steps", "2",
                 "--batch", "8", "--ema", "0", "-q"]) == 0
    gen = tmp_path / "gen"
    assert main(["generate", str(run), "--out", str(gen), "--n", "6", "-q"]) == 0
    assert sorted(p.name for p in gen.iterdir() if p.is_dir()) == ["BACTERIA", "NORMAL", "VIRUS"]
    ev = tmp_path / "eval.json"
    assert main(["evaluate", "--real", str(prep), "--fake", str(gen), "--features", "random", "--n", "6", "--out", str(ev),
                 "-q"]) == 0
    gan_cfg = tmp_path / "gan.yaml"
    gan_cfg.write_text("model: dcgan\nsize: 16\nsteps: 2\nbatch: 8\nema: 0\nconditional: true\n")
    out = tmp_path / "exp"
    capsys.readouterr()
    assert main(["experiment", str(prep), "--gan-config", str(gan_cfg), "--out", str(out), "--arms", "real,real+synthetic",
                 "--ratios", "1", "--folds", "2", "--seeds", "1", "--steps", "4", "--input-size", "16", "--bootstrap", "20",
                 "--controls", "noise", "-q"]) == 0
    assert "real+synthetic x1:" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"]["classes"] == ["BACTERIA", "NORMAL", "VIRUS"] and res["protocol"]["positive_class"] is None
    ds_rows = {}
    for label, arm in res["arms"].items():
        ft = arm["fold_tests"]
        assert set(ft["per_class_auc"]) == {"BACTERIA", "NORMAL", "VIRUS"} and np.asarray(ft["confusion"]["counts"]).shape == (3, 3)
        # the macro AUC is the mean of the one-vs-rest AUCs (each a mean over the folds)
        assert ft["auc"]["value"] == pytest.approx(np.mean([v["value"] for v in ft["per_class_auc"].values()]), abs=1e-9)
        ds_rows[label] = np.asarray(ft["confusion"]["counts"]).sum()
    assert len(set(ds_rows.values())) == 1  # every arm scored the same fold test images
    unit = json.loads(next((out / "units").glob("fold0_seed0_real.json")).read_text())
    assert np.asarray(unit["fold_test"]["score"]).shape[1] == 3 and unit["threshold"] is None
    from sklearn.metrics import roc_auc_score

    from xraygan.data.dataset import PreparedDataset

    y = PreparedDataset.open(prep).labels[unit["fold_test"]["rows"]]
    tested = next(u for u in res["arms"]["real"]["units"] if (u["repeat"], u["fold"], u["seed"]) == (0, 0, 0))
    assert tested["fold_test"]["auc"] == pytest.approx(roc_auc_score(y, unit["fold_test"]["score"], multi_class="ovr"))
    c = res["comparisons"]["real+synthetic x1"]
    assert "macro one-vs-rest AUC" in c["because"] and "paired patient bootstrap of macro-AUC" in c["because"]
    assert (out / "confusion.png").stat().st_size > 0 and not (out / "roc.png").exists()
    from xraygan.report.html import render_report

    html = render_report(out)
    assert "Per-class AUC, one vs rest" in html and "confusion.png" in html
