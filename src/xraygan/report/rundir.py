"""Reading what a training run or an experiment left on disk, tolerating missing parts.

A run directory (written by ``xraygan train``) holds ``config.yaml``, ``checkpoints/``,
``metrics.jsonl`` (one JSON object per logged step), ``samples/`` (a fixed-latent grid image every
``--sample-every`` steps, one row per class), ``loss.png``, optionally ``eval/*.json`` (written by
``xraygan evaluate``) and ``MODEL_CARD.md``. An experiment directory holds ``results.json`` and its
figures. The report and the model card read both through :func:`load_run`, a run through
:class:`xraygan.run.Run`; every missing or unreadable part becomes ``None`` / empty, with the
reason kept in ``problems``, except a file of a format version this xraygan does not read.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xraygan.errors import XrayganError
from xraygan.metrics.registry import better as registry_better
from xraygan.run import IMAGE_EXTENSIONS, Run, step_of
from xraygan.utils.formats import FormatVersionError, check_format_version

RESULTS_FORMAT = "xraygan-experiment-results"
RESULTS_FORMATS = (1, 2, 3)  # the results.json versions the report shows (experiments.summary.RESULTS_FORMAT_VERSION: the last)

# Known sources: a substring of the dataset's source -> (citation, licence).
KNOWN_SOURCES: dict[str, tuple[str, str]] = {
    "chest-xray-pneumonia": (
        "Kermany D, Zhang K, Goldbaum M. Labeled Optical Coherence Tomography (OCT) and Chest X-Ray "
        "Images for Classification. Mendeley Data, v2, 2018, doi:10.17632/rscbjbr9sj.2. Paper: Kermany DS "
        "et al., Identifying Medical Diagnoses and Treatable Diseases by Image-Based Deep Learning, "
        "Cell 172(5), 2018.",
        "CC BY 4.0",
    ),
}
_DATA_KEYS = ("prepared", "data", "dataset", "prepared_dir", "data_dir")
_STEP_KEYS = ("step", "kimg", "iteration", "it")
_FD_NOT_VALUES = {"n", "best", "std", "seconds", "time"}  # fd_xray_n, fd_xray_best...: not FD values


@dataclass
class RunInfo:
    """Everything readable in a run or experiment folder (``None``/empty where absent)."""

    root: Path
    config: dict | None = None
    dataset: dict | None = None
    dataset_path: Path | None = None
    metrics: list[dict] = field(default_factory=list)
    evals: dict[str, Any] = field(default_factory=dict)
    samples: list[tuple[int, Path]] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    results: dict | None = None
    figures: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def is_run(self) -> bool:
        return self.config is not None or bool(self.metrics) or bool(self.samples)

    @property
    def is_experiment(self) -> bool:
        return self.results is not None

    @property
    def options(self) -> dict:
        """The run's options: ``config.yaml``'s ``options`` mapping merged over its top-level facts."""
        cfg = self.config or {}
        opts = cfg.get("options")
        top = {k: v for k, v in cfg.items() if k != "options"}
        return {**top, **opts} if isinstance(opts, dict) else top

    @property
    def classes(self) -> list[str]:
        """Class names in label order (dataset first, then config), empty if unknown."""
        for src in (self.dataset or {}, self.config or {}):
            if isinstance(src.get("classes"), list):
                return [str(c) for c in src["classes"]]
        return []


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        problems.append(f"{path.name}: unreadable ({e})")
        return None


def read_metrics(path: Path, problems: list[str] | None = None) -> list[dict]:
    """The records of the ``metrics.jsonl`` at ``path``; lines that are not JSON objects (a truncated
    last line of a run still writing) are skipped and noted in ``problems``."""
    return Run(Path(path).parent).metric_records([] if problems is None else problems)


def _find_dataset(root: Path, config: dict | None) -> Path | None:
    """The prepared dataset of an experiment (or of a run whose dataset moved): a copy of dataset.json
    in the folder, else a data path of the config."""
    for cand in (root / "dataset.json", root / "data" / "dataset.json"):
        if cand.is_file():
            return cand
    for key in _DATA_KEYS:
        value = (config or {}).get(key)
        if isinstance(value, str) and value:
            p = Path(value)
            for cand in (p / "dataset.json", root / p / "dataset.json"):
                if cand.is_file():
                    return cand
    return None


def load_run(path: str | Path) -> RunInfo:
    """Read a run folder (through :class:`xraygan.run.Run`) or an experiment folder.

    Missing or damaged parts become ``None``/empty with the reason in ``problems``; a config.yaml or
    results.json of a format version this xraygan does not read is a one-line
    :class:`~xraygan.utils.formats.FormatVersionError` (upgrade xraygan, or re-run what wrote it).
    """
    root = Path(path)
    if not root.is_dir():
        raise XrayganError(f"{root}: no such folder; give a run folder (from `xraygan train`) or an experiment folder")
    info = RunInfo(root=root)
    run = Run(root)
    if (root / "config.yaml").is_file():
        try:
            info.config = run.config
        except FormatVersionError:
            raise
        except XrayganError as e:  # damaged, or not a run's config: the report shows the rest
            info.problems.append(f"config.yaml: {e}")
    info.metrics = run.metric_records(info.problems)
    info.evals = run.evaluations(info.problems)
    info.samples = run.sample_grids()
    info.checkpoints = run.checkpoints()
    if (root / "results.json").is_file():
        info.results = read_results(root / "results.json", info.problems)
    protocol = (info.results or {}).get("protocol")
    exp_cfg = protocol.get("config") if isinstance(protocol, dict) and isinstance(protocol.get("config"), dict) else {}
    data_dir = run.dataset_dir if info.config else None
    ds = data_dir / "dataset.json" if data_dir else _find_dataset(root, {**exp_cfg, **info.options})
    if ds is not None:
        info.dataset_path = ds.parent
        data = _read_json(ds, info.problems)
        info.dataset = data if isinstance(data, dict) else None
    info.figures = _figures(root)
    return info


def read_results(path: Path, problems: list[str]) -> dict | None:
    """An experiment's ``results.json`` (the formats in :data:`RESULTS_FORMATS`; format 1, written
    before ``--repeats``, has no Holm-adjusted p values and the verdict words of before issue 13;
    format 2 compares every arm against ``real`` only).
    Unreadable or not xraygan's: ``None``, noted in ``problems``; a format version outside
    :data:`RESULTS_FORMATS`: :class:`~xraygan.utils.formats.FormatVersionError`."""
    data = _read_json(path, problems)
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        if data is not None:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            problems.append(f"{path.name}: not xraygan experiment results (format {found!r})")
        return None
    check_format_version(path, data.get("format_version"), what="experiment results", current=RESULTS_FORMATS[-1],
                         oldest=RESULTS_FORMATS[0], rerun="re-run the same `xraygan experiment` command with this --out "
                         "to write it again (finished units are reused)")
    return data


def _figures(root: Path, max_per_folder: int = 20) -> list[Path]:
    """Images in the folder and its direct sub-folders (except samples/ and image collections)."""
    out: list[Path] = []
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir() and p.name != "samples")]:
        imgs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if folder == root or len(imgs) <= max_per_folder:
            out.extend(imgs)
    return out


def provenance(info: RunInfo) -> dict[str, str]:
    """Source, citation and licence of a run's training data (from dataset.json, else known sources)."""
    ds = info.dataset or {}
    source = str(ds.get("source", "") or "")
    out = {"source": source or "unknown", "source_type": str(ds.get("source_type", "") or "unknown")}
    citation = ds.get("attribution") or ds.get("citation")
    licence = ds.get("license") or ds.get("licence")
    for key, (cite, lic) in KNOWN_SOURCES.items():
        if key in source:
            citation, licence = citation or cite, licence or lic
    out["citation"] = str(citation) if citation else "unknown (not recorded in dataset.json)"
    out["licence"] = str(licence) if licence else "unknown (check the data source's terms)"
    return out


def metric_series(records: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Every numeric key of the metrics records as (step, value) pairs, NaN/inf dropped."""
    out: dict[str, list[tuple[float, float]]] = {}
    for i, rec in enumerate(records):
        step = next((rec[k] for k in _STEP_KEYS if isinstance(rec.get(k), (int, float))), i)
        for k, v in _flatten(rec).items():
            if k in _STEP_KEYS or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            out.setdefault(k, []).append((float(step), float(v)))
    return out


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        out.update(_flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def is_fd_key(key: str) -> bool:
    """True for Fréchet-distance-like metric names (``fd``, ``fd_xray``, ``eval/fid``...)."""
    return bool(re.search(r"(^|[/_.])(fd|fid)($|[/_.])", key.lower()))


def is_loss_key(key: str) -> bool:
    """True for loss-like metric names (``loss_g``, ``d_loss``, ``loss/D``...)."""
    return "loss" in key.lower()


def fd_summary(info: RunInfo) -> dict[str, dict[str, float]]:
    """For each FD-like series in metrics.jsonl: last value, best (lowest) value and its step."""
    out = {}
    series = metric_series(info.metrics)
    for key, pts in fd_series(series).items():
        best = min(pts, key=lambda t: t[1])
        out[key] = {"last": pts[-1][1], "last_step": pts[-1][0], "best": best[1], "best_step": best[0]}
        if f"{key}_floor" in series:
            out[key]["floor"] = series[f"{key}_floor"][-1][1]
    return out


PER_CLASS_METRICS = ("precision", "recall", "density", "coverage", "fd", "pixel_std")


def per_class_latest(info: RunInfo) -> tuple[int | None, list[tuple[str, str, Any, Any]], list[str]]:
    """(step, [(class, metric, value, floor)], collapsed classes) of the last ``--eval-every``
    evaluation that logged per-class scores (``pc_<metric>_<class>`` beside ``..._floor``)."""
    rec = next((r for r in reversed(info.metrics) if any(str(k).startswith("pc_recall_") for k in r)), None)
    if rec is None:
        return None, [], []
    rows = []
    classes = [k[len("pc_recall_"):] for k in rec if k.startswith("pc_recall_") and not k.endswith("_floor")]
    for c in classes:
        for m in PER_CLASS_METRICS:
            if f"pc_{m}_{c}" in rec:
                rows.append((c, m, rec[f"pc_{m}_{c}"], rec.get(f"pc_{m}_{c}_floor")))
    return rec.get("step"), rows, list(rec.get("collapse") or [])


def fd_series(series: dict[str, list]) -> dict[str, list]:
    """The FD series proper: FD-like keys without floors (``fd_xray_floor``), running bests
    (``fd_xray_best``) and counts (``fd_xray_n``)."""
    return {k: v for k, v in series.items() if v and is_fd_key(k) and "floor" not in k.lower()
            and re.split(r"[/_.]", k.lower())[-1] not in _FD_NOT_VALUES}


def fd_floors(series: dict[str, list]) -> dict[str, float]:
    """The last value of every FD floor series (``fd_xray_floor`` is logged once, at the first evaluation)."""
    return {k: v[-1][1] for k, v in series.items() if v and is_fd_key(k) and "floor" in k.lower()}


def better(metric: str) -> str:
    """'lower', 'higher', '~1'... for a metric path such as ``per_class/NORMAL/fd``; '' if unknown
    (from the metric registry, :mod:`xraygan.metrics.registry`)."""
    return registry_better(metric)


def eval_rows(data: Any) -> list[tuple[str, Any, Any]]:
    """(metric, value, floor) rows of one ``eval/*.json`` (the format of ``xraygan evaluate``).

    A dict with a ``value`` key is one metric (``{"value": v, "floor": f, ...}``), found at any
    depth (``overall/fd``, ``per_class/NORMAL/kid``, ``class_consistency/NORMAL``). Memorisation
    statistics pair each synthetic figure with its held-out real counterpart as the floor
    (``fake_median_nn`` beside ``heldout_median_nn``, ``authenticity`` beside
    ``authenticity_heldout``). A flat ``x`` beside ``x_floor`` is one metric too.
    """
    rows: list[tuple[str, Any, Any]] = []
    _walk_metrics(data, "", rows)
    return rows


def _walk_metrics(node: Any, path: str, rows: list) -> None:
    if not isinstance(node, dict):
        return
    if "value" in node:
        rows.append((path, node.get("value"), node.get("floor")))
        return
    keys = set(node)
    for k, v in node.items():
        where = f"{path}/{k}" if path else str(k)
        if isinstance(v, dict):
            _walk_metrics(v, where, rows)
        elif str(k).endswith("_floor") or str(k).startswith("heldout_") or str(k).endswith("_heldout"):
            continue
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            twin = next((t for t in (f"{k}_floor", str(k).replace("fake_", "heldout_", 1), f"{k}_heldout") if t != k and t in keys), None)
            if twin is not None:
                rows.append((where, v, node[twin]))


def eval_info(data: Any) -> list[tuple[str, Any]]:
    """Descriptive scalars of one evaluation (n, resolution, feature extractor...)."""
    if not isinstance(data, dict):
        return []
    out = [(k, v) for k, v in data.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    feats = data.get("features")
    if isinstance(feats, dict):
        out += [(f"features/{k}", v) for k, v in feats.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    for key in ("run", "generated_from"):
        sub = data.get(key)
        if isinstance(sub, dict):
            out += [(f"{key}/{k}", v) for k, v in sub.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    return out


def fmt(v: Any) -> str:
    """A value for a table: floats to 4 significant digits, None as an empty cell."""
    if v is None:
        return ""
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def latest_evals(evals: dict[str, Any]) -> list[str]:
    """Names of the newest evaluation per extractor (``step_00000400_xray`` beats ``step_00000200_xray``)."""
    groups: dict[str, tuple[int, str]] = {}
    for name in evals:
        key = re.sub(r"step_\d+_?", "", name) or "eval"
        step = step_of(Path(name))
        if key not in groups or step >= groups[key][0]:
            groups[key] = (step, name)
    return [name for _, name in sorted(groups.values(), key=lambda t: t[1])]


# --- the run at a glance --------------------------------------------------------------------------
FAR_FD_FACTOR = 3.0  # FD above this many times its floor is "far from real data"
FAR_RECALL_FACTOR = 0.5  # ... as is a class's recall below this share of its floor

STOP_SENTENCES = {
    "done": "finished: reached the planned steps",
    "max_time": "stopped by --max-time before the planned steps",
    "interrupted": "interrupted (SIGINT/SIGTERM) before the planned steps; continue it with `xraygan train --resume`",
    "diverged": "stopped: training diverged and no rollback was left",
}


def run_status(info: RunInfo) -> dict[str, Any]:
    """Steps reached and planned, elapsed seconds, rollbacks and why training stopped, from
    ``metrics.jsonl`` (the ``stopped`` record that ends each invocation of training) and ``config.yaml``.
    ``stopped`` is ``None`` when the last invocation left no record (still running, or killed)."""
    recs = info.metrics
    steps = [r["step"] for r in recs if isinstance(r.get("step"), (int, float)) and not isinstance(r.get("step"), bool)]
    reached = int(max(steps)) if steps else None
    stops = [r for r in recs if isinstance(r.get("stopped"), str)]
    last_stop = stops[-1] if stops and recs and recs[-1] is stops[-1] else None  # records after it: a later invocation
    planned = (last_stop or {}).get("steps_planned", info.options.get("steps"))
    elapsed = (last_stop or {}).get("elapsed")
    if elapsed is None:
        elapsed = next((r["time"] for r in reversed(recs) if isinstance(r.get("time"), (int, float))), None)
    return {"reached": reached, "planned": planned if isinstance(planned, int) else None, "elapsed": elapsed,
            "stopped": (last_stop or {}).get("stopped"), "detail": (last_stop or {}).get("stop_detail"),
            "rollbacks": sum(1 for r in recs if "rollback" in r and "stopped" not in r)}


def fmt_seconds(s: Any) -> str:
    """``3725.0`` -> ``1 h 02 min 05 s``; '' when unknown."""
    if not isinstance(s, (int, float)) or not math.isfinite(s):
        return ""
    s = int(round(s))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return f"{h} h {m:02d} min {sec:02d} s" if h else (f"{m} min {sec:02d} s" if m else f"{sec} s")


def latest_eval(info: RunInfo) -> tuple[str, Any] | None:
    """(name, data) of the evaluation in ``eval/`` at the highest step (the newest file on a tie)."""
    if not info.evals:
        return None
    def key(name: str) -> tuple[int, float]:
        p = info.root / "eval" / f"{name}.json"
        return step_of(Path(name)), (p.stat().st_mtime if p.is_file() else 0.0)
    name = max(info.evals, key=key)
    return name, info.evals[name]


def _value_floor(node: Any) -> tuple[float, float] | None:
    if isinstance(node, dict) and all(isinstance(node.get(k), (int, float)) and not isinstance(node.get(k), bool) for k in ("value", "floor")):
        v, f = float(node["value"]), float(node["floor"])
        if math.isfinite(v) and math.isfinite(f):
            return v, f
    return None


def far_from_real(data: Any) -> list[str]:
    """Plain reasons why an evaluation (``eval/*.json``) is far from real data: FD above
    ``FAR_FD_FACTOR`` x its floor (overall or a class), or a class's recall below
    ``FAR_RECALL_FACTOR`` x its floor; empty when none applies."""
    if not isinstance(data, dict):
        return []
    out = []
    blocks = [("overall", data.get("overall"))] + list((data.get("per_class") or {}).items() if isinstance(data.get("per_class"), dict) else [])
    for name, block in blocks:
        if not isinstance(block, dict):
            continue
        where = "overall" if name == "overall" else f"class {name}"
        fd = _value_floor(block.get("fd"))
        if fd and fd[1] > 0 and fd[0] > FAR_FD_FACTOR * fd[1]:
            out.append(f"{where}: Fréchet distance {fmt(fd[0])} is {fd[0] / fd[1]:.1f}x its real-vs-real floor {fmt(fd[1])}")
        rec = _value_floor(block.get("recall"))
        if name != "overall" and rec and rec[1] > 0 and rec[0] < FAR_RECALL_FACTOR * rec[1]:
            out.append(f"{where}: recall {fmt(rec[0])} is below half its floor {fmt(rec[1])} (modes of the class are missing)")
    return out
