"""The ``xraygan`` command line: parse options, build a config, call the library.

Each subcommand lives in ``xraygan.commands.<name>`` and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import torch and friends
inside ``run`` only, so ``xraygan --help`` stays fast.

Every subcommand also accepts ``--config FILE.yaml`` (keys are option names; the command line
overrides them) and ``--print-config`` (print the resolved options as YAML and exit). Commands
that train accept ``--preset NAME`` (see ``xraygan presets``). Values from a config file or preset
go through the same checks (argparse ``type=`` and ``choices``) as typed ones.

Exit statuses: 0 success; 2 an invalid command line or config (argparse errors and
:class:`~xraygan.errors.UsageError`, found before any input is read); 1 any other error (every
other :class:`~xraygan.errors.XrayganError`; an unexpected exception prints one line
``xraygan CMD: internal error: ...``, or its traceback with ``-v``); 130 interrupted (Ctrl-C);
143 stopped by SIGTERM.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from xraygan import __version__
from xraygan.errors import UsageError, XrayganError

# name -> module; the order is the order of `xraygan --help`.
COMMANDS: dict[str, str] = {
    "prepare": "xraygan.commands.prepare",
    "train": "xraygan.commands.train",
    "generate": "xraygan.commands.generate",
    "evaluate": "xraygan.commands.evaluate",
    "demo": "xraygan.commands.demo",
    "experiment": "xraygan.commands.experiment",
    "presets": "xraygan.commands.presets",
    "pretrained": "xraygan.commands.pretrained",
    "report": "xraygan.commands.report",
    "export": "xraygan.commands.export",
}

_COMMON = {"config", "print_config", "preset", "command", "_run", "_check", "verbose", "quiet"}

EXIT_CODES = """exit status:
  0    success
  1    an error in the input or while running (missing or unreadable files, a training run that
       diverged, ...; the message says what and how to fix it), or an internal error (rerun with -v
       for its traceback)
  2    an invalid command line or config file (unknown option, a value out of range), found before
       any input is read
  130  interrupted (Ctrl-C)
  143  stopped by SIGTERM (nothing partial left; training writes a checkpoint first)"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with one sub-parser per registered command."""
    parser = _Parser(
        prog="xraygan",
        description="Train GANs on X-ray images, generate synthetic X-rays, evaluate them, and test "
        "whether they help a classifier. Run `xraygan COMMAND --help` for each command.",
        formatter_class=_Formatter,
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"xraygan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(modname)
        sp = sub.add_parser(name, help=mod.HELP, description=mod.__doc__, formatter_class=_Formatter)
        mod.add_arguments(sp)
        g = sp.add_argument_group("configuration")
        g.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file (keys are option names); the command line overrides it")
        g.add_argument("--print-config", action="store_true", help="print the resolved options as YAML and exit")
        if getattr(mod, "PRESETS", False):
            g.add_argument("--preset", metavar="NAME", help="start from a shipped preset (list them with `xraygan presets`)")
        g.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
        g.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
        sp.set_defaults(_run=mod.run, _check=getattr(mod, "check", None))
    return parser


def _load_yaml_options(path: Path, sp: argparse.ArgumentParser, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{what} {path} cannot be read: {e}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{what} {path} is not valid YAML: {' '.join(str(e).split())}") from None
    except ValueError as e:  # PyYAML's scanner lets some escapes through (e.g. "\U00110000")
        raise UsageError(f"{what} {path} is not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise UsageError(f"{what} {path} is not a usable config: its values are nested too deeply") from None
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path} must be a mapping of option names to values")
    if data.get("format") == "xraygan-run":  # a run's config.yaml: its training options reproduce the run
        from xraygan.training.config import options_from_run_config
        from xraygan.training.rundir import RUN_FORMAT_VERSION
        from xraygan.utils.formats import check_format_version

        check_format_version(path, data.get("format_version"), what="run config", current=RUN_FORMAT_VERSION,
                             rerun="give the options as a YAML config or on the command line instead")
        data = options_from_run_config(data)
        data["model_option"] = data.pop("model_options", None) or {}
        data["force"] = False  # never replace a folder because the original run was started with --force
    actions = {a.dest: a for a in sp._actions}
    out = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in actions or dest in _COMMON:
            raise UsageError(f"{what} {path}: unknown option '{key}' for `xraygan {sp.prog.split()[-1]}`")
        try:
            out[dest] = _convert(actions[dest], value)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
            raise UsageError(f"{what} {path}: option '{key}': {str(e).encode('unicode_escape').decode('ascii')}") from None
    return out


def _convert(action: argparse.Action, value: Any) -> Any:
    """A config-file value checked and converted as argparse would check the same value typed."""
    if isinstance(action, argparse._AppendAction):
        # a repeatable KEY=VALUE option may be written as a mapping (its values keep their YAML types);
        # the command line appends to it
        if isinstance(value, dict):
            return [(str(k).replace("-", "_"), v) for k, v in value.items()]
        items = list(value or [])
        return [action.type(str(v)) if action.type else v for v in items]
    if value is None or isinstance(value, (list, dict)) or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return value  # list-valued options (experiment --ratios, --arms) take YAML lists as they are
    typ = action.type
    if typ is not None:
        checker = getattr(typ, "checker", None)
        if checker is not None:
            try:
                value = checker(value)
            except ValueError as e:
                raise ValueError(f"{value}: {e}") from None
        elif typ in (int, float):
            if isinstance(value, bool) or (typ is int and isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"{value!r}: must be {'an integer' if typ is int else 'a number'}")
            value = typ(value) if isinstance(value, (int, float)) else typ(str(value))
        elif isinstance(value, str) or typ is Path:
            value = typ(str(value))
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{value!r}: choose from {', '.join(map(str, action.choices))}")
    return value


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


def _option_value(argv: list[str], flag: str) -> str | None:
    """The value of ``flag`` in ``argv`` (``--flag V`` or ``--flag=V``), last one wins."""
    value = None
    for i, tok in enumerate(argv):
        if tok == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif tok.startswith(flag + "="):
            value = tok.split("=", 1)[1]
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv`` applying preset, then config file, then command-line options."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((t for t in argv if not t.startswith("-")), None)
    if command in COMMANDS and "-h" not in argv and "--help" not in argv:
        sp = _subparser(parser, command)
        defaults: dict[str, Any] = {}
        preset = _option_value(argv, "--preset")
        if preset:
            from xraygan.presets import preset_path

            defaults.update(_load_yaml_options(preset_path(preset), sp, "preset"))
        config = _option_value(argv, "--config")
        if config:
            defaults.update(_load_yaml_options(Path(config), sp, "config file"))
        if defaults:
            sp.set_defaults(**defaults)
            # positional arguments given in a preset or config file are optional on the command line
            for action in sp._actions:
                if action.dest in defaults and not action.option_strings and action.nargs is None:
                    action.nargs = "?"
                    action.default = defaults[action.dest]
    return parser.parse_args(argv)


def resolved_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of a parsed command as a plain dict (what --print-config shows)."""
    out = {}
    for k, v in vars(args).items():
        if k in _COMMON:
            continue
        if isinstance(v, Path):
            v = str(v)
        elif isinstance(v, list) and v and all(isinstance(t, tuple) and len(t) == 2 for t in v):
            v = dict(v)  # repeatable KEY=VALUE options print as a mapping (and read back as one)
        out[k] = v
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xraygan`` console script; returns the exit status."""
    given = list(sys.argv[1:] if argv is None else argv)
    if "" in given:  # `xraygan prepare SRC "$OUT"` with OUT unset would otherwise mean the current folder
        print(f"xraygan: error: argument {given.index('') + 1} is empty (an unset shell variable?); "
              "give a value or leave the argument out", file=sys.stderr)
        return 2
    try:
        args = parse_args(argv)
    except XrayganError as e:  # a config file or preset that cannot be used
        print(f"xraygan: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    except SystemExit as e:  # argparse: --help and --version exit 0 (raised on), errors return their status 2
        if e.code in (0, None):
            raise
        return int(e.code) if isinstance(e.code, int) else 2
    if not args.command:
        build_parser().print_help()
        return 0
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    if args.print_config:
        try:
            if args._check is not None:  # the command's own checks (e.g. train: TrainConfig and family options)
                args._check(args)
        except XrayganError as e:
            print(f"xraygan {args.command}: error: {e}", file=sys.stderr)
            return 2 if isinstance(e, UsageError) else 1
        print(yaml.safe_dump(resolved_options(args), sort_keys=False), end="")
        return 0
    from xraygan.utils.locks import Terminated

    try:
        return int(args._run(args) or 0)
    except UsageError as e:
        print(f"xraygan {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Terminated as e:
        print(f"xraygan {args.command}: {e}", file=sys.stderr)
        return 143
    except XrayganError as e:
        print(f"xraygan {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"xraygan {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the machine said no (read-only or full disk, permissions, a file in the way)
        if args.verbose:
            raise
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f)
        what = e.strerror or " ".join(str(e).split()) or type(e).__name__
        print(f"xraygan {args.command}: error: {where + ': ' if where else ''}{what}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: one line, or the traceback with -v
        if args.verbose:
            raise
        text = " ".join(str(e).split())
        print(f"xraygan {args.command}: internal error: {type(e).__name__}: {text} (rerun with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
