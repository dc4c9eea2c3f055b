"""`--force` removes only what xraygan itself wrote: an xraygan output that also holds a file or
folder of the user's is refused, named, and left as it was (xraygan.utils.ownership.foreign_entries).

Every output below is written by the real commands, so a command that starts writing a new file
into its output fails the first test until that file is added to ``ownership.OWN_FILES``.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xraygan.cli import main
from xraygan.errors import UsageError
from xraygan.utils import ownership
from xraygan.utils.ownership import check_output_dir, foreign_entries, output_kind
from tests.helpers import file_tree, random_class_folder

TINY = ["--batch", "8", "--width", "8", "--latent-dim", "16", "--device", "cpu", "--threads", "1", "-q"]
QUICK_EVAL = ["--features", "random", "--device", "cpu", "-q"]


def _class_folder(root: Path, seed: int, n: int = 6) -> Path:
    return random_class_folder(root, n, seed, prefix=f"s{seed}")


_tree = file_tree


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    """One fresh output of every kind, with the optional files the commands add to them."""
    root = tmp_path_factory.mktemp("ownership")
    src = _class_folder(root / "src", seed=0)
    o = {"prepared": root / "prep", "run": root / "run", "generated": root / "gen", "demo": root / "demo",
         "experiment": root / "exp"}
    prep, run, gen, demo, exp = (str(o[k]) for k in ("prepared", "run", "generated", "demo", "experiment"))
    assert main(["prepare", str(src), prep, "--size", "16", "--val", "0.2", "--test", "0.2", "-q"]) == 0
    tb = ["--tensorboard"] if importlib.util.find_spec("tensorboard") else []  # tensorboard/events.out.tfevents.*
    assert main(["train", prep, "--out", run, "--steps", "2", "--sample-every", "1", "--ckpt-every", "1", "--conditional",
                 *tb, *TINY]) == 0
    assert main(["evaluate", run, "--real", prep, *QUICK_EVAL]) == 0  # RUN/eval/step_*_random.json, .pairs.png
    assert main(["generate", run, "--n", "4", "--out", gen, "--device", "cpu", "-q"]) == 0
    assert main(["evaluate", "--real", prep, "--fake", gen, *QUICK_EVAL]) == 0  # also recorded in RUN/eval/
    assert main(["report", run]) == 0  # RUN/report.html
    assert main(["demo", "--out", demo, "--quick", "--device", "cpu", "-q"]) == 0
    assert main(["evaluate", "--real", f"{demo}/prepared", "--fake", f"{demo}/synthetic", *QUICK_EVAL]) == 0  # beside synthetic/
    assert main(["report", demo]) == 0
    gan = root / "gan.yaml"
    gan.write_text("model: dcgan\nsize: 16\nsteps: 2\nbatch: 8\nwidth: 8\nlatent_dim: 16\nema: 0\nconditional: true\n")
    test_src = _class_folder(root / "test-src", seed=1, n=3)
    assert main(["experiment", prep, "--gan-config", str(gan), "--out", exp, "--arms", "real,real+synthetic", "--ratios", "1",
                 "--folds", "2", "--seeds", "1", "--steps", "2", "--input-size", "16", "--bootstrap", "10",
                 "--test", str(test_src), "--device", "cpu", "-q"]) == 0
    assert main(["report", exp]) == 0
    return o


# --- 1. what the commands write is what OWN_FILES describes -------------------------------------------

def test_fresh_outputs_of_every_kind_hold_nothing_foreign(outputs):
    run, demo, exp = outputs["run"], outputs["demo"], outputs["experiment"]
    # the optional files are really there, so the patterns are checked against them
    assert {"report.html", "MODEL_CARD.md", "loss.png"} <= {p.name for p in run.iterdir()}
    assert {p.suffix for p in (run / "eval").iterdir()} == {".json", ".png"}
    assert (demo / "synthetic.eval-random.json").is_file() and (demo / "report.html").is_file()
    assert (exp / "test-prepared" / "dataset.json").is_file() and list((exp / "gans").glob("fold0/conditional/samples/*.png"))
    for kind, path in outputs.items():
        assert output_kind(path) == kind
        assert foreign_entries(path) == [], kind
    for nested, kind in [(demo / "run", "run"), (demo / "synthetic", "generated"), (exp / "gans" / "fold1" / "conditional", "run")]:
        assert output_kind(nested) == kind and foreign_entries(nested) == []


def test_foreign_entries_names_what_xraygan_did_not_write(tmp_path, outputs):
    gen = tmp_path / "gen"
    shutil.copytree(outputs["generated"], gen)
    # xraygan's own leftovers (staging folders, temporary and lock files) are its own
    (gen / ".NORMAL.abcd1234.partial" / "x").mkdir(parents=True)
    (gen / "NORMAL" / ".synthetic_000000.png.k1ll3d00.tmp").write_bytes(b"half")
    (gen / ".sub.lock").write_bytes(b"")
    assert foreign_entries(gen) == []
    (gen / "mine").mkdir()
    (gen / "mine" / "a.txt").write_text("x")
    (gen / "NORMAL" / "notes.txt").write_text("x")
    (gen / "NORMAL" / "synthetic_000000.png.bak").write_text("x")
    os.symlink(gen / "manifest.csv", gen / "link.csv")
    assert foreign_entries(gen) == ["NORMAL/notes.txt", "NORMAL/synthetic_000000.png.bak", "link.csv", "mine/a.txt"]
    # a folder no pattern of the kind can hold is named as a whole
    (gen / "NORMAL" / "deeper").mkdir()
    assert "NORMAL/deeper/" in foreign_entries(gen)
    assert "NORMAL/" in foreign_entries(gen, "prepared")  # the patterns are those of the kind asked for
    assert foreign_entries(tmp_path / "nothing") == [] and foreign_entries(tmp_path / "nothing", "run") == []
    for i in range(7):
        (gen / f"user{i}.txt").write_text("x")
    with pytest.raises(UsageError) as e:
        check_output_dir(gen, True, kind="generated")
    msg = str(e.value)
    assert f"output folder {gen} holds 12 file(s) or folder(s) that xraygan did not write" in msg
    assert "NORMAL/deeper/, NORMAL/notes.txt" in msg and "and 7 more" in msg and "nothing was deleted" in msg


# --- 2. --force refuses an output with user files in it, and deletes nothing ---------------------------

USER_FILES = {  # kind: (a file at the top, one inside a folder xraygan wrote)
    "prepared": ("USERNOTE.txt", "images/keep.txt"),
    "run": ("NOTES.txt", "samples/my.png"),
    "generated": ("mine.txt", "NORMAL/mine.png"),
    "demo": ("notes.md", "run/checkpoints/keep.pt"),
    "experiment": ("analysis.ipynb", "gans/fold0/conditional/eval/mine.csv"),
}


@pytest.mark.parametrize("kind", sorted(USER_FILES))
def test_force_refuses_an_output_holding_user_files_and_keeps_it_whole(tmp_path, outputs, kind, capsys):
    out = tmp_path / "out"
    shutil.copytree(outputs[kind], out, symlinks=True)
    for rel in USER_FILES[kind]:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(f"the user's {rel}")
    before = _tree(out)
    prep = str(outputs["prepared"])
    argv = {"prepared": ["prepare", str(outputs["prepared"].parent / "src"), str(out), "--size", "16", "-q"],
            "run": ["train", prep, "--out", str(out), "--steps", "1", *TINY],
            "generated": ["generate", str(outputs["run"]), "--n", "2", "--out", str(out), "--device", "cpu", "-q"],
            "demo": ["demo", "--out", str(out), "--quick", "--device", "cpu", "-q"]}.get(kind)
    if argv is None:  # `xraygan experiment` has no --force; the rule is the same
        with pytest.raises(UsageError) as e:
            check_output_dir(out, True, "--out", kind="experiment")
        err = str(e.value)
    else:
        assert main([*argv, "--force"]) == 2
        err = capsys.readouterr().err
    assert "xraygan did not write" in err and "nothing was deleted" in err and "move them out" in err
    assert all(rel in err for rel in USER_FILES[kind]), err
    assert _tree(out) == before  # the user's files and the old output, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder, no lock file left


# --- 3. an output holding only xraygan's files is still replaced ---------------------------------------

def test_force_still_replaces_outputs_holding_only_xraygan_files(tmp_path, outputs):
    prep, run, gen = tmp_path / "prep", tmp_path / "run", tmp_path / "gen"
    for name, p in (("prepared", prep), ("run", run), ("generated", gen)):
        shutil.copytree(outputs[name], p)
    (run / "checkpoints" / ".latest.pt.k1ll3d00.tmp").write_bytes(b"a killed writer's leftover")
    assert main(["prepare", str(outputs["prepared"].parent / "src"), str(prep), "--size", "16", "--val", "0.2", "--test", "0.2",
                 "--force", "-q"]) == 0
    assert output_kind(prep) == "prepared" and foreign_entries(prep) == []
    assert main(["generate", str(outputs["run"]), "--n", "2", "--out", str(gen), "--device", "cpu", "--force", "-q"]) == 0
    assert len(list(gen.glob("*/synthetic_*.png"))) == 2
    assert main(["train", str(outputs["prepared"]), "--out", str(run), "--steps", "1", "--force", *TINY]) == 0
    assert not (run / "eval").exists() and not (run / "report.html").exists()  # the old run was replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen", "prep", "run"]


def test_every_kind_has_a_description_and_the_leftover_patterns_are_those_of_locks():
    from xraygan.utils import locks

    assert set(ownership.OWN_FILES) == set(ownership.KINDS)
    assert ownership._STAGING_DIR.pattern == locks._STAGING_RE.pattern and ownership._TMP_FILE.pattern == locks._TMP_RE.pattern
