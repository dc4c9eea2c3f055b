"""Shortcut flags of ``xraygan train`` for family options: ``--r1-gamma X`` is ``--model-option r1_gamma=X``.

Only the option names are listed here. Each flag's type, range, default and help are its option's
declaration in the family's ``Options`` (:func:`xraygan.training.family_options.option`), the one
source that ``--help-options`` prints too: a value is parsed by that declaration when the config is
built (a bad one is a usage error naming the option), and the help text is filled in from it when
``xraygan train --help`` is shown (the families are imported then, not at every start).
"""
from __future__ import annotations

import argparse
from typing import Any

# family options that get a flag of their own (``--KEY-WITH-DASHES``)
KEYS = ("r1_gamma", "ada", "ada_target", "pl_weight", "phase_kimg", "feature_matching", "perceptual", "vgg_weights")
GROUP = "family option shortcuts (--FLAG VALUE = --model-option KEY=VALUE, checked by the option's declaration)"


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def add_shortcuts(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :data:`KEYS` entry (a string, or a YAML value from ``--config``); their help
    is taken from the declarations when the parser's help is formatted."""
    group = parser.add_argument_group(GROUP)
    actions = [group.add_argument(flag(k), default=None, metavar="VALUE", help=f"= --model-option {k}=VALUE") for k in KEYS]
    plain = parser.format_help

    def format_help() -> str:
        for action in actions:
            action.help = declared_help(action.dest).replace("%", "%%")
        return plain()

    parser.format_help = format_help  # type: ignore[method-assign]


def declarations(key: str) -> list[tuple[str, str, str]]:
    """(model, "KEY (type, range; default D)", help) of every family that declares option ``key``,
    as ``xraygan train --model MODEL --help-options`` prints them."""
    from xraygan.training.family_option_sets import FAMILY_OPTIONS
    from xraygan.training.family_options import describe_options

    out = []
    for model, options in FAMILY_OPTIONS.items():
        lines = describe_options(options, model).splitlines()
        for i, line in enumerate(lines[:-1]):
            if line.startswith(f"  {key} ("):
                out.append((model, line.strip(), lines[i + 1].strip()))
    return out


def declared_help(key: str) -> str:
    """The ``--help`` text of ``flag(key)``: the families declaring it, the declared help, type, range and default."""
    decl = declarations(key)
    if not decl:
        return f"= --model-option {key}=VALUE (no family declares {key})"
    texts = sorted({(kind, text) for _, kind, text in decl})
    shown = "; ".join(f"{text} {kind[len(key) + 1:]}" for kind, text in texts)
    return f"{', '.join(m for m, _, _ in decl)}: {shown}"


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The shortcut flags given on the command line or in ``--config``, by option name, each checked by
    its declaration in the ``--model`` family; a bad value, or a flag the family does not declare, is
    a :class:`~xraygan.errors.UsageError` naming the flag."""
    import dataclasses

    from xraygan.errors import UsageError
    from xraygan.training.family_option_sets import FAMILY_OPTIONS
    from xraygan.training.family_options import parse_value

    values = {k: getattr(args, k) for k in KEYS if getattr(args, k, None) is not None}
    if not values:
        return {}
    fields = {f.name: f for f in dataclasses.fields(FAMILY_OPTIONS[args.model])}
    out = {}
    for key, value in values.items():
        owners = [m for m, _, _ in declarations(key)]
        if not owners:
            raise UsageError(f"{flag(key)}: no --model declares the option {key}")
        field = fields.get(key) or next(f for f in dataclasses.fields(FAMILY_OPTIONS[owners[0]]) if f.name == key)
        try:  # the value first (the same error whichever --model), then whether --model has the option
            parse_value(field, value)
            out[key] = value  # kept as given, like a --model-option value: the family parses it again
        except ValueError as e:
            raise UsageError(f"{flag(key)} {value}: {e} (see --help-options)") from None
        if key not in fields:
            raise UsageError(f"{flag(key)}: {key} is not an option of --model {args.model} (only of {', '.join(owners)}); "
                             "see --help-options")
    return out


def for_family(options_cls: type) -> str:
    """The line ``--help-options`` adds: the shortcut flags of the options ``options_cls`` declares."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(options_cls)}
    flags = [f"{flag(k)} ({k})" for k in KEYS if k in names]
    return f"shortcut flags: {', '.join(flags)}" if flags else "shortcut flags: none"
