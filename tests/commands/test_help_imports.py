"""Building the command line and showing help stay fast: no torch, torchvision or scipy is imported
(importing torch alone takes seconds), also for `xraygan train --help` and `--help-options`, whose
family option flags read the declarations in xraygan.training.family_option_sets."""
from __future__ import annotations

import subprocess
import sys

CHECK = r"""
import contextlib, io, re, sys
from xraygan import cli

args = cli.parse_args(["train", "data", "--out", "run", "--model", "stylegan2", "--r1-gamma", "2"])
assert (args.model, args.r1_gamma) == ("stylegan2", "2"), args
shown = io.StringIO()
with contextlib.redirect_stdout(shown):
    assert cli.main([]) == 0
    for name in cli.COMMANDS:
        try:
            cli.main([name, "--help"])
        except SystemExit as e:
            assert e.code == 0, (name, e.code)
    for model in ("dcgan", "stylegan2"):
        assert cli.main(["train", "--model", model, "--help-options"]) == 0
assert all(f"usage: xraygan {name}" in shown.getvalue() for name in cli.COMMANDS)
assert re.search(r"--r1-gamma VALUE\s+stylegan2: R1 weight", shown.getvalue()) and "d_norm (" in shown.getvalue()
print(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "scipy", "sklearn"}))
"""


def test_parsing_and_help_import_no_heavy_library():
    r = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout
