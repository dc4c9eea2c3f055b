"""Machine- and data-fitted defaults of `xraygan train` (issue 12 item 5): conditional when the data
has several classes, a CPU configuration announced at start, user options always win, and the
DiffAugment auto rule."""
from __future__ import annotations

from pathlib import Path

import torch
import yaml

from xraygan.augment.diffaug import AUTO_MAX_IMAGES, AUTO_MIN_STEPS, AUTO_TRANSLATION_SIZE, DEFAULT_POLICY, auto_policy
from xraygan.cli import main
from xraygan.training.config import CPU_AUTO, TrainConfig, auto_settings, default_conditional

# no --size/--steps/--max-time: those are what the CPU chooser fills in (the tiny data is 16 px, so the size stays 16)
TINY = ["--batch", "8", "--width", "8", "--latent-dim", "16", "--device", "cpu", "--threads", "1", "-q"]


def test_cpu_chooser_fills_only_what_the_user_left_unset() -> None:
    chosen, line = auto_settings("cpu", 224, TrainConfig(), given=set())
    assert chosen == CPU_AUTO and chosen["size"] == 32 and chosen["max_time"] == 600
    assert line.startswith("CPU detected: 32 px, width 32, batch 32") and "override with --size/--width" in line
    chosen, line = auto_settings("cpu", 224, TrainConfig(width=64, steps=300), given={"width", "steps"})
    assert "width" not in chosen and "steps" not in chosen and chosen["batch"] == CPU_AUTO["batch"]
    assert "width 64" in line and "up to 300 steps" in line and "yours: --steps, --width" in line
    assert "max_time" not in chosen and " s (" not in line  # the user's --steps is not cut at 600 s
    # never above the prepared size: 16-px data trains at 16 px
    chosen, line = auto_settings("cpu", 16, TrainConfig(), given=set())
    assert "size" not in chosen and line.startswith("CPU detected: 16 px")


def test_cuda_and_unmeasured_families_keep_the_trainconfig_defaults() -> None:
    chosen, line = auto_settings("cuda", 128, TrainConfig(), given=set())
    assert chosen == {} and line.startswith("CUDA detected:") and "128 px, width 64, batch 64, up to 20000 steps" in line
    chosen, line = auto_settings("cpu", 128, TrainConfig(model="stylegan2"), given=set())
    assert chosen == {} and "--model stylegan2 at its defaults" in line


def test_conditional_by_default_only_with_several_classes() -> None:
    assert default_conditional("dcgan", 2, None, None) is True
    assert default_conditional("dcgan", 1, None, None) is False
    assert default_conditional("dcgan", 2, False, None) is False  # --unconditional
    assert default_conditional("dcgan", 2, None, "NORMAL") is False  # --label trains one class
    assert default_conditional("dcgan-tutorial", 2, None, None) is False  # an unconditional family


def test_diffaugment_auto_by_data_run_length_and_size() -> None:
    on = ",".join(DEFAULT_POLICY)
    assert auto_policy(AUTO_MAX_IMAGES - 1, AUTO_MIN_STEPS, 32) == on
    assert auto_policy(AUTO_MAX_IMAGES - 1, AUTO_MIN_STEPS - 1, 32) == "none"  # a short (CPU) run at 32 px: off
    assert auto_policy(AUTO_MAX_IMAGES, 10 * AUTO_MIN_STEPS, 32) == "none"  # enough images at 32 px: off
    assert auto_policy(AUTO_MAX_IMAGES, 100, AUTO_TRANSLATION_SIZE) == "translation"  # from 64 px: translation
    assert auto_policy(AUTO_MAX_IMAGES - 1, AUTO_MIN_STEPS, 128) == on  # small data, long run: both
    assert auto_policy(AUTO_MAX_IMAGES, 100, 128, translation=False) == "none"  # a family it was not measured on


def _run_options(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())["options"]


def test_train_is_conditional_by_default_and_prints_its_choice(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", str(tiny_prepared), "--out", str(run), "--steps", "2", *TINY]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("CPU detected:"))
    assert "16 px, width 8, batch 8, up to 2 steps (" in line and "conditional" in line  # --steps given: no time cut
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["n_classes"] == 2 and ck["step"] == 2
    opts = _run_options(run)
    assert opts["conditional"] is True and opts["max_time"] is None and opts["width"] == 8
    assert opts["diffaug"] == "none"  # 48 images, but a 2-step run


def test_unconditional_opts_out_and_label_trains_one_class(tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "u"
    assert main(["train", str(tiny_prepared), "--out", str(run), "--steps", "1", "--max-time", "50", "--unconditional", *TINY]) == 0
    assert "unconditional" in capsys.readouterr().out
    opts = _run_options(run)
    assert opts["conditional"] is False and opts["max_time"] == 50  # the user's --max-time wins
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["n_classes"] == 0
    run = tmp_path / "n"
    assert main(["train", str(tiny_prepared), "--out", str(run), "--steps", "1", "--label", "NORMAL", *TINY]) == 0
    assert _run_options(run)["conditional"] is False and _run_options(run)["label"] == "NORMAL"
    assert main(["train", str(tiny_prepared), "--out", str(tmp_path / "x"), "--unconditional", "--conditional", *TINY]) == 2
