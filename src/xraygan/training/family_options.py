"""The family registry and typed family options (``--model-option KEY=VALUE``), without torch.

Every field of a family's ``Options`` dataclass is declared with :func:`option`: its type, range
(or choices), default and help. Values from the command line (strings), a YAML ``--config`` or a
preset are parsed by that declared type here, never by YAML: ``32:4`` stays a resolution map,
``012`` stays the text ``012`` for a path, ``ada=of`` is an error naming the option.

Types: ``bool`` (true/false, on/off, yes/no, 1/0), ``int``, ``float``, ``str``, ``"auto_bool"``
(``auto``, true or false) and ``"res_map"`` (``RES:VALUE`` pairs such as ``256:16,512:8``, or a
mapping). An option whose default is ``None`` also accepts ``none``/``null`` (unset: the family
chooses).

    @dataclass
    class MyOptions:
        mixing: float = option(0.9, float, "style-mixing probability", lo=0.0, hi=1.0)
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Optional, Sequence

from xraygan import options as opt
from xraygan.errors import UsageError

# --model name -> "module:Class" (imported on use, by xraygan.training.families.get_family)
FAMILIES: dict[str, str] = {
    "dcgan": "xraygan.training.families:DCGANFamily",
    "dcgan-tutorial": "xraygan.training.families:TutorialDCGANFamily",
    "stylegan2": "xraygan.training.family_stylegan2:StyleGAN2Family",
    "pggan": "xraygan.training.family_pggan:PGGANFamily",
    "fastgan": "xraygan.training.family_fastgan:FastGANFamily",
    "projected": "xraygan.training.family_projected:ProjectedFamily",
}
# families that cannot learn several classes in one model (their class says supports_conditional = False)
UNCONDITIONAL_FAMILIES = frozenset({"dcgan-tutorial"})

_TRUE, _FALSE = ("true", "on", "yes", "1"), ("false", "off", "no", "0")
_NONE = ("none", "null", "~", "")


def check_model(name: Any) -> str:
    """``name`` if it is a registered ``--model``, else ValueError listing them (an argparse checker)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model; choose from {', '.join(FAMILIES)}")
    return str(name)


check_model.__name__ = "model"


_NO_LEGACY = object()


def option(default: Any, type: Any, help: str, lo: Optional[float] = None, hi: Optional[float] = None,
           choices: Optional[Sequence[str]] = None, lo_open: bool = False, legacy: Any = _NO_LEGACY) -> Any:
    """A dataclass field of a family ``Options`` class with its declared type, range and help.

    ``legacy``: for an option added after runs were already trained, the value those runs trained
    with. A run whose resolved options (config.yaml) lack the key resumes with it
    (:func:`legacy_options`), so a later default never changes a run halfway.
    """
    meta = {"type": type, "help": help, "lo": lo, "hi": hi, "choices": tuple(choices) if choices else None, "lo_open": lo_open}
    if legacy is not _NO_LEGACY:
        meta["legacy"] = legacy
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: copy.copy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected true or false (on/off, yes/no, 1/0)")


def parse_res_map_text(value: Any) -> dict[int, int]:
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, str):
        pairs = []
        for part in (p.strip() for p in value.strip().strip("{}").split(",")):
            if not part:
                continue
            res, sep, val = part.partition(":")
            if not sep:
                raise ValueError("expected RES:VALUE pairs like 256:16,512:8")
            pairs.append((res, val))
    else:
        raise ValueError("expected RES:VALUE pairs like 256:16,512:8 (in YAML, quote them or write a mapping {256: 16})")
    out: dict[int, int] = {}
    for res, val in pairs:
        try:
            r, v = opt.positive_int(res), opt.positive_int(val)
        except ValueError:
            raise ValueError(f"{res}:{val}: resolutions and values must be positive integers") from None
        out[r] = v
    return out


def parse_value(f: dataclasses.Field, value: Any) -> Any:
    """``value`` (a string from the command line, or a YAML value) as field ``f`` declares; ValueError otherwise."""
    meta = f.metadata
    typ = meta.get("type")
    if typ is None:  # an undeclared field: taken as it is
        return value
    if typ == "res_map" and (value is None or (isinstance(value, str) and not value.strip())):
        return {}  # none given (run configs before format 2 wrote "")
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE and typ is not str):
        if f.default is None:
            return None
        raise ValueError("must be given (it has no unset value)")
    if typ is bool:
        return _bool(value)
    if typ == "auto_bool":
        return "auto" if str(value).strip().lower() == "auto" else _bool(value)
    if typ == "res_map":
        return parse_res_map_text(value)
    if typ is str:
        if not isinstance(value, str):
            raise ValueError("expected text (quote it in YAML)")
        value = value.strip()
        if meta.get("choices") and value not in meta["choices"]:
            raise ValueError(f"choose from {', '.join(meta['choices'])}")
        return value
    if typ is int:
        if meta.get("lo") is not None or meta.get("hi") is not None:
            return opt.integer(meta.get("lo"), meta.get("hi"))(value)
        return opt.integer()(value)
    if typ is float:
        return opt.real(meta.get("lo"), meta.get("hi"), lo_open=meta.get("lo_open", False))(value)
    raise TypeError(f"option {f.name}: unknown declared type {typ!r}")


def parse_options(options_cls: type, given: dict[str, Any], model: str) -> Any:
    """A family's ``Options`` built from ``model_options``: each value parsed by its declared type.

    Unknown keys and bad values are a :class:`UsageError` naming the option.
    """
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    unknown = sorted(str(k) for k in set(given) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise UsageError(f"model option(s) {', '.join(unknown)} are not known to --model {model}; its options are: {known} "
                         f"(list them with `xraygan train --model {model} --help-options`)")
    kw = {}
    for key, value in given.items():
        try:
            kw[key] = parse_value(fields[key], value)
        except ValueError as e:
            raise UsageError(f"--model-option {key}={value}: {e} (--model {model}; see --help-options)") from None
    return options_cls(**kw)


def describe_options(options_cls: type, model: str) -> str:
    """The ``--help-options`` text of a family: one line per option with type, range, default and help."""
    lines = [f"model options of --model {model} (--model-option KEY=VALUE, or model_option: in a YAML config):"]
    fields = dataclasses.fields(options_cls)
    if not fields:
        lines.append("  (none)")
    for f in fields:
        m = f.metadata
        typ = m.get("type")
        kind = {bool: "bool", int: "int", float: "float", str: "text", "auto_bool": "auto|bool", "res_map": "RES:VALUE,..."}.get(typ, "value")
        rng = ""
        if m.get("choices"):
            rng = "one of " + "|".join(m["choices"])
        elif m.get("lo") is not None or m.get("hi") is not None:
            lo, hi = m.get("lo"), m.get("hi")
            rng = f"{'>' if m.get('lo_open') else '>='} {lo:g}" if hi is None else f"{lo:g}..{hi:g}" if lo is not None else f"<= {hi:g}"
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        shown = "unset (the family chooses)" if default is None else repr(default) if isinstance(default, str) else default
        lines.append(f"  {f.name} ({kind}{', ' + rng if rng else ''}; default {shown})")
        lines.append(f"      {m.get('help', '')}")
    return "\n".join(lines)


def legacy_options(options_cls: type, resolved: dict[str, Any]) -> dict[str, Any]:
    """``resolved`` (a run's recorded model options) with every option declared with a ``legacy``
    value and missing from it set to that value: the run trained before the option existed."""
    missing = {f.name: f.metadata["legacy"] for f in dataclasses.fields(options_cls)
               if "legacy" in f.metadata and f.name not in resolved}
    return {**resolved, **missing}
