"""Issue 13's controls as arms (oracle gating), secondary-metric tests, real+classic comparisons and the
real+classic+synthetic arm; issue 14's --class-fraction, nested fractions and --min-steps default."""
from __future__ import annotations

import numpy as np
import pytest

from xraygan.data.dataset import PreparedDataset
from xraygan.errors import XrayganError
from xraygan.experiments import folds as F
from xraygan.experiments import stats

from xraygan.experiments.runner import ExperimentConfig, arm_labels, run_experiment
from tests.helpers import tiny_experiment


_cfg = tiny_experiment


def test_controls_are_arms_and_an_undetected_oracle_gates_every_synthetic_verdict(tiny_prepared, tmp_path):
    cfg = _cfg(tiny_prepared, tmp_path / "c", arms=("real", "real+classic", "real+synthetic", "real+classic+synthetic"),
               controls=("oracle", "noise"), real_fraction=0.5)
    res = run_experiment(cfg, progress=False)
    assert list(res["arms"]) == ["real", "real+classic", "real+synthetic x1", "real+classic+synthetic x1", "oracle x1", "noise x1"]
    syn = res["arms"]["real+synthetic x1"]["units"]
    for ctrl in ("oracle x1", "noise x1"):  # same folds, same synthetic counts as real+synthetic
        assert [u["n_synthetic"] for u in res["arms"][ctrl]["units"]] == [u["n_synthetic"] for u in syn]
    assert [u["n_synthetic"] for u in res["arms"]["real+classic+synthetic x1"]["units"]] == [u["n_synthetic"] for u in syn]
    comps = res["comparisons"]
    assert set(comps) == {"real+classic", "real+synthetic x1", "real+classic+synthetic x1", "oracle x1", "noise x1",
                          "real+synthetic x1 vs real+classic", "real+classic+synthetic x1 vs real+classic"}
    assert [c["p_holm"] for c in comps.values()] == pytest.approx(list(stats.holm([c["p_raw"] for c in comps.values()])))
    oracle = comps["oracle x1"]
    tt = oracle["corrected_ttest"]
    # 2 folds x 1 repeat: df 1, so the oracle cannot reach p < 0.05 here -- it is not detected
    assert tt["df"] == 1 and oracle["verdict"] != "improves" and oracle["oracle_gate"] is None
    for key in ("real+synthetic x1", "real+classic+synthetic x1", "real+synthetic x1 vs real+classic"):
        c = comps[key]
        assert c["oracle_gate"] == "not detected" and c["verdict"] == "inconclusive", key
        assert "could not detect a gain of that size" in c["verdict_reason"] and "oracle x1" in c["because"]
    assert comps["real+classic"]["oracle_gate"] is None and comps["noise x1"]["oracle_gate"] is None
    from xraygan.report.html import render_report

    html = render_report(tmp_path / "c")  # the calibration plot, every comparison and the steps per arm in the report
    assert "<h3>Calibration</h3>" in html and "calibration.png" in html and "Classifier optimiser steps per arm" in html
    assert "real+synthetic x1 vs real+classic" in html and "could not detect a gain of that size" in html


def test_oracle_gate_detected_and_not_available(tiny_prepared, tmp_path):
    from xraygan.experiments.compare import _oracle_gate

    cfg = _cfg(tiny_prepared, tmp_path / "x", controls=("oracle",))
    fake = {1.0: (True, {"corrected_ttest": {"mean": 0.03}, "p_holm": 0.001})}
    assert _oracle_gate(cfg, "real+synthetic", 1.0, fake)[:2] == ("detected", True)
    assert _oracle_gate(cfg, "synthetic", None, fake)[:2] == ("detected", True)  # the largest ratio's oracle
    assert _oracle_gate(cfg, "real+classic", None, fake)[:2] == (None, None)
    # at real fraction 1 nothing is held back: no oracle arm, gating "not available", verdicts ungated
    assert [lab for lab, _, _ in arm_labels(cfg)] == ["real"]
    res = run_experiment(_cfg(tiny_prepared, tmp_path / "full", arms=("real", "real+synthetic"), controls=("oracle",)), progress=False)
    c = res["comparisons"]["real+synthetic x1"]
    assert c["oracle_gate"] == "not available" and "not available" in c["because"]
    assert c["verdict"] == stats.decide(c["corrected_ttest"]["mean"], c["p_holm"], c["corrected_ttest"]["lo90"],
                                        c["corrected_ttest"]["hi90"], margin=0.01,
                                        held_out={k: stats.DeLongResult(**v) for k, v in c["delong_test_sets"].items()})[0]
    with pytest.raises(XrayganError, match="--controls"):
        arm_labels(_cfg(tiny_prepared, tmp_path / "y", controls=("gan",)))


def test_secondary_metrics_are_tested_and_named_when_they_differ():
    from xraygan.experiments.compare import _because

    tt = stats.corrected_repeated_cv_ttest([[0.001, -0.002, 0.0, 0.001, 0.0]], n_train=100, n_test=10)
    counts = {"n_patients": 60, "n_images": 120, "held_out": {}}
    sec = {"specificity": {"mean": -0.17, "p": 1e-4, "p_holm": 3e-4, "n_tests": 3},
           "sensitivity": {"mean": 0.01, "p": 0.4, "p_holm": 0.8, "n_tests": 3}}
    text = _because("equivalent", "90% CI within", tt, 0.9, 1, None, {}, counts, 0.05, secondary=sec)
    assert "specificity differs significantly: -0.170" in text and "the verdict word is about AUC" in text
    assert "sensitivity" not in text.replace("sensitivity at", "")


def test_secondary_tests_end_to_end(tiny_prepared, tmp_path):
    res = run_experiment(_cfg(tiny_prepared, tmp_path / "s", arms=("real", "real+classic"), seeds=2), progress=False)
    c = res["comparisons"]["real+classic"]
    units = {lab: res["arms"][lab]["units"] for lab in ("real", "real+classic")}
    for m in ("balanced_accuracy", "sensitivity", "specificity"):
        if m not in c["secondary_tests"]:
            continue  # undefined on this tiny data (fewer than two finite fold differences)
        d = np.array([[np.mean([b["fold_test"][m] - a["fold_test"][m] for a, b in zip(units["real"], units["real+classic"])
                                if a["fold"] == k and b["fold"] == k]) for k in range(2)]])
        t = stats.corrected_repeated_cv_ttest(d, n_train=res["protocol"]["ttest_n_train"], n_test=res["protocol"]["ttest_n_test"])
        assert c["secondary_tests"][m]["mean"] == pytest.approx(t.mean) and c["secondary_tests"][m]["p"] == pytest.approx(t.p)
        assert c["secondary_tests"][m]["p_holm"] >= c["secondary_tests"][m]["p"]


def test_class_fraction_keeps_the_other_classes_whole_and_fractions_nest(tiny_prepared):
    ds = PreparedDataset.open(tiny_prepared)
    full = F.make_folds(ds, n_folds=2, seed=0)
    scarce = F.make_folds(ds, n_folds=2, seed=0, class_fraction={1: 0.3})
    for a, b in zip(full, scarce):
        assert np.array_equal(a.test, b.test)
        keep0 = set(ds.patients[b.train][ds.labels[b.train] == 0])
        assert keep0 == set(ds.patients[a.train][ds.labels[a.train] == 0])  # class 0 whole
        n1 = len(set(ds.patients[a.train][ds.labels[a.train] == 1]))
        assert len(set(ds.patients[b.train][ds.labels[b.train] == 1])) == max(1, round(0.3 * n1))
        assert set(ds.labels[b.dropped]) == {1}
    kept = [F.make_folds(ds, n_folds=2, seed=0, real_fraction=f) for f in (0.2, 0.5, 1.0)]
    for k in range(2):  # a patient kept at a fraction is kept at every larger one
        sets = [set(ds.patients[p[k].train]) for p in kept]
        assert sets[0] <= sets[1] <= sets[2] and len(sets[0]) < len(sets[1]) < len(sets[2])
    cfg = ExperimentConfig(prepared=str(tiny_prepared), out="/tmp/unused", class_fraction=(("COVID", 0.5),))
    with pytest.raises(XrayganError, match="--class-fraction COVID"):
        cfg.class_fractions(ds.classes)


def test_cli_min_steps_default_is_the_runners():
    from xraygan.commands import experiment as cmd
    from xraygan.experiments import config

    assert cmd.MIN_STEPS == config.MIN_STEPS == ExperimentConfig(prepared="p", out="o").min_steps


def test_real_fraction_list_is_a_learning_curve_on_nested_fold_manifests(tiny_prepared, tmp_path):
    import csv
    import json

    gan_cfg = tmp_path / "gan.yaml"
    gan_cfg.write_text("model: dcgan\nsize: 16\nsteps: 2\nbatch: 8\nema: 0\nconditional: true\n")
    out = tmp_path / "lc"
    cfg = _cfg(tiny_prepared, out, gan_config=str(gan_cfg), arms=("real", "real+synthetic"), controls=("oracle",),
               real_fraction=(0.5, 1.0))
    res = run_experiment(cfg, progress=False)
    assert list(res["arms"]) == ["real @0.5", "real+synthetic x1 @0.5", "oracle x1 @0.5", "real @1", "real+synthetic x1 @1"]
    assert set(res["comparisons"]) == {"real+synthetic x1 @0.5", "oracle x1 @0.5", "real+synthetic x1 @1"}
    assert res["comparisons"]["real+synthetic x1 @1"]["against"] == "real @1"
    assert res["comparisons"]["real+synthetic x1 @1"]["oracle_gate"] == "not available"
    assert res["comparisons"]["real+synthetic x1 @0.5"]["oracle_gate"] in ("detected", "not detected")
    assert res["comparisons"]["oracle x1 @0.5"]["n_comparisons"] == 3  # one Holm family over the fractions
    for k in range(2):  # one GAN per (fold, fraction), trained on nested patients
        pats = []
        for f in ("0.5", "1"):
            with open(out / "gans" / f"frac{f}_fold{k}" / "data" / "manifest.csv", newline="") as fh:
                pats.append({r["patient_id"] for r in csv.DictReader(fh)})
        assert pats[0] < pats[1]
    assert (out / "units" / "frac0.5_fold0_seed0_real.json").is_file() and (out / "learning_curve.png").stat().st_size
    lc = res["learning_curve"]
    assert set(lc) == {"real", "real+synthetic x1", "oracle x1"} and set(lc["real"]) == {"0.5", "1"}
    assert lc["real"]["0.5"]["real_patients"] < lc["real"]["1"]["real_patients"]
    eq = res["data_equivalence"]["real+synthetic x1"]["0.5"]
    assert eq["real_patients"] == lc["real"]["0.5"]["real_patients"]
    assert eq["real_patients_equivalent"] is None or eq["real_patients_equivalent"] > 0
    assert json.loads((out / "results.json").read_text())["protocol"]["config"]["real_fraction"] == [0.5, 1.0]
    from xraygan.report.html import render_report

    html = render_report(out)
    assert "<h3>Learning curve</h3>" in html and "learning_curve.png" in html and "Data equivalence" in html
    again = run_experiment(_cfg(tiny_prepared, out, gan_config=str(gan_cfg), arms=("real",), real_fraction=(0.25, 0.5, 1.0)),
                           progress=False)
    assert again["units_run_this_invocation"] == 2  # only the new fraction's units (2 folds x 1 seed): the others resume
    assert list(again["learning_curve"]["real"]) == ["0.25", "0.5", "1"]


def test_data_equivalence_inverts_the_real_curve():
    from xraygan.experiments.curves import _invert

    x, y = np.array([10.0, 100.0]), np.array([0.7, 0.9])
    assert _invert(x, y, 0.8)[0] == pytest.approx(np.sqrt(10 * 100))  # halfway in log(patients)
    assert _invert(x, y, 0.95) == (None, "above") and _invert(x, y, 0.6) == (None, "below")
