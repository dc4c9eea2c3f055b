"""Build a pretrained model that ships in the package: ``src/xraygan/pretrained/<name>.pt`` and ``<name>.md``.

Usage::

    python scripts/make_pretrained.py RUN [--checkpoint best] [--name pediatric-cxr-64] \\
        [--eval EVAL.json ...] [--dtype float16] [--out-dir src/xraygan/pretrained]

Keeps only what generation needs from the run's checkpoint (the EMA generator with its BatchNorm
statistics, config, classes, size, latent size, step; see :func:`xraygan.pretrained.export_pretrained`),
stored as fp16 by default so the file stays under 10 MB, and writes a model card (after Mitchell et
al., "Model Cards for Model Reporting", FAT* 2019) with the data's provenance and CC BY 4.0
attribution, the training config, steps and time, and the evaluation figures of each ``--eval``
JSON (written by ``xraygan evaluate``) next to their floors.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xraygan.pretrained import PRETRAINED_DIR, export_pretrained
from xraygan.report.model_card import INTENDED_USE, OUT_OF_SCOPE
from xraygan.utils.fs import atomic_write_text

DESCRIPTION = "conditional DCGAN, 64 px pediatric chest X-rays, NORMAL / PNEUMONIA (20 CPU minutes of training)"
CITATION = ("Kermany D, Zhang K, Goldbaum M. Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images "
            "for Classification, Mendeley Data, v2, 2018, doi:10.17632/rscbjbr9sj.2")
LICENCE = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"
CONFIG_KEYS = ("model", "size", "conditional", "loss", "smooth", "batch", "lr_g", "lr_d", "beta1", "beta2",
               "latent_dim", "width", "ema", "diffaug", "steps", "max_time", "seed", "model_options")


def _f(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _dataset(cfg: dict[str, Any], run: Path) -> dict[str, Any] | None:
    for base in (Path(cfg["data"]), run.parent / cfg["data"], run / cfg["data"]):
        if (base / "dataset.json").is_file():
            return json.loads((base / "dataset.json").read_text())
    return None


def _data_section(ds: dict[str, Any] | None) -> str:
    out = [f"- Source: pediatric frontal chest radiographs (children aged one to five, Guangzhou Women and "
           f"Children's Medical Center), labelled NORMAL or PNEUMONIA. {CITATION}.",
           f"- Licence of the data: {LICENCE}. These weights are derived from it and are shared under the same "
           "licence with this attribution.",
           "- Paper: Kermany DS et al., \"Identifying Medical Diagnoses and Treatable Diseases by Image-Based Deep "
           "Learning\", Cell 172(5), 2018."]
    if ds:
        counts = ds.get("counts", {})
        out.append(f"- Prepared with `xraygan prepare` at {ds.get('size')} px ({ds.get('options', {}).get('fit')} to square), "
                   f"{ds.get('n_images')} images of {ds.get('n_patients')} patients, splits {ds.get('splits_from')}; "
                   "trained on the train split only: "
                   + ", ".join(f"{k} {v}" for k, v in counts.get("train", {}).items()) + ".")
        out.append("- Held out (never seen in training): " + "; ".join(
            f"{s}: " + ", ".join(f"{k} {v}" for k, v in counts.get(s, {}).items()) for s in ("val", "test") if s in counts) + ".")
    return "\n".join(out)


def _eval_section(spec: str) -> str:
    label, _, path = spec.rpartition("=")
    e = json.loads(Path(path).read_text())
    o, src = e["overall"], e.get("run") or {"fake": e.get("fake")}
    src = {k: (Path(v).name if isinstance(v, str) and ("/" in v or "\\" in v) else v) for k, v in src.items()}  # no machine paths
    rows = [("Fréchet distance (FD)", o["fd"]), ("precision", o["precision"]), ("recall", o["recall"]),
            ("density", o.get("density")), ("coverage", o.get("coverage"))]
    lines = [f"### {label or path}", "", f"Source: {json.dumps(src)}; n = {e['n']} per side, features `{e['features']['name']}` "
             f"({e['features'].get('fingerprint')}), {e.get('created')}.", "",
             "| metric | value | floor (two real halves) |", "|---|---|---|"]
    lines += [f"| {k} | {_f(v['value'])} | {_f(v['floor'])} |" for k, v in rows if v]
    for c, v in (e.get("class_consistency") or {}).items():
        lines.append(f"| class consistency {c} (n fake {v.get('n_fake')}) | {_f(v['value'])} | {_f(v['floor'])} |")
    per_class = {c: v for c, v in (e.get("per_class") or {}).items() if isinstance(v, dict)}
    for c, v in per_class.items():
        lines.append(f"| FD {c} (n {v.get('n')}) | {_f(v['fd']['value'])} | {_f(v['fd']['floor'])} |")
    if per_class:
        lines += ["", "Per class (the real side: patients the model never trained on when the real set is a prepared "
                  "dataset's val/test split; 95% bootstrap interval in brackets: recall and coverage resample real "
                  "patients, precision the synthetic images):", "",
                  "| class | n real (patients) | precision | recall | coverage | floor P / R / C |", "|---|---|---|---|---|---|"]
        for c, v in per_class.items():
            ci = v.get("ci95") or {}

            def cell(m: str) -> str:
                lo_hi = ci.get(m)
                return _f(v[m]["value"]) + (f" [{_f(lo_hi[0])}, {_f(lo_hi[1])}]" if lo_hi else "")

            lines.append(f"| {c} | {v.get('n')} ({v.get('n_patients', '?')}) | {cell('precision')} | {cell('recall')} | "
                         f"{cell('coverage')} | {_f(v['precision']['floor'])} / {_f(v['recall']['floor'])} / {_f(v['coverage']['floor'])} |")
    floor_set = e.get("class_consistency_floor_set")
    if floor_set:
        lines += ["", f"Class consistency: a real-data classifier's agreement with the requested label; floor = its "
                  f"accuracy on {floor_set}. FD/precision/recall floors compare two disjoint real halves at the same n."]
    return "\n".join(lines)


LIMITS = """\
- Trained for only {trained} on {threads} CPU thread(s) ({step} steps, {images} images seen): its
  figures stay below their real-vs-real floors (see the tables above: FD far above its floor; per-class
  recall and coverage say how much of each class's variety the samples reach). Do not expect it to help
  a classifier without checking with `xraygan experiment`.
- {size} px only; one hospital, one age group (1-5 years), one device mix; class imbalance of the source
  (about 3 PNEUMONIA per NORMAL image).
- Weights stored as {dtype}: images differ from the original float32 checkpoint's by at most 1 grey level
  (measured on 200 images, seed 0: 0.8% of pixels differ by 1, none by more).
- GAN samples can resemble training images: check memorisation (`xraygan evaluate` writes nearest-neighbour
  pairs) before sharing derived images.
"""


def render_card(state: dict[str, Any], ds: dict[str, Any] | None, evals: list[str], file_bytes: int, run: Path,
                checkpoint: str, training_time: str | None = None) -> str:
    """The model card (Markdown) of an exported pretrained model. Paths appear by their last part only
    (a card ships in the package: no machine paths)."""
    cfg, name = state["config"], state["name"]
    trained = training_time or f"{state['elapsed'] / 60:.1f} minutes"
    checkpoint = checkpoint if checkpoint in ("best", "latest") else Path(checkpoint).name
    n_params = sum(v.numel() for k, v in state["generator"].items() if v.is_floating_point())
    parts = [f"# {name}", "", state["description"], "",
             "## Model", "",
             f"- {state['model']} generator, {'conditional on ' + ', '.join(state['classes']) if state['n_classes'] else 'unconditional'}, "
             f"{state['size']} px grayscale, latent {state['latent_dim']}; {n_params:,} parameters (EMA generator: "
             f"{state['ema']}, BatchNorm statistics recomputed from its own outputs), stored as {state['dtype']} "
             f"({file_bytes / 1e6:.2f} MB).",
             f"- Training: step {state['step']} (checkpoint `{checkpoint}`{', the lowest FD of the periodic evaluations' if checkpoint == 'best' else ''}), "
             f"{state['images_seen']} images seen, {trained} of training on CPU; "
             f"exported from run `{run.name}`.",
             "", "| setting | value |", "|---|---|"]
    parts += [f"| {k} | {_f(cfg[k])} |" for k in CONFIG_KEYS if k in cfg]
    parts += ["", "## Training data", "", _data_section(ds), "", "## Evaluation", ""]
    parts += [_eval_section(p) + "\n" for p in evals] or ["Not recorded.\n"]
    parts += ["## Intended use", "", INTENDED_USE, "## Out of scope", "", OUT_OF_SCOPE, "## Known limits", "",
              LIMITS.format(size=state["size"], step=state["step"], images=state["images_seen"], dtype=state["dtype"],
                            trained=trained, threads=cfg.get("threads") or "all"),
              "## Use", "", "```", "xraygan pretrained", f"xraygan generate --pretrained {name} --n 100 --out synthetic/", "```", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder written by `xraygan train`")
    p.add_argument("--checkpoint", default="best", help="latest, best or a checkpoint path")
    p.add_argument("--name", default="pediatric-cxr-64", help="model name (file stem)")
    p.add_argument("--description", default=DESCRIPTION, help="one-line description shown by `xraygan pretrained`")
    p.add_argument("--eval", action="append", default=[], metavar="[TITLE=]FILE", help="evaluation JSON(s) to quote in the card, each with an optional title")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="storage type of the weights")
    p.add_argument("--out-dir", type=Path, default=PRETRAINED_DIR, help="where the .pt and .md go")
    p.add_argument("--training-time", help="how long it trained, as the card says it (default: the run's wall minutes), "
                   "e.g. '4 CPU-minutes (process CPU time)'")
    a = p.parse_args(argv)
    out = a.out_dir / f"{a.name}.pt"
    state = export_pretrained(a.run, out, a.checkpoint, a.name, a.description, a.dtype)
    run = Path(a.run).resolve()
    card = render_card(state, _dataset(state["config"], run), a.eval, out.stat().st_size, run, str(a.checkpoint), a.training_time)
    atomic_write_text(a.out_dir / f"{a.name}.md", card)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {a.out_dir / (a.name + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
