"""The experiment's output folder and ``protocol.json``: created, or accepted for resuming when it
holds an experiment of the same unit fingerprint; the protocol's format is checked on resume."""
from __future__ import annotations

import json
from pathlib import Path

from xraygan.errors import XrayganError
from xraygan.experiments.config import ExperimentConfig
from xraygan.utils.fs import atomic_write_json, is_nonempty_dir, output_kind, refuse_overlap, write_marker

FORMAT = "xraygan-experiment"
PROTOCOL_FORMAT_VERSION = 2  # 1 (no format_version): before --repeats, resumed as repetition 0


def read_protocol(proto: Path) -> dict:
    """``OUT/protocol.json`` of an experiment to resume, its format checked (docs/formats.md):
    formats 1 (written without a format_version) and 2 resume; a newer one, or a file that is not
    a protocol, is a one-line error naming it (upgrade xraygan, or run into another --out)."""
    from xraygan.utils.formats import check_format_version

    fresh = "choose another --out to run these options with this xraygan (the old folder is left as it is)"
    try:
        doc = json.loads(proto.read_text())
    except (OSError, ValueError) as e:
        raise XrayganError(f"{proto}: unreadable experiment protocol ({type(e).__name__}: {e}); {fresh}") from None
    if not isinstance(doc, dict) or doc.get("format", FORMAT) != FORMAT:
        raise XrayganError(f"{proto}: not an xraygan experiment protocol; {fresh}")
    check_format_version(proto, doc.get("format_version", 1), what="experiment protocol", current=PROTOCOL_FORMAT_VERSION,
                         rerun=fresh, newer=fresh)
    return doc


def open_out(cfg: ExperimentConfig) -> Path:
    """Create OUT or accept it for resuming; refuse a folder from other options or of other content."""
    out = Path(cfg.out)
    refuse_overlap(out, [cfg.prepared, cfg.test], "--out")  # never write into (or around) an input
    proto = out / "protocol.json"
    if proto.is_file():
        old = read_protocol(proto)
        if old.get("unit_fingerprint") != cfg.unit_fingerprint():
            raise XrayganError(f"--out {out}: holds an experiment run with different options (data, folds, classifier, "
                               "GAN config, real fraction or balance) or by an xraygan whose protocol differed; choose another --out to run "
                               "these options (the old folder is left as it is)")
    elif is_nonempty_dir(out) and output_kind(out) != "experiment":  # (ours but killed before protocol.json: go on)
        raise XrayganError(f"--out {out}: exists and is not an experiment folder; choose another path")
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "experiment")  # first: a folder killed at any later point is still recognised as ours
    (out / "units").mkdir(parents=True, exist_ok=True)
    atomic_write_json(proto, {"format": FORMAT, "format_version": PROTOCOL_FORMAT_VERSION, "unit_fingerprint": cfg.unit_fingerprint(), "config": cfg.to_dict()})
    return out
