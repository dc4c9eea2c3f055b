"""Where an evaluation's result goes: provenance recorded in it, the run that generated a
``--fake`` folder, ``RUN/eval/`` and ``--out`` (atomic writes).

Split out of :mod:`xraygan.metrics.evaluate`, which re-exports every name.
"""
from __future__ import annotations

import logging
import platform
import time
from pathlib import Path

import numpy as np

from xraygan.errors import XrayganError
from xraygan.metrics.features import Extractor
from xraygan.utils.formats import EVAL_FORMAT, EVAL_FORMAT_VERSION, check_evaluation  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


def provenance(extractor: Extractor) -> dict:
    """Library versions and the extractor's identity, recorded in every result."""
    import torch

    from xraygan import __version__

    return {
        "features": extractor.describe(),
        "versions": {"xraygan": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": package_version("torchvision"), "numpy": np.__version__, "scipy": package_version("scipy")},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def package_version(name: str) -> str | None:
    """``name.__version__`` without importing the package when it is not loaded yet (importing
    torchvision alone takes seconds): its ``version.py`` when it has one (keeps a local label such
    as ``+cpu``), else the installed distribution's version; None when it is not installed."""
    import importlib.util
    import re
    import sys

    if name in sys.modules:
        return str(getattr(sys.modules[name], "__version__", None))
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for fname in ("version.py", "_version.py", "version/__init__.py"):
            try:
                m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", (Path(folder) / fname).read_text(), re.M)
            except OSError:
                continue
            if m:
                return m.group(1)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def generated_from(fake: str | Path) -> dict | None:
    """``{"path", "checkpoint", "step"}`` of the run that generated ``fake`` (the ``run`` and
    ``checkpoint`` columns of the ``manifest.csv`` that ``generate`` writes); ``None`` when the
    folder has no such manifest or names no single run. ``step`` is read from the checkpoint
    (``None`` when it is gone). A set of a newer format is refused (:class:`FormatVersionError`)."""
    import csv

    from xraygan.utils.formats import check_generated_set

    check_generated_set(fake)
    try:
        with open(Path(fake) / "manifest.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    runs = {r.get("run") or "" for r in rows}
    if len(runs) != 1 or not next(iter(runs)):
        return None
    ckpts = {r.get("checkpoint") or "" for r in rows}
    ckpt = next(iter(ckpts)) if len(ckpts) == 1 else ""
    step = None
    if ckpt and Path(ckpt).is_file():
        try:
            from xraygan.training.checkpoint import load_checkpoint

            step = int(load_checkpoint(ckpt)["step"])
        except Exception as e:  # noqa: BLE001 -- a damaged or foreign checkpoint only loses the step
            log.debug("%s: no step (%s)", ckpt, e)
    return {"path": next(iter(runs)), "checkpoint": ckpt, "step": step}


def _record_in_run(res: dict, source: dict) -> Path | None:
    """Also store an evaluation of a generated set in the run that generated it (``RUN/eval/``,
    atomically), so ``xraygan report RUN`` shows it; only into an existing xraygan run folder.
    Never fails the evaluation: a run that is gone or is not a run is a warning."""
    from xraygan.training.rundir import RunDir
    from xraygan.utils.fs import atomic_write_json

    rd = RunDir(source["path"])
    try:
        if not rd.root.is_dir():
            raise XrayganError(f"{rd.root}: no such folder")
        rd.read_config()  # raises when the folder is not an xraygan run
        step = source.get("step")
        name = (f"step_{step:08d}_" if isinstance(step, int) else "") + f"{res['features']['name']}_generated.json"
        path = rd.root / "eval" / name
        path.parent.mkdir(exist_ok=True)
        atomic_write_json(path, res)
        return path
    except (OSError, XrayganError) as e:
        msg = f"not recorded in the generating run {rd.root}: {e}"
        log.warning("%s", msg)
        res["warnings"].append(msg)
        return None


def _ours(path: Path) -> bool:
    """True if ``path`` is an evaluation JSON or a closest-pairs PNG that xraygan wrote."""
    import json

    from xraygan.metrics.memorisation import PAIRS_PNG_SOFTWARE

    try:
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as im:
                return im.info.get("Software") == PAIRS_PNG_SOFTWARE
        doc = json.loads(path.read_text(encoding="utf-8"))
        return isinstance(doc, dict) and doc.get("format") == EVAL_FORMAT
    except Exception:  # unreadable, not JSON / PNG: not ours
        return False


def check_out(out: str | Path | None, force: bool = False) -> None:
    """Refuse an ``--out`` that would overwrite something: an existing JSON file or its
    ``OUT.pairs.png`` without ``force``, and even with it a file xraygan did not write (an
    evaluation JSON of xraygan's own format, a pairs PNG it tagged, or the pairs PNG beside such a
    JSON). Also a folder given as ``--out``, and a parent path that is a file."""
    from xraygan.errors import UsageError

    if out is None:
        return
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the path of the JSON file to write (e.g. {out / 'eval.json'})")
    for parent in [out.parent, *out.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--out {out}: {parent} is a file, not a folder")
            break
    json_ours = out.is_file() and _ours(out)
    for path in (out, out.with_suffix(".pairs.png")):
        if not path.exists():
            continue
        if not force:
            raise UsageError(f"--out: {path} already exists; choose another path or pass --force to replace it")
        if path.is_dir() or not (_ours(path) or (path != out and json_ours)):
            raise UsageError(f"--out: {path} exists and was not written by xraygan evaluate; "
                             "refusing to replace it even with --force; choose another path")


def _pairs_path(out, run, run_info) -> Path | None:
    if out is not None:
        return Path(out).with_suffix(".pairs.png")
    if run is not None:
        return Path(run) / "eval" / f"step_{run_info['step']:08d}.pairs.png"
    return None


def _store(res: dict, out, run, run_info) -> dict:
    from xraygan.utils.fs import atomic_write_json

    if run is not None:
        path = Path(run) / "eval" / f"step_{run_info['step']:08d}_{res['features']['name']}.json"
        atomic_write_json(path, res)
        res["stored"] = [str(path)]
    source = res.get("generated_from") if run is None else None
    if source and not str(source["path"]).startswith("pretrained:"):  # a shipped model has no run folder to record in
        path = _record_in_run(res, source)
        if path is not None:
            res.setdefault("stored", []).append(str(path))
    if out is not None:
        atomic_write_json(out, res)
        res.setdefault("stored", []).append(str(out))
    return res

