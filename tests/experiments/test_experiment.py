"""The experiment: folds, repeats, leakage refusal, classifiers, every arm and option, resume, Holm and
verdict wiring, documented results.json keys, CLI."""
from __future__ import annotations

import functools
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from xraygan.data.dataset import PreparedDataset
from xraygan.errors import XrayganError
from xraygan.experiments import folds as F
from xraygan.experiments.classifier import ClassifierConfig, classic_augment, predict_scores, train_classifier
from xraygan.experiments.runner import run_experiment
from xraygan.experiments.units import synthetic_counts
from xraygan.experiments import stats
from xraygan.experiments.stats import VERDICT_WORDS, auc_score
from xraygan.experiments.synthetic import NoiseSource, OracleSource, gan_training_patients
from xraygan.models.classifiers import build_classifier
from tests.helpers import tiny_experiment


_cfg = functools.partial(tiny_experiment, seeds=2, n_boot=50)


# --- folds and leakage -------------------------------------------------------------------------
def test_folds_group_patients_and_never_touch_the_test_split(tiny_prepared):
    ds = PreparedDataset.open(tiny_prepared)
    folds = F.make_folds(ds, n_folds=3, seed=0)
    pats, splits = ds.patients, ds.splits
    all_test = np.concatenate([f.test for f in folds])
    assert sorted(all_test) == sorted(ds.indices(split=("train", "val")))  # each train+val row tested once
    for f in folds:
        assert not set(pats[f.train]) & set(pats[f.test])
        assert set(splits[f.train]) | set(splits[f.test]) <= {"train", "val"}
        assert len(set(ds.labels[f.test])) == 2
    again = F.make_folds(ds, n_folds=3, seed=0)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again))


def test_real_fraction_keeps_that_fraction_of_training_patients(tiny_prepared):
    ds = PreparedDataset.open(tiny_prepared)
    full = F.make_folds(ds, n_folds=2, seed=0)
    low = F.make_folds(ds, n_folds=2, seed=0, real_fraction=0.25)
    for a, b in zip(full, low):
        assert np.array_equal(a.test, b.test)
        assert sorted(np.concatenate([b.train, b.dropped])) == sorted(a.train)
        n_full, n_kept = len(set(ds.patients[a.train])), len(set(ds.patients[b.train]))
        assert n_kept == pytest.approx(0.25 * n_full, abs=2) and len(set(ds.labels[b.train])) == 2
    with pytest.raises(XrayganError, match="real-fraction"):
        F.make_folds(ds, n_folds=2, real_fraction=1.5)


def test_train_overlap_of_the_folds_is_one_at_full_data_and_about_the_fraction_below(tmp_path):
    from tests.helpers import make_prepared
    from xraygan.experiments.summary import train_overlap

    ds = PreparedDataset.open(make_prepared(tmp_path / "p", size=8, n_per_class=240, per_patient=2))
    assert train_overlap(ds, F.make_repeated_folds(ds, n_folds=3, repeats=2, seed=0)) == pytest.approx(1.0)
    for fraction in (0.25, 0.5):
        omega = train_overlap(ds, F.make_repeated_folds(ds, n_folds=3, repeats=2, seed=0, real_fraction=fraction))
        assert omega == pytest.approx(fraction, abs=0.12), (fraction, omega)


def test_too_many_folds_is_a_clear_error(tiny_prepared):
    with pytest.raises(XrayganError, match="--folds"):
        F.make_folds(PreparedDataset.open(tiny_prepared), n_folds=50)


def test_leakage_is_refused(tiny_prepared, tmp_path):
    ds = PreparedDataset.open(tiny_prepared)
    fold = F.make_folds(ds, n_folds=2, seed=0)[0]
    # a "GAN run" whose config says it trained on every train+val image: it saw the fold's test patients
    run = tmp_path / "leaky_run"
    run.mkdir()
    (run / "config.yaml").write_text(f"format: xraygan-run\noptions:\n  data: {tiny_prepared}\n  split: [train, val]\n")
    with pytest.raises(XrayganError, match="refusing"):
        F.check_no_leakage(gan_training_patients(run), ds.patients[fold.test])
    # trained on the fold's training rows only: accepted
    from xraygan.experiments.synthetic import write_fold_dataset

    data = write_fold_dataset(ds, fold.train, tmp_path / "fold_data")
    (run / "config.yaml").write_text(f"data: {data}\nsplit: [train]\n")
    F.check_no_leakage(gan_training_patients(run), ds.patients[fold.test])
    assert gan_training_patients(run) == set(ds.patients[fold.train])


# --- classifiers -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["small", "resnet18", "resnet50", "densenet121"])
def test_classifiers_take_one_channel(name):
    model = build_classifier(name, num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 2)


def test_imagenet_weights_fold_first_conv_by_summing(tmp_path):
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    model = build_classifier("resnet18", 2, imagenet_weights=path)
    assert torch.allclose(model.conv1.weight, ref.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(model.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
    assert model.fc.out_features == 2
    with pytest.raises(XrayganError, match="file not found"):
        build_classifier("resnet18", 2, imagenet_weights=tmp_path / "missing.pth")
    with pytest.raises(XrayganError, match="small CNN"):
        build_classifier("small", 2, imagenet_weights=path)
    with pytest.raises(XrayganError, match="does not match"):
        build_classifier("resnet50", 2, imagenet_weights=path)
    with pytest.raises(XrayganError, match="features.conv0.weight"):
        build_classifier("densenet121", 2, imagenet_weights=path)


def test_classic_augment_is_seeded_small_and_never_flips():
    x = torch.linspace(-1, 1, 16).repeat(4, 1, 16, 1)  # (4,1,16,16): dark left, bright right
    a = classic_augment(x, torch.Generator().manual_seed(0))
    b = classic_augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert not torch.equal(a, x)
    assert ((a - x).abs().mean(dim=(1, 2, 3)) < (a - x.flip(-1)).abs().mean(dim=(1, 2, 3))).all()


def test_classifier_training_is_seeded_and_learns(tiny_prepared):
    ds = PreparedDataset.open(tiny_prepared)
    tr, te = ds.indices(split="train"), ds.indices(split=("val", "test"))
    x, y = ds.tensor(tr), torch.from_numpy(ds.labels[tr])
    cfg = ClassifierConfig(input_size=16, steps=30, batch=8)
    s1 = predict_scores(train_classifier(x, y, cfg, seed=3), ds.tensor(te))
    s2 = predict_scores(train_classifier(x, y, cfg, seed=3), ds.tensor(te))
    assert np.array_equal(s1, s2)
    assert auc_score(ds.labels[te], s1) > 0.9


# --- synthetic sources -------------------------------------------------------------------------
def test_oracle_returns_held_back_training_images_of_the_class(tiny_prepared):
    ds = PreparedDataset.open(tiny_prepared)
    fold = F.make_folds(ds, n_folds=2, seed=0, real_fraction=0.3)[0]
    imgs = OracleSource(ds, fold).sample(1, 5, seed=0)
    pool = ds.pixels()[fold.dropped[ds.labels[fold.dropped] == 1]]
    assert imgs.dtype == np.uint8 and len(imgs) == 5
    assert all(any(np.array_equal(i, p) for p in pool) for i in imgs)
    noise = NoiseSource(16).sample(0, 3, seed=1)
    assert noise.shape == (3, 16, 16) and np.array_equal(noise, NoiseSource(16).sample(0, 3, seed=1))


def test_synthetic_counts_ratio_and_balance():
    n = np.array([10, 40])
    assert synthetic_counts(n, "real+synthetic", 0.5, False).tolist() == [5, 20]
    assert synthetic_counts(n, "real+synthetic", 2.0, True).tolist() == [20, 0]
    assert synthetic_counts(n, "real+synthetic", 5.0, True).tolist() == [30, 0]  # never beyond the majority
    assert synthetic_counts(n, "synthetic", None, False).tolist() == [10, 40]
    assert synthetic_counts(n, "real+classic", None, False).tolist() == [0, 0]


def test_oracle_needs_a_real_fraction_below_one(tiny_prepared, tmp_path):
    with pytest.raises(XrayganError, match="real-fraction"):
        run_experiment(_cfg(tiny_prepared, tmp_path / "o", gan_config="oracle", arms=("real+synthetic",)), progress=False)


# --- the runner: every arm, resume ------------------------------------------------------------
def test_every_arm_and_option_end_to_end(tiny_prepared, tmp_path):
    from tests.helpers import make_prepared

    from tests.experiments.test_experiment_guards_metrics import _rename_patients

    ext = _rename_patients(make_prepared(tmp_path / "ext", size=16, n_per_class=8, seed=5), "ext-")  # no shared patients
    out = tmp_path / "exp"
    cfg = _cfg(tiny_prepared, out, gan_config="oracle", arms=("real", "real+classic", "real+synthetic", "synthetic"),
               ratios=(0.5, 2.0), balance=False, real_fraction=0.5, test=str(ext))
    res = run_experiment(cfg, progress=False)
    labels = ["real", "real+classic", "real+synthetic x0.5", "real+synthetic x2", "synthetic"]
    assert list(res["arms"]) == labels
    versus_classic = [f"{lab} vs real+classic" for lab in labels[2:]]  # every arm with synthetic images (issue 13)
    assert list(res["comparisons"]) == labels[1:] + versus_classic
    assert all(res["comparisons"][k]["against"] == "real+classic" for k in versus_classic)
    for lab in labels:
        arm = res["arms"][lab]
        assert len(arm["units"]) == 4 and set(arm["test_sets"]) == {"test", "external"}
        for m in ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1"):
            assert set(arm["fold_tests"][m]) == {"value", "lo", "hi"}
    u = res["arms"]["real+synthetic x2"]["units"][0]
    assert u["n_synthetic"] == [2 * n for n in u["n_real"]]
    assert res["arms"]["synthetic"]["units"][0]["n_synthetic"] == res["arms"]["synthetic"]["units"][0]["n_real"]
    for c in res["comparisons"].values():
        tt = c["corrected_ttest"]
        assert c["verdict"] in VERDICT_WORDS and (tt["n_repeats"], tt["n_folds"], tt["n_seeds"], tt["df"]) == (1, 2, 2, 1)
        assert np.asarray(c["fold_auc_differences"]).shape == (1, 2, 2)
        assert "minimum detectable effect" in c["because"] and f"{c['n_patients']} patients" in c["because"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["protocol"]["config"]["real_fraction"] == 0.5 and "verdicts_text" in saved
    for name in ("roc.png", "ci.png", "verdicts.txt"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "units").glob("*.json"))) == 2 * 2 * 5
    # internal vs external (issue 13): the text says what the fold-test CIs describe and shows every held-out AUC beside them
    text = (out / "verdicts.txt").read_text()
    assert text.startswith("Internal vs external:") and "'external' is the --test set" in text
    ext_auc = res["arms"]["real"]["test_sets"]["external"]["auc"]
    assert f"held-out external {ext_auc['value']:.3f} (95% CI {ext_auc['lo']:.3f}-{ext_auc['hi']:.3f})" in text.splitlines()[1]
    from xraygan.report.html import _internal_external

    table = _internal_external(saved)
    assert "AUC, held-out test" in table and "AUC, held-out external" in table and table.count("<tr>") == 1 + len(labels)


def test_epochs_give_every_arm_of_a_fold_the_same_steps_and_min_steps_is_a_floor(tiny_prepared, tmp_path):
    cfg = _cfg(tiny_prepared, tmp_path / "e", arms=("real+synthetic", "synthetic"), ratios=(2.0,), seeds=1,
               classifier=ClassifierConfig(input_size=16, epochs=2, batch=8), min_steps=7)
    res = run_experiment(cfg, progress=False)
    for fold in range(2):
        units = [u for arm in res["arms"].values() for u in arm["units"] if u["fold"] == fold]
        n_real = sum(units[0]["n_real"])
        assert 2 * (n_real // 8) < 7  # two epochs of the fold's real images are fewer steps than the floor
        assert [u["classifier_steps"] for u in units] == [7] * 3
    assert {lab: a["classifier_steps"] for lab, a in res["arms"].items()} == {lab: [7, 7] for lab in res["arms"]}
    from xraygan.experiments.units import unit_classifier

    assert unit_classifier(ClassifierConfig(epochs=2, batch=8), 400, min_steps=7).steps == 100  # above the floor: epochs
    assert unit_classifier(ClassifierConfig(steps=3), 400, min_steps=7).steps == 3  # --steps is taken as given
    assert res["arms"]["real+synthetic x2"]["units"][0]["n_synthetic"] == [2 * n for n in units[0]["n_real"]]


def test_balance_noise_bigger_input_and_a_test_folder(tiny_prepared, tmp_path):
    from PIL import Image

    from tests.helpers import synthetic_xrays

    folder = tmp_path / "external"  # a plain folder with one sub-folder per class, prepared on the fly
    for c, name in enumerate(("NORMAL", "PNEUMONIA")):
        (folder / name).mkdir(parents=True)
        for i, img in enumerate(synthetic_xrays(6, 16, c, seed=40 + c)):
            Image.fromarray(img).save(folder / name / f"{name}_{i}.png")
    cfg = _cfg(tiny_prepared, tmp_path / "b", arms=("real+synthetic",), ratios=(1.0,), balance=True, test=str(folder),
               classifier=ClassifierConfig(input_size=24, steps=3, batch=8))
    res = run_experiment(cfg, progress=False)
    assert res["protocol"]["held_out_sets"]["external"]["n_images"] == 12
    for u in res["arms"]["real+synthetic x1"]["units"]:
        n_real = np.array(u["n_real"])
        assert u["n_synthetic"] == synthetic_counts(n_real, "real+synthetic", 1.0, True).tolist()


def test_resume_skips_finished_units(tiny_prepared, tmp_path):
    out = tmp_path / "r"
    cfg = _cfg(tiny_prepared, out, arms=("real", "real+classic"))
    first = run_experiment(cfg, progress=False)
    assert first["units_run_this_invocation"] == 8
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "units").glob("*.json")}
    victim = sorted(mtimes)[0]
    (out / "units" / victim).unlink()
    again = run_experiment(cfg, progress=False)
    assert again["units_run_this_invocation"] == 1
    now = {p.name: p.stat().st_mtime_ns for p in (out / "units").glob("*.json")}
    assert {k for k in now if now[k] != mtimes.get(k)} == {victim}
    np.testing.assert_allclose(np.asarray(again["comparisons"]["real+classic"]["fold_auc_differences"], float),
                               np.asarray(first["comparisons"]["real+classic"]["fold_auc_differences"], float))  # same seeds, same numbers
    with pytest.raises(XrayganError, match="different options"):
        run_experiment(_cfg(tiny_prepared, out, folds=3), progress=False)


def test_cli_runs_the_experiment(tiny_prepared, tmp_path, capsys):
    from xraygan.cli import main

    out = tmp_path / "cli"
    rc = main(["experiment", str(tiny_prepared), "--gan-config", "noise", "--out", str(out), "--arms", "real,real+synthetic",
               "--ratios", "1", "--folds", "2", "--seeds", "2", "--steps", "3", "--input-size", "16", "--bootstrap", "20",
               "--margin", "0.02", "--repeats", "1", "-q"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "real+synthetic x1:" in printed and any(w.upper() in printed for w in VERDICT_WORDS)
    saved = json.loads((out / "results.json").read_text())
    assert saved["protocol"]["margin"] == 0.02 and saved["comparisons"]["real+synthetic x1"]["tost"]["margin"] == 0.02
    rc = main(["experiment", str(tiny_prepared), "--gan-config", "missing.yaml", "--out", str(tmp_path / "x"),
               "--arms", "synthetic", "--folds", "2", "--seeds", "2", "--steps", "2", "--input-size", "16", "-q"])
    assert rc == 1  # a missing input file
    assert "missing.yaml" in capsys.readouterr().err


# --- repeats, Holm and the verdict wiring (issue 13) ---------------------------------------------
def test_repeats_resume_an_older_folder_and_holm_wires_the_verdicts(tiny_prepared, tmp_path):
    out = tmp_path / "rep"
    arms = ("real", "real+classic", "real+synthetic")
    one = run_experiment(_cfg(tiny_prepared, out, arms=arms, seeds=1), progress=False)
    ds = PreparedDataset.open(tiny_prepared)
    assert [f["test_patients"] for f in one["protocol"]["folds"]] == [  # repetition 0 is the partition of before
        sorted(set(ds.patients[f.test])) for f in F.make_folds(ds, 2, seed=0)]
    # make the folder look like one written before --repeats (format 1): it is still read and resumed
    proto = json.loads((out / "protocol.json").read_text())
    proto.pop("format_version")
    (out / "protocol.json").write_text(json.dumps(proto))
    for p in (out / "units").glob("*.json"):
        rec = json.loads(p.read_text())
        rec.pop("repeat"), rec.pop("real_fraction")
        p.write_text(json.dumps(rec))
    two = run_experiment(_cfg(tiny_prepared, out, arms=arms, seeds=1, repeats=2), progress=False)
    assert two["units_run_this_invocation"] == 2 * 3  # only repetition 1's units; repetition 0 is reused
    from xraygan.experiments.summary import RESULTS_FORMAT_VERSION

    assert two["format_version"] == RESULTS_FORMAT_VERSION == json.loads((out / "results.json").read_text())["format_version"]
    assert sorted(p.name for p in (out / "units").glob("repeat1_*")) == sorted(
        f"repeat1_fold{k}_seed0_{a.replace('real+synthetic', 'real+synthetic_x1')}.json" for k in range(2) for a in arms)
    folds = two["protocol"]["folds"]
    assert [(f["repeat"], f["index"]) for f in folds] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {tuple(f["test_patients"]) for f in folds[:2]} != {tuple(f["test_patients"]) for f in folds[2:]}  # a fresh partition
    for r in range(2):  # each repetition tests every train+val patient once
        assert sorted(p for f in folds if f["repeat"] == r for p in f["test_patients"]) == sorted(set(ds.patients[ds.indices(split=("train", "val"))]))
    assert {(u["repeat"], u["fold"], u["seed"]) for u in two["arms"]["real"]["units"]} == {(r, k, 0) for r in range(2) for k in range(2)}
    comps = two["comparisons"]
    raw = [c["p_raw"] for c in comps.values()]
    assert [c["p_holm"] for c in comps.values()] == pytest.approx(list(stats.holm(raw)))
    for c in comps.values():
        tt = c["corrected_ttest"]
        # real+classic and real+synthetic x1 against real, real+synthetic x1 against real+classic: one Holm family of 3
        assert (tt["n_repeats"], tt["n_folds"], tt["df"], c["n_comparisons"]) == (2, 2, 3, 3) and tt["p"] == c["p_raw"]
        held = {k: stats.DeLongResult(**v) for k, v in c["delong_test_sets"].items()}
        assert (c["verdict"], c["verdict_reason"]) == stats.decide(tt["mean"], c["p_holm"], tt["lo90"], tt["hi90"], margin=0.01,
                                                                  held_out=held)
        assert c["minimum_detectable_effect"] == pytest.approx(stats.minimum_detectable_effect(tt["se"]))
    n_train = np.mean([len(f["train_patients"]) for f in folds])  # real fraction 1: nothing dropped
    assert two["protocol"]["ttest_n_train"] == pytest.approx(n_train)


def test_margin_and_repeats_are_checked(tiny_prepared, tmp_path):
    with pytest.raises(XrayganError, match="--margin"):
        run_experiment(_cfg(tiny_prepared, tmp_path / "m", margin=0.0), progress=False)
    with pytest.raises(XrayganError, match="--repeats"):
        run_experiment(_cfg(tiny_prepared, tmp_path / "r", repeats=0), progress=False)


def test_verdict_text_explains_p_values_that_seem_to_disagree():
    from xraygan.experiments.compare import _because

    tt = stats.corrected_repeated_cv_ttest([[0.03, 0.025, 0.035, 0.03, 0.028]], n_train=100, n_test=10)
    assert tt.p < 0.05
    counts = {"n_patients": 60, "n_images": 120, "held_out": {"test": {"n_patients": 10, "n_images": 20}}}
    strong = stats.DeLongResult(0.8, 0.83, 0.03, 0.005, 6.0, 1e-9, 0.02, 0.04)
    text = _because("inconclusive", "not significant", tt, 0.09, 3, strong, {"test": None}, counts, 0.05)
    assert "not after Holm's adjustment" in text and "secondary test" in text and "test: not available" in text
    assert "60 patients, 120 images" in text and "held-out test: 10 patients, 20 images" in text
    weak = stats.DeLongResult(0.8, 0.81, 0.01, 0.02, 0.5, 0.6, -0.03, 0.05)
    assert "not significant alone" in _because("improves", "Holm-adjusted p=0.01 < 0.05", tt, 0.01, 1, weak, {}, counts, 0.05)


def _documented_keys() -> list[str]:
    text = (Path(__file__).resolve().parents[2] / "docs" / "experiment.md").read_text()
    block = text.split("**results.json keys**", 1)[1].split("\n\n", 1)[0]
    import re

    return re.findall(r"^- `([^`]+)`", block, flags=re.M)


def _resolve(obj, parts: list[str]) -> list:
    """Every value at a dotted path; ``<name>`` matches every key of a dict."""
    if not parts:
        return [obj]
    head, rest = parts[0], parts[1:]
    assert isinstance(obj, dict), (head, type(obj))
    if head.startswith("<"):
        assert obj, head
        return [v for val in obj.values() for v in _resolve(val, rest)]
    assert head in obj, head
    return _resolve(obj[head], rest)


def test_documented_results_keys_exist(tiny_prepared, tmp_path):
    keys = _documented_keys()
    assert len(keys) > 20 and "comparisons.<label>.p_holm" in keys
    out = tmp_path / "doc"
    run_experiment(_cfg(tiny_prepared, out, arms=("real", "real+classic"), seeds=1), progress=False)
    saved = json.loads((out / "results.json").read_text())
    for key in keys:
        assert _resolve(saved, key.split(".")), key


# --- the GAN source (xraygan.training + xraygan.generate) ---------------------------------------
@pytest.mark.parametrize("conditional", [False, True])
def test_gan_source_trains_one_gan_per_fold_on_training_patients_only(tiny_prepared, tmp_path, conditional):
    gan_cfg = tmp_path / "gan.yaml"
    gan_cfg.write_text(f"model: dcgan\nsize: 16\nsteps: 2\nbatch: 8\nema: 0\nconditional: {str(conditional).lower()}\n")
    out = tmp_path / "g"
    cfg = _cfg(tiny_prepared, out, gan_config=str(gan_cfg), arms=("real+synthetic", "synthetic"), seeds=1)
    res = run_experiment(cfg, progress=False)
    ds = PreparedDataset.open(tiny_prepared)
    runs = ["conditional"] if conditional else ["class0", "class1"]
    for fold in res["protocol"]["folds"]:
        for name in runs:
            run = out / "gans" / f"fold{fold['index']}" / name
            assert (run / "checkpoints" / "latest.pt").is_file()
            seen = gan_training_patients(run)
            assert seen <= set(fold["train_patients"]) and not seen & set(fold["test_patients"])
        assert set(ds.patients[ds.indices(split="test")]).isdisjoint(seen)
    u = res["arms"]["synthetic"]["units"][0]
    assert u["n_synthetic"] == u["n_real"]
    ckpt = out / "gans" / "fold0" / runs[0] / "checkpoints" / "latest.pt"
    before = ckpt.stat().st_mtime_ns
    (out / "units" / "fold0_seed0_synthetic.json").unlink()
    assert run_experiment(cfg, progress=False)["units_run_this_invocation"] == 1
    assert ckpt.stat().st_mtime_ns == before  # the finished GAN was reused, not retrained


def test_interrupted_fold_gan_continues_from_its_checkpoint(tiny_prepared, tmp_path, caplog):
    gan_cfg = tmp_path / "gan.yaml"
    gan_cfg.write_text("model: dcgan\nsize: 16\nsteps: 6\nbatch: 8\nconditional: true\nckpt_every: 3\nsample_every: 1000\n")
    out = tmp_path / "g"
    cfg = _cfg(tiny_prepared, out, gan_config=str(gan_cfg), arms=("real+synthetic",), seeds=1, folds=2)
    run_experiment(cfg, progress=False)
    run = out / "gans" / "fold0" / "conditional"
    whole = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    # as if stopped after step 3: no .done marker, latest.pt at step 3, the fold's unit not run
    (run.with_name("conditional.done")).unlink()
    shutil.copyfile(run / "checkpoints" / "step_00000003.pt", run / "checkpoints" / "latest.pt")
    (out / "units" / "fold0_seed0_real+synthetic_x1.json").unlink()
    with caplog.at_level(logging.INFO, logger="xraygan"):
        assert run_experiment(cfg, progress=False)["units_run_this_invocation"] == 1
    assert "continuing GAN conditional from step 3 to 6" in caplog.text
    resumed = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert resumed["step"] == 6 and run.with_name("conditional.done").is_file()
    for name, t in whole["modules"]["G"].items():
        assert torch.equal(t, resumed["modules"]["G"][name]), name  # the same weights as the uninterrupted GAN
    # another request (a changed GAN config) is not continued: the old run is retrained from scratch
    (run.with_name("conditional.done")).unlink()
    request = run.with_name("conditional.request.json")
    request.write_text(request.read_text().replace('"seed": ', '"seed": 1'))
    (out / "units" / "fold0_seed0_real+synthetic_x1.json").unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="xraygan"):
        run_experiment(cfg, progress=False)
    assert "training GAN conditional for 6 steps" in caplog.text and "continuing" not in caplog.text
    # a damaged request file is retrained too, not a traceback
    (run.with_name("conditional.done")).unlink()
    request.write_text('{"model": "dcg')
    (out / "units" / "fold0_seed0_real+synthetic_x1.json").unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="xraygan"):
        run_experiment(cfg, progress=False)
    assert "training GAN conditional for 6 steps" in caplog.text and json.loads(request.read_text())["model"] == "dcgan"
