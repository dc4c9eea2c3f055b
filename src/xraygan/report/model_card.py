"""``MODEL_CARD.md`` for a training run, after Mitchell et al., "Model Cards for Model Reporting"
(FAT* 2019): model details, training data with provenance and licence, metrics (with their
floors), intended use, out-of-scope use, known limits, and the full config.

Everything comes from files in the run folder (``config.yaml``, ``metrics.jsonl``, ``eval/*.json``,
``checkpoints/``) and the prepared dataset's ``dataset.json``; a missing part is written as
"not recorded", never guessed.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import yaml

from xraygan.report.rundir import RunInfo, better, eval_info, eval_rows, fd_summary, fmt, latest_evals, load_run, provenance
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


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _model_section(info: RunInfo) -> str:
    cfg = info.options
    rows = [(k, cfg[k]) for k in _MODEL_KEYS if cfg.get(k) not in (None, {}, [])]
    last = info.metrics[-1] if info.metrics else {}
    reached = last.get("step")
    from xraygan import __version__

    out = [f"- xraygan version: {cfg.get('xraygan_version', __version__)}"]
    if reached is not None:
        out.append(f"- steps reached (last logged): {reached}")
    if info.checkpoints:
        out.append(f"- checkpoints: {', '.join(p.name for p in info.checkpoints[-5:])} (in `checkpoints/`)")
    out.append("")
    out.append(_table(("setting", "value"), rows) if rows else "Model settings: not recorded (no config.yaml).")
    return "\n".join(out)


def _data_section(info: RunInfo) -> str:
    if info.dataset is None:
        return "Training data: not recorded (the prepared dataset's dataset.json was not found).\n"
    ds, prov = info.dataset, provenance(info)
    out = [
        f"- prepared dataset: `{info.dataset_path}`",
        f"- source: `{prov['source']}` ({prov['source_type']})",
        f"- citation: {prov['citation']}",
        f"- licence: {prov['licence']}",
        f"- classes (label order): {', '.join(map(str, ds.get('classes', []))) or 'not recorded'}",
        f"- image size: {ds.get('size', 'not recorded')} px, grayscale",
        f"- images: {ds.get('n_images', 'not recorded')}",
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
        about = ", ".join(f"{k} {fmt(v)}" for k, v in eval_info(data) if k in ("n", "resolution", "features/name"))
        out += [f"Evaluation `eval/{name}.json` ({about}); compare each value with its floor (the same metric "
                "between two disjoint real halves; for memorisation, held-out real images):", "",
                _table(("metric", "synthetic", "floor", "better"), [(*r, better(r[0])) for r in eval_rows(data)]), ""]
    if not out:
        return "Metrics: not recorded (no FD in metrics.jsonl and no eval/*.json; run `xraygan evaluate`).\n"
    return "\n".join(out)


def render_model_card(info: RunInfo, now: _dt.datetime | None = None) -> str:
    """The Markdown text of a run's model card."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    config = yaml.safe_dump(info.config, sort_keys=False).rstrip() if info.config else "(no config.yaml)"
    return "\n".join([
        f"# Model card: xraygan run `{info.root.name}`",
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
        "## Config", "", "```yaml", config, "```", "",
    ])


def write_model_card(run_dir: str | Path) -> Path:
    """Write ``RUN/MODEL_CARD.md`` (atomically, replacing an older card) and return its path."""
    info = load_run(run_dir)
    path = Path(run_dir) / "MODEL_CARD.md"
    atomic_write_text(path, render_model_card(info))
    return path
