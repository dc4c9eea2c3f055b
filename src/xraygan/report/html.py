"""One self-contained HTML page about a training run or an experiment (``xraygan report``).

Every image is embedded as a ``data:`` URI and the style sheet is inline, so the page can be mailed
or archived as one file and opens offline; there are no scripts and no external references. A
part that is missing from the folder gets a section that says "not available" and why.

Sections: summary; samples per class over training time (rows cut out of ``samples/`` grids);
loss and Fréchet-distance curves (``metrics.jsonl``); evaluation tables with their floors
(``eval/*.json``) and figures (memorisation closest pairs); the experiment's verdicts, ROC curves
and CI charts (``results.json`` and its figures); other figures; config and data provenance.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from html import escape
from pathlib import Path
from typing import Any, Iterable

import yaml

from xraygan.metrics.registry import METRICS
from xraygan.report.figures import data_uri, file_uri, grid_rows, line_plot, pick_evenly, png_bytes
from xraygan.report.rundir import (
    FAR_FD_FACTOR, STOP_SENTENCES, RunInfo, better, eval_info, eval_rows, far_from_real, fd_floors, fd_series, fd_summary,
    fmt, fmt_seconds, is_loss_key, latest_eval, latest_evals, load_run, metric_series, per_class_latest, provenance, run_status,
)
from xraygan.utils.fs import atomic_write_text

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;color:#222;background:#fff}
h1{font-size:1.6em;border-bottom:2px solid #345}h2{margin-top:2em;border-bottom:1px solid #ccc;color:#234}
h3{color:#345}table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef2f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:.6em 0 1.2em}figcaption{font-size:.85em;color:#555}img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}
img.plot{image-rendering:auto}.na{color:#a33;font-style:italic}.strip{display:flex;align-items:center;gap:.8em;margin:.2em 0}
.strip span{min-width:7em;font-size:.85em;color:#555;text-align:right}pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.85em}pre.wrap{white-space:pre-wrap}
.badge{display:inline-block;padding:.1em .5em;border-radius:.3em;background:#eee}.improves{background:#cfc}.harms{background:#fcc}.equivalent{background:#cde4ff}.inconclusive{background:#ffe9b3}
nav a{margin-right:1em}.synthetic{background:#fff4d6;border:1px solid #e0c060;padding:.4em .8em}
"""
MAX_STEPS_SHOWN = 8


def _na(what: str, why: str) -> str:
    return f'<p class="na">{escape(what)}: not available ({escape(why)}).</p>'


def _img(uri: str, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} src="{uri}" alt="{escape(alt)}">'


def _figure(uri: str, caption: str, cls: str = "") -> str:
    return f"<figure>{_img(uri, caption, cls)}<figcaption>{escape(caption)}</figcaption></figure>"


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = []
        for c in r:
            num = isinstance(c, (int, float)) and not isinstance(c, bool)
            cells.append(f'<td{" class=num" if num else ""}>{escape(fmt(c))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if any(header) else ""
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


# --- sections ------------------------------------------------------------------------------------
def _glance(info: RunInfo) -> list[tuple[str, Any]]:
    """The run at a glance: steps reached vs planned, elapsed time, why it stopped, the latest evaluation."""
    if not info.is_run:
        return []
    st = run_status(info)
    rows: list[tuple[str, Any]] = []
    if st["reached"] is not None or st["planned"] is not None:
        reached = "?" if st["reached"] is None else st["reached"]
        share = f" ({st['reached'] / st['planned']:.0%})" if st["reached"] is not None and st["planned"] else ""
        rows.append(("steps", f"{reached} of {st['planned'] if st['planned'] is not None else '?'} planned{share}"))
    if st["elapsed"] is not None:
        rows.append(("elapsed training time", fmt_seconds(st["elapsed"])))
    if st["stopped"]:
        why = STOP_SENTENCES.get(st["stopped"], st["stopped"]) + (f" ({st['detail']})" if st["detail"] else "")
    elif st["reached"] is not None and st["planned"] is not None and st["reached"] >= st["planned"]:
        why = "finished: reached the planned steps"
    else:
        why = "unknown: no stop record after the last step (still training, or the process was killed)"
    rows.append(("why training stopped", why))
    if st["rollbacks"]:
        rows.append(("divergence", f"{st['rollbacks']} rollback(s) to a finite state with lowered learning rates (see metrics.jsonl)"))
    rows.append(("latest evaluation", _latest_eval_sentence(info)))
    return rows


def _latest_eval_sentence(info: RunInfo) -> str:
    latest = latest_eval(info)
    if latest is not None:
        name, data = latest
        reasons = far_from_real(data)
        fd = ((data.get("overall") or {}).get("fd") or {}) if isinstance(data, dict) else {}
        head = f"eval/{name}.json" + (f": FD {fmt(fd.get('value'))} (floor {fmt(fd.get('floor'))})" if isinstance(fd, dict) and "value" in fd else "")
        if reasons:
            return f"{head}. Far from real data: " + "; ".join(reasons) + "."
        return f"{head}. Within {FAR_FD_FACTOR:g}x the floor on FD and at least half the floor on every class's recall."
    fds = fd_summary(info)
    _, _, collapsed = per_class_latest(info)
    if fds:
        key, v = next(iter(fds.items()))
        head = f"during training (metrics.jsonl): {key} {fmt(v['last'])} at step {int(v['last_step'])}" + (f" (floor {fmt(v['floor'])})" if "floor" in v else "")
        reasons = [f"FD is {v['last'] / v['floor']:.1f}x its floor"] if v.get("floor") and v["last"] > FAR_FD_FACTOR * v["floor"] else []
        reasons += [f"class {c}: recall below half its floor" for c in collapsed]
        if reasons:
            return f"{head}. Far from real data: " + "; ".join(reasons) + "."
        return head + "."
    return "none (train with --eval-every, or run `xraygan evaluate` on this run)"


def _summary(info: RunInfo) -> str:
    kind = " and ".join(k for k, on in (("training run", info.is_run), ("experiment", info.is_experiment)) if on) or "folder"
    rows: list[tuple[str, Any]] = [("folder", str(info.root.resolve())), ("kind", kind), *_glance(info)]
    cfg = info.options
    for key in ("model", "size", "conditional", "label", "loss"):
        if cfg.get(key) is not None:
            rows.append((key, cfg[key]))
    for key, v in fd_summary(info).items():
        floor = f"; floor {fmt(v['floor'])}" if "floor" in v else ""
        rows.append((f"{key} (training)", f"last {fmt(v['last'])} at step {int(v['last_step'])}; best {fmt(v['best'])} at step {int(v['best_step'])}{floor}"))
    for comparison, verdict, _ in _verdict_rows(info.results or {}):
        rows.append((f"verdict: {comparison}", verdict))
    pc_step, pc_rows, collapsed = per_class_latest(info)
    if pc_rows:
        rows.append(("per-class collapse check", f"step {pc_step}: " + ("; ".join(f"{c} recall below half its real-vs-real floor" for c in collapsed) or "no class below half its recall floor")))
    hint = ""
    if not info.is_run and not info.is_experiment:
        inside = sorted(p.parent for pat in ("*/config.yaml", "*/*/config.yaml", "*/results.json", "*/*/results.json") for p in info.root.glob(pat))
        if inside:
            hint = ("<p class=na>This folder is neither a run nor an experiment. Report on one of these instead: "
                    + ", ".join(f"<code>{escape(str(p))}</code>" for p in inside[:10]) + ".</p>")
    per_class = ""
    if pc_rows:
        per_class = (f"<h3>Per class at step {pc_step} (training split, beside the real-vs-real floor)</h3>"
                     + _table(("class", "metric", "value", "floor", "better"), [(c, m, v, f, better(m)) for c, m, v, f in pc_rows]))
    return "<h2 id=summary>Summary</h2>" + hint + _table(("", ""), rows) + per_class


def _samples(info: RunInfo) -> str:
    out = ["<h2 id=samples>Samples over training time</h2>"]
    if not info.samples:
        return out[0] + _na("Sample grids", "no images in samples/")
    classes = info.classes
    chosen = pick_evenly(info.samples, MAX_STEPS_SHOWN)
    opts = info.options
    conditional = int(opts["n_classes"] or 0) > 0 if "n_classes" in opts else bool(opts.get("conditional"))
    n_rows = len(classes) if conditional and len(classes) > 1 else 1
    names = classes if n_rows > 1 else [str(opts.get("label") or "all classes")]
    out.append(f"<p>Fixed latent vectors, {len(info.samples)} grids in samples/; {len(chosen)} shown, "
               "early to late. Every image here is SYNTHETIC.</p>")
    strips = [(step, grid_rows(path, n_rows)) for step, path in chosen]
    for ci, name in enumerate(names):
        out.append(f"<h3>{escape(name)}</h3>")
        for step, rows in strips:
            label = f"step {step}" if step >= 0 else "(no step)"
            out.append(f'<div class=strip><span>{escape(label)}</span>{_img(data_uri(png_bytes(rows[ci], min_height=64)), f"{name} at {label}")}</div>')
    step, last = info.samples[-1]
    out.append(_figure(file_uri(last, min_height=64 * n_rows), f"Latest full grid ({last.name}, step {step})" + (f"; rows top to bottom: {', '.join(names)}" if n_rows > 1 else "")))
    return "\n".join(out)


def _curves(info: RunInfo) -> str:
    out = ["<h2 id=curves>Training curves</h2>"]
    if not info.metrics:
        return out[0] + _na("Loss and FD curves", "no metrics.jsonl or it is empty")
    series = metric_series(info.metrics)
    losses = {k: v for k, v in series.items() if is_loss_key(k)}
    fds, floors = fd_series(series), fd_floors(series)
    out.append(_figure(data_uri(line_plot(losses, "Losses", "loss")), "Losses per logged step (metrics.jsonl)", "plot")
               if losses else _na("Loss curve", "no loss values in metrics.jsonl"))
    caption = "Fréchet distance during training (metrics.jsonl)" + ("; dashed: the floor (two disjoint real halves)" if floors else "")
    out.append(_figure(data_uri(line_plot(fds, "Fréchet distance", f"FD ({METRICS['fd'].phrase})", logy=True, hlines=floors)), caption, "plot")
               if fds else _na("FD curve", "no FD values in metrics.jsonl (train with --eval-every, or run `xraygan evaluate`)"))
    return "\n".join(out)


def _eval_tables(name: str, data: Any) -> str:
    rows = [(k, v, f, better(k)) for k, v, f in eval_rows(data)]
    info = eval_info(data)
    out = [f"<h3>eval/{escape(name)}.json</h3>"]
    if info:
        out.append(_table(("", ""), info))
    out.append("<p>Each value beside its floor: the same metric between two disjoint real halves at the same n "
               "(for memorisation: held-out real images against the training images).</p>")
    out.append(_table(("metric", "synthetic", "floor", "better"), rows) if rows else _na("Metric table", "no value/floor pairs in this file"))
    warnings = data.get("warnings") if isinstance(data, dict) else None
    if warnings:
        out.append("<ul>" + "".join(f"<li>{escape(str(w))}</li>" for w in warnings) + "</ul>")
    return "\n".join(out)


def _evaluation(info: RunInfo) -> str:
    out = ["<h2 id=evaluation>Evaluation</h2>"]
    if not info.evals:
        out.append(_na("Evaluation tables", "no eval/*.json; run `xraygan evaluate` on this run"))
    latest = latest_evals(info.evals)
    for name in latest:
        out.append(_eval_tables(name, info.evals[name]))
    earlier = [n for n in info.evals if n not in latest]
    if earlier:
        out.append(f"<details><summary>Earlier evaluations ({len(earlier)})</summary>"
                   + "\n".join(_eval_tables(n, info.evals[n]) for n in earlier) + "</details>")
    eval_figs = [p for p in info.figures if p.parent.name == "eval"]
    memo = [p for p in eval_figs if any(w in p.name.lower() for w in ("memor", "closest", "pair", "nearest"))]
    out.append("<h3>Memorisation: closest pairs</h3>")
    out += [_figure(file_uri(p, min_height=256), f"{p.name}: synthetic images beside their nearest real training image") for p in memo[-2:]] or [
        _na("Closest synthetic-real pairs", "no memorisation figure in eval/")]
    out += [_figure(file_uri(p), f"eval/{p.name}", "plot") for p in eval_figs if p not in memo]
    return "\n".join(out)


def _verdicts(results: Any, path: str = "") -> list[tuple[str, str]]:
    """(where, verdict) for every string value under a key named like 'verdict'."""
    found = []
    if isinstance(results, dict):
        for k, v in results.items():
            where = f"{path}/{k}" if path else str(k)
            if "verdict" in str(k).lower() and isinstance(v, str) and not str(k).endswith("_text"):
                found.append((path or str(k), v))
            else:
                found += _verdicts(v, where)
    elif isinstance(results, list):
        for i, v in enumerate(results):
            found += _verdicts(v, f"{path}[{i}]")
    return found


def _verdict_rows(res: dict) -> list[tuple[str, str, str]]:
    """(comparison, verdict, because) from results.json's ``comparisons`` (else any 'verdict' entry)."""
    comparisons = res.get("comparisons")
    if isinstance(comparisons, dict) and comparisons:
        return [(f"{c.get('label', label)} vs {c.get('against', 'real')}", str(c.get("verdict", "")), str(c.get("because", "")))
                for label, c in comparisons.items() if isinstance(c, dict)]
    return [(where, v, "") for where, v in _verdicts(res)]


def _ci(m: Any) -> str:
    """``0.812 [0.771, 0.850]`` from ``{"value", "lo", "hi"}``."""
    if isinstance(m, dict) and "value" in m:
        lo, hi = m.get("lo"), m.get("hi")
        f3 = lambda x: f"{x:.3f}" if isinstance(x, float) else fmt(x)  # noqa: E731
        return f3(m["value"]) + (f" [{f3(lo)}, {f3(hi)}]" if lo is not None and hi is not None else "")
    return fmt(m) if not isinstance(m, (dict, list)) else ""


def _internal_external(results: dict) -> str:
    """AUC on the fold test sets beside every held-out set's, per arm, under the sentence that says what each describes."""
    from xraygan.report.held_out import held_out_names, internal_vs_external

    arms = results.get("arms")
    if not isinstance(arms, dict) or not arms or not held_out_names(results):
        return ""
    names = held_out_names(results)
    rows = [(label, _ci((a.get("fold_tests") or {}).get("auc")), *[_ci(((a.get("test_sets") or {}).get(n) or {}).get("auc")) for n in names])
            for label, a in arms.items() if isinstance(a, dict)]
    return (f"<h3>Internal vs external</h3><p>{escape(internal_vs_external(results))}</p>"
            + _table(("arm", "AUC, fold test sets (internal)", *[f"AUC, held-out {n}" for n in names]), rows))


def _arm_tables(results: dict) -> str:
    arms = results.get("arms")
    if not isinstance(arms, dict) or not arms:
        return ""
    out = []
    sets = {"fold test sets": lambda a: a.get("fold_tests")}
    first = next(iter(arms.values()))
    for name in (first.get("test_sets") or {}) if isinstance(first, dict) else {}:
        sets[f"held-out set {name}"] = lambda a, n=name: (a.get("test_sets") or {}).get(n)
    for title, get in sets.items():
        metrics = [m for m in (get(first) or {}) if isinstance((get(first) or {}).get(m), dict) and "value" in (get(first) or {})[m]]
        if not metrics:
            continue
        rows = [(label, *[_ci((get(a) or {}).get(m)) for m in metrics]) for label, a in arms.items() if isinstance(a, dict)]
        out.append(f"<h3>Metrics on the {escape(title)} (95% CI)</h3>" + _table(("arm", *metrics), rows))
    return "\n".join(out)


def _experiment_extra_tables(res: dict) -> str:
    """Per-arm classifier step counts, per-class AUCs (multi-class) and the data-equivalence, when present."""
    out = []
    arms = res.get("arms") if isinstance(res.get("arms"), dict) else {}
    steps = [(label, ", ".join(sorted({str(s) for s in a.get("classifier_steps") or []})))
             for label, a in arms.items() if isinstance(a, dict) and a.get("classifier_steps")]
    if steps:
        out.append("<h3>Classifier optimiser steps per arm</h3>" + _table(("arm", "steps per unit"), steps))
    per_class = [(label, *[_ci(v) for v in a["fold_tests"]["per_class_auc"].values()])
                 for label, a in arms.items() if isinstance(a, dict) and isinstance((a.get("fold_tests") or {}).get("per_class_auc"), dict)]
    if per_class:
        classes = list(next(iter(arms.values()))["fold_tests"]["per_class_auc"])
        out.append("<h3>Per-class AUC, one vs rest (fold test sets, 95% CI)</h3>" + _table(("arm", *classes), per_class))
    eq = res.get("data_equivalence")
    if isinstance(eq, dict) and eq:
        rows = [(label, fraction, fmt(e.get("real_patients_equivalent")), f"[{fmt(e.get('lo'))}, {fmt(e.get('hi'))}]", fmt(e.get("real_patients")))
                for label, by in eq.items() if isinstance(by, dict) for fraction, e in by.items() if isinstance(e, dict)]
        out.append("<h3>Data equivalence: real training patients each arm is worth</h3>"
                   + _table(("arm", "real fraction", "equivalent real patients", "95% bootstrap interval", "real patients used"), rows))
    return "\n".join(out)


def _experiment(info: RunInfo) -> str:
    out = ["<h2 id=experiment>Experiment</h2>"]
    if info.results is None:
        return out[0] + _na("Experiment results", "no results.json in this folder")
    res = info.results
    rows = _verdict_rows(res)
    if rows:
        out.append("<h3>Verdicts</h3><table><thead><tr><th>comparison</th><th>verdict</th><th>because</th></tr></thead><tbody>"
                   + "".join(f'<tr><td>{escape(c)}</td><td><span class="badge {escape(v.split()[0] if v else "")}">{escape(v)}</span>'
                             f"</td><td>{escape(b)}</td></tr>" for c, v, b in rows) + "</tbody></table>")
    else:
        out.append(_na("Verdicts", "results.json has no verdicts"))
    if isinstance(res.get("verdicts_text"), str):
        out.append(f"<pre class=wrap>{escape(res['verdicts_text'])}</pre>")
    out.append(_internal_external(res))
    out.append(_arm_tables(res))
    figs = [p for p in info.figures if p.parent == info.root]
    roc = [p for p in figs if "roc" in p.name.lower()]
    ci = [p for p in figs if p not in roc and re.search(r"(^|[_.-])(ci|interval|forest)([_.-]|$)", p.name.lower())]
    out.append("<h3>ROC curves</h3>")
    out += [_figure(file_uri(p), p.name, "plot") for p in roc] or [_na("ROC curves", "no *roc*.png in the folder")]
    out.append("<h3>Confidence intervals</h3>")
    out += [_figure(file_uri(p), p.name, "plot") for p in ci] or [_na("CI charts", "no ci*.png in the folder")]
    for title, stem, what in (("Calibration", "calibration", "reliability diagram"), ("Learning curve", "learning_curve", "learning curve"),
                              ("Confusion matrices", "confusion", "confusion matrices")):
        found = [p for p in figs if p.name.lower().startswith(stem)]
        if found or stem == "calibration":
            out.append(f"<h3>{title}</h3>")
            out += [_figure(file_uri(p), p.name, "plot") for p in found] or [_na(title, f"no {stem}*.png ({what}) in the folder")]
    out.append(_experiment_extra_tables(res))
    text = json.dumps(res, indent=2, default=str)
    out.append(f"<details><summary>results.json ({len(text):,} characters)</summary><pre>{escape(text)}</pre></details>")
    return "\n".join(out)


def _other_figures(info: RunInfo) -> str:
    shown = {p for p in info.figures if p.parent.name == "eval"}
    if any(is_loss_key(k) for k in metric_series(info.metrics)):  # the loss curve is drawn under Training curves
        shown.add(info.root / "loss.png")
    if info.is_experiment:
        shown |= {p for p in info.figures if p.parent == info.root}
    rest = [p for p in info.figures if p not in shown]
    if not rest:
        return ""
    return "<h2 id=figures>Other figures</h2>" + "\n".join(_figure(file_uri(p), str(p.relative_to(info.root)), "plot") for p in rest)


def _config(info: RunInfo) -> str:
    out = ["<h2 id=config>Config and provenance</h2>", "<h3>Training data</h3>"]
    if info.dataset is not None:
        prov = provenance(info)
        rows = [("prepared dataset", str(info.dataset_path)), ("source", prov["source"]), ("source type", prov["source_type"]),
                ("citation", prov["citation"]), ("licence", prov["licence"]), ("classes", ", ".join(info.classes)),
                ("size", info.dataset.get("size")), ("images", info.dataset.get("n_images"))]
        out.append(_table(("", ""), rows))
    else:
        out.append(_na("Data provenance", "the prepared dataset's dataset.json was not found"))
    out.append("<h3>config.yaml</h3>")
    protocol = (info.results or {}).get("protocol")
    if info.config:
        out.append(f"<pre>{escape(yaml.safe_dump(info.config, sort_keys=False))}</pre>")
    elif isinstance(protocol, dict) and isinstance(protocol.get("config"), dict):
        out.append("<p>The experiment's protocol config (from results.json):</p>"
                   f"<pre>{escape(yaml.safe_dump(protocol['config'], sort_keys=False))}</pre>")
    else:
        out.append(_na("Config", "no config.yaml"))
    card = info.root / "MODEL_CARD.md"
    if card.is_file():
        out.append(f"<details><summary>MODEL_CARD.md</summary><pre>{escape(card.read_text())}</pre></details>")
    if info.problems:
        out.append("<h3>Problems reading the folder</h3><ul>" + "".join(f"<li>{escape(p)}</li>" for p in info.problems) + "</ul>")
    return "\n".join(out)


def render_report(path: str | Path, now: _dt.datetime | None = None) -> str:
    """The HTML text of the report on a run or experiment folder."""
    from xraygan import __version__

    info = load_run(path)
    now = now or _dt.datetime.now(_dt.timezone.utc)
    sections = [_summary(info)]
    if info.is_run or not info.is_experiment:
        sections += [_samples(info), _curves(info), _evaluation(info)]
    if info.is_experiment or not info.is_run:
        sections.append(_experiment(info))
    sections += [_other_figures(info), _config(info)]
    nav = "".join(f'<a href="#{i}">{t}</a>' for i, t in (("summary", "Summary"), ("samples", "Samples"), ("curves", "Curves"),
                  ("evaluation", "Evaluation"), ("experiment", "Experiment"), ("config", "Config")) if f"id={i}>" in "".join(sections))
    title = f"xraygan report: {info.root.resolve().name}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="generator" content="xraygan report">'
            f'<link rel="icon" href="data:,"><title>{escape(title)}</title><style>{CSS}</style></head><body>\n'
            f"<h1>{escape(title)}</h1><p class=synthetic>Generated images in this report are SYNTHETIC: made by a GAN, "
            f"not images of any patient; for research, not for diagnosis.</p>\n<nav>{nav}</nav>\n"
            + "\n".join(s for s in sections if s)
            + f"\n<hr><p><small>xraygan {escape(__version__)}, {now.strftime('%Y-%m-%d %H:%M UTC')}</small></p></body></html>\n")


def write_report(path: str | Path, out: str | Path) -> Path:
    """Write the report on ``path`` to the HTML file ``out`` (atomically) and return ``out``."""
    out = Path(out)
    atomic_write_text(out, render_report(path))
    return out
