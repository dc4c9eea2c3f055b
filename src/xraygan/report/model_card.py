"""``MODEL_CARD.md`` for a training run, after Mitchell et al., "Model Cards for Model Reporting"
(FAT* 2019): model details, training data with provenance and licence, metrics (with their
floors), intended use, out-of-scope use, known limits, and the full config.

Everything comes from files in the run folder (``config.yaml``, ``metrics.jsonl``, ``eval/*.json``,
``checkpoints/``) and the prepared dataset's ``dataset.json``; a missing part is written as
"not recorded", never guessed. Text that comes from the data (labels, paths, run and file names,
config values) is escaped (:func:`md_text`, :func:`md_code`, :func:`md_fence`), so a label such as
``<script>`` or ``*x* | y`` is shown as written and never becomes HTML or Markdown structure.
"""
from __future__ import annotations

import datetime as _dt
import math
import re
from pathlib import Path
from typing import Any

import yaml

from xraygan.metrics.registry import better
from xraygan.report.rundir import (KNOWN_SOURCES, RunInfo, eval_info, eval_rows, fd_summary, fmt, latest_evals,
                                    load_run, provenance)
from xraygan.utils.fs import atomic_write_text

INTENDED_USE = """\
- Research on data augmentation and on generative models for radiographs: generating extra
  training images for a classifier experiment whose benefit is then measured (`xraygan experiment`).
- Teaching and method development with images that are not any real patient's.
"""
OUT_OF_SCOPE = """\
- **Not for diagnosis, screening or any clinical decision.** The images are synthetic; they show
  what the generator learnt, not anatomy or disease of a person.
- Not a substitute for real validation or test data: evaluate classifiers on real images only.
- Not for populations, devices or views the training data did not cover.
"""
KNOWN_LIMITS = """\
- GAN samples can copy training images (memorisation): check the nearest-real-image distances
  and closest pairs in `eval/` before sharing any synthetic image derived from patient data.
- Labels of generated images are what the generator was asked for; class consistency (a real-data
  classifier's agreement) measures how often that holds.
- Fréchet distance is biased at small n and depends on the feature extractor: compare a value
  only with its floor (two disjoint real halves at the same n) and with runs measured the same way.
- Quality swings between checkpoints; the best checkpoint on a metric may not be the last one.
- The generator inherits the training data's biases (one hospital, one age group, one device
  mix, class imbalance) and its resolution.
"""

_MODEL_KEYS = (
    "model", "size", "conditional", "label", "split", "loss", "smooth", "steps", "batch", "lr_g", "lr_d",
    "latent_dim", "width", "ema", "diffaug", "seed", "model_options", "preset",
)


_MD_SPECIAL = re.compile(r"([\\`*\[\]|#!{}])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def md_text(value: Any) -> str:
    """``value`` as literal Markdown text on one line: ``& < >`` become HTML entities (never raw
    HTML), Markdown punctuation is backslash-escaped, and line breaks become spaces."""
    text = " ".join(str(value).split("\n")).replace("\r", " ").replace("\0", "")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)


def md_code(value: Any) -> str:
    """``value`` as one inline code span (shown literally), whatever backticks it holds."""
    text = " ".join(str(value).replace("\r", " ").replace("\0", "").split("\n"))
    ticks = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def md_fence(text: str, info: str = "") -> str:
    """``text`` as a fenced code block whose fence no line of ``text`` can close."""
    ticks = "`" * max(3, max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    return f"{ticks}{info}\n{text}\n{ticks}"


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(md_text(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_text(fmt(c)) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _model_section(info: RunInfo) -> str:
    cfg = info.options
    rows = [(k, cfg[k]) for k in _MODEL_KEYS if cfg.get(k) not in (None, {}, [])]
    last = info.metrics[-1] if info.metrics else {}
    reached = last.get("step")
    from xraygan import __version__

    out = [f"- xraygan version: {md_text(cfg.get('xraygan_version', __version__))}"]
    if reached is not None:
        out.append(f"- steps reached (last logged): {reached}")
    if info.checkpoints:
        out.append(f"- checkpoints: {', '.join(md_text(p.name) for p in info.checkpoints[-5:])} (in `checkpoints/`)")
    out.append("")
    out.append(_table(("setting", "value"), rows) if rows else "Model settings: not recorded (no config.yaml).")
    return "\n".join(out)


def _data_section(info: RunInfo) -> str:
    if info.dataset is None:
        return "Training data: not recorded (the prepared dataset's dataset.json was not found).\n"
    ds, prov = info.dataset, provenance(info)
    out = [
        f"- prepared dataset: {md_code(info.dataset_path)}",
        f"- source: {md_code(prov['source'])} ({md_text(prov['source_type'])})",
        f"- citation: {md_text(prov['citation'])}",
        f"- licence: {md_text(prov['licence'])}",
        f"- classes (label order): {', '.join(md_text(c) for c in ds.get('classes', [])) or 'not recorded'}",
        f"- image size: {md_text(ds.get('size', 'not recorded'))} px, grayscale",
        f"- images: {md_text(ds.get('n_images', 'not recorded'))}",
    ]
    counts = ds.get("counts")
    if isinstance(counts, dict) and counts:
        classes = list(ds.get("classes") or next(iter(counts.values()), {}).keys())
        rows = [(split, *[(c_ or {}).get(c, "") for c in classes]) for split, c_ in counts.items()]
        out += ["", "Images per split and class in the prepared dataset:", "", _table(("split", *classes), rows)]
    return "\n".join(out) + "\n"


def _metrics_section(info: RunInfo) -> str:
    out = []
    fds = fd_summary(info)
    if fds:
        rows = [(k, v["last"], int(v["last_step"]), v["best"], int(v["best_step"]), v.get("floor")) for k, v in fds.items()]
        out += ["During training (`metrics.jsonl`):", "", _table(("metric", "last", "at step", "best", "at step", "floor"), rows), ""]
    for name in latest_evals(info.evals):
        data = info.evals[name]
        about = ", ".join(f"{k} {md_text(fmt(v))}" for k, v in eval_info(data) if k in ("n", "resolution", "features/name"))
        out += [f"Evaluation {md_code(f'eval/{name}.json')} ({about}); compare each value with its floor (the same metric "
                "between two disjoint real halves; for memorisation, held-out real images):", "",
                _table(("metric", "synthetic", "floor", "better"), [(*r, better(r[0])) for r in eval_rows(data)]), ""]
    if not out:
        return "Metrics: not recorded (no FD in metrics.jsonl and no eval/*.json; run `xraygan evaluate`).\n"
    return "\n".join(out)


# --- Hugging Face-style YAML front matter -------------------------------------------------------

_HF_LICENCES = {  # licence text as dataset.json / KNOWN_SOURCES write it -> Hugging Face licence id
    "cc by 4.0": "cc-by-4.0", "cc-by-4.0": "cc-by-4.0", "cc by-sa 4.0": "cc-by-sa-4.0", "cc-by-sa-4.0": "cc-by-sa-4.0",
    "cc by-nc 4.0": "cc-by-nc-4.0", "cc-by-nc-4.0": "cc-by-nc-4.0", "cc by-nc-sa 4.0": "cc-by-nc-sa-4.0",
    "cc0": "cc0-1.0", "cc0 1.0": "cc0-1.0", "cc0-1.0": "cc0-1.0", "mit": "mit", "apache-2.0": "apache-2.0",
    "apache 2.0": "apache-2.0", "odbl": "odbl", "pddl": "pddl",
}
_YAML_PLAIN = re.compile(r"[A-Za-z0-9 .,:;/()+=@%-]*")  # strings written as they are (the emitter may still quote)
_YAML_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_YAML_NEUTRAL = set("<>&`*_[]|#!{}~'$")  # written as \xHH escapes inside double-quoted scalars


class _FrontMatterDumper(yaml.SafeDumper):
    """safe_dump with every string that is not plainly safe in double quotes (see :func:`front_matter`)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    plain = _YAML_PLAIN.fullmatch(re.sub(r"(?<=[A-Za-z0-9])_(?=[A-Za-z0-9])", "", value))
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=None if plain else '"')


_FrontMatterDumper.add_representer(str, _represent_str)


def _neutral_quoted(m: re.Match) -> str:
    parts = re.findall(r"\\.|.", m.group(1), flags=re.S)
    return '"' + "".join(f"\\x{ord(p):02X}" if p in _YAML_NEUTRAL else p for p in parts) + '"'


def yaml_front_matter(data: dict[str, Any]) -> str:
    """``data`` as a YAML front-matter block (``---`` ... ``---``) that ``yaml.safe_load`` reads back as ``data``.

    Written by ``yaml.safe_dump`` (block style, pure ASCII: other characters become escapes), with
    every string that holds anything beyond letters, digits and plain punctuation double-quoted; inside
    those quotes the characters that mean something to HTML or Markdown (``< > & * _ [ ] | ...``) are
    written as ``\\xHH`` escapes, so a label such as ``<script>`` or ``*x* | y`` can never become markup
    in a renderer that shows front matter as text, and a value can never end the block.
    """
    text = yaml.dump(data, Dumper=_FrontMatterDumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=False, width=10**9)
    return "---\n" + _YAML_QUOTED.sub(_neutral_quoted, text) + "---\n"


def hf_licence(licence: str) -> dict[str, str]:
    """``license`` (and ``license_name`` for one Hugging Face has no id for) of a licence text."""
    key = " ".join(str(licence).lower().split())
    if key in _HF_LICENCES:
        return {"license": _HF_LICENCES[key]}
    if key.startswith("unknown") or not key:
        return {"license": "unknown"}
    return {"license": "other", "license_name": str(licence)}


def front_matter_data(info: RunInfo) -> dict[str, Any]:
    """The metadata of the card's front matter (Hugging Face model-card fields, plus ``xraygan``)."""
    cfg = info.options
    prov = provenance(info)
    source = prov["source"]
    dataset = next((k for k in KNOWN_SOURCES if k in source), None)
    if dataset is None and info.dataset is not None and source != "unknown":
        p = Path(source.rstrip("/\\"))
        dataset = (p.parent.name if p.suffix else p.name) or None  # a folder name, never a whole path
    model = cfg.get("model")
    conditional = bool(cfg.get("conditional"))
    tags = ["xraygan", "gan", "medical-imaging", "x-ray", "radiology", "synthetic-data", "not-for-clinical-use"]
    if model:
        tags.insert(2, str(model))
    if conditional:
        tags.append("conditional-image-generation")
    results = []
    for key, v in fd_summary(info).items():
        results.append({"type": key, "name": f"{key} during training (last)", "value": float(v["last"])})
    for name in latest_evals(info.evals):
        for metric, value, floor in eval_rows(info.evals[name]):
            if metric.startswith("overall/") and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                short = metric.split("/", 1)[1]
                floor_s = f", floor {fmt(floor)}" if isinstance(floor, (int, float)) and not isinstance(floor, bool) else ""
                results.append({"type": short, "name": f"{short} ({name}{floor_s})", "value": float(value)})
    out: dict[str, Any] = {**hf_licence(prov["licence"]), "library_name": "pytorch",
                           "pipeline_tag": "unconditional-image-generation", "tags": tags}
    if dataset:
        out["datasets"] = [dataset]
    if results:
        out["metrics"] = list(dict.fromkeys(r["type"] for r in results))
        out["model-index"] = [{"name": info.root.name, "results": [{
            "task": {"type": "unconditional-image-generation", "name": "synthetic X-ray generation"},
            **({"dataset": {"type": dataset, "name": dataset}} if dataset else {}),
            "metrics": results}]}]
    classes = (info.dataset or {}).get("classes") or (info.config or {}).get("classes")
    xg = {"model": model, "conditional": conditional, "label": cfg.get("label"), "size": cfg.get("size"),
          "classes": [str(c) for c in classes] if isinstance(classes, list) else None,
          "synthetic_images": True, "intended_use": "research; not for diagnosis"}
    out["xraygan"] = {k: v for k, v in xg.items() if v is not None}
    return out


def render_model_card(info: RunInfo, now: _dt.datetime | None = None) -> str:
    """The Markdown text of a run's model card."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    config = yaml.safe_dump(info.config, sort_keys=False).rstrip() if info.config else "(no config.yaml)"
    return yaml_front_matter(front_matter_data(info)) + "\n".join([
        f"# Model card: xraygan run {md_code(info.root.name)}",
        "",
        f"Generated {now.strftime('%Y-%m-%d %H:%M UTC')} from the files in this run folder. "
        "Every image this model generates is **SYNTHETIC**.",
        "",
        "## Model details", "", _model_section(info), "",
        "## Training data", "", _data_section(info),
        "## Metrics", "", _metrics_section(info),
        "## Intended use", "", INTENDED_USE,
        "## Out of scope", "", OUT_OF_SCOPE,
        "## Known limits", "", KNOWN_LIMITS,
        "## Config", "", md_fence(config, "yaml"), "",
    ])


def write_model_card(run_dir: str | Path) -> Path:
    """Write ``RUN/MODEL_CARD.md`` (atomically, replacing an older card) and return its path."""
    info = load_run(run_dir)
    path = Path(run_dir) / "MODEL_CARD.md"
    atomic_write_text(path, render_model_card(info))
    return path
