"""List the option presets that ship with xraygan.

A preset is a YAML file of options for a command (mostly `xraygan train`). Use one with
`xraygan train PREPARED --out RUN --preset NAME`; options given on the command line override it,
and `--print-config` shows the result.
"""
from __future__ import annotations

import argparse

HELP = "list the shipped option presets (use with --preset NAME)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="show the options of this preset")


def run(args: argparse.Namespace) -> int:
    import yaml

    from xraygan.presets import list_presets, preset_path

    if args.name:
        print(preset_path(args.name).read_text(), end="")
        return 0
    for name in list_presets():
        text = preset_path(name).read_text()
        first = text.splitlines()[0].lstrip("# ").strip() if text.startswith("#") else ""
        opts = yaml.safe_load(text) or {}
        print(f"{name:20s} {first}  ({len(opts)} options)")
    return 0
