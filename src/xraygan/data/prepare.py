"""``prepare``: turn a class folder, CSV, DICOM set or MedMNIST npz into a prepared dataset.

The output follows the contract in :mod:`xraygan.data.dataset` (``dataset.json``,
``manifest.csv``, ``images/*.png``, ``pixels.npy``). It is built in a staging folder and renamed
into place only when complete, so a failure never leaves a partial OUT.

Steps: read the source records -> decode each image to [0, 1] grayscale (16-bit and DICOM aware,
:mod:`xraygan.data.io`, :mod:`xraygan.data.dicom`) -> make it square (``fit``) and resize with
antialiased bilinear filtering -> drop exact duplicates (sha256 of the decoded source pixels) ->
patient ids (``--patient-regex`` when given, else the CSV column, else the DICOM PatientID, else
one patient per image with a loud warning) -> patient-level stratified splits (:mod:`xraygan.data.splits`,
computed on the raw ids, so they do not depend on the key) -> pseudonymised patient ids
(:mod:`xraygan.utils.privacy`, unless ``patient_ids="raw"``) -> write. Source file names of a
DICOM source are replaced by ``source-<index>`` in every output unless ``keep_source_names``.
"""
from __future__ import annotations

import csv
import io
import logging
import multiprocessing
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from xraygan.data import io as xio
from xraygan.data.dataset import FORMAT, FORMAT_VERSION, PreparedDataset
from xraygan.data.sources import Record, Source, identifying_columns, read_source
from xraygan.data.splits import check_fractions, compile_patient_regex, patient_from_name, patient_splits, split_counts
from xraygan.errors import UsageError, XrayganError
from xraygan.utils.fs import atomic_write_json, check_output_dir, locked_output, staged_output_dir
from xraygan.utils.paths import path_under, safe_component
from xraygan.utils.pixels import round_to_uint8
from xraygan.utils.privacy import check_mode, key_fingerprint, load_key, pseudonymise

log = logging.getLogger(__name__)


@dataclass
class _Decoded:
    """A worker's answer for one record: pixels + hash, or an error (``fatal`` ones are never skipped)."""

    pixels: np.ndarray | None = None
    sha256: str | None = None
    dicom_patient: str | None = None
    error: str | None = None
    fatal: bool = False


def check_size(size: int, any_size: bool = False) -> int:
    """``--size`` must be a power of two from 8 to 1024 (the GANs need it); ``any_size`` allows
    any side from 8 to 1024 (e.g. 224 for classifiers)."""
    if not isinstance(size, (int, np.integer)) or size < 8 or size > 1024 or (size & (size - 1) and not any_size):
        raise UsageError(f"--size {size}: must be a power of two from 8 to 1024 (e.g. 64, 128, 256); "
                           "pass --any-size for other sides from 8 to 1024 (the GANs need powers of two)")
    return int(size)


def _native(rec: Record) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(native gray pixels for hashing, float [0,1] pixels, DICOM PatientID) of one record."""
    if rec.kind == "dicom":
        from xraygan.data.dicom import read_dicom

        d = read_dicom(rec.path)
        return d.stored, d.pixels, d.patient_id
    if rec.kind == "array":
        arr = np.asarray(rec.array)
        if arr.ndim == 3:  # (H, W, C) colour -> luma, same rule as files
            arr = round_to_uint8(arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
        if arr.dtype not in (np.uint8, np.uint16):
            raise XrayganError(f"{rec.source}: npz images must be uint8 or uint16, not {arr.dtype}")
        return arr, xio.to_unit_float(arr), None
    arr = xio.decode_gray(rec.path)
    return arr, xio.to_unit_float(arr), None


def _decode_one(job: tuple[Record, int, str, bool]) -> _Decoded:
    rec, size, fit, allow_upsample = job
    if rec.kind == "bad":
        return _Decoded(error=rec.error)
    try:
        native, unit, pid = _native(rec)
    except XrayganError as e:
        return _Decoded(error=str(e))
    if not allow_upsample and xio.upsample_factor(unit.shape, size, fit) > 1.0 + 1e-9:
        h, w = unit.shape
        return _Decoded(error=f"{rec.path or rec.source}: {w}x{h} px is smaller than --size {size} with --fit {fit} (it would be upsampled); "
                        "choose a smaller --size or pass --allow-upsample", fatal=True)
    return _Decoded(xio.to_square_uint8(unit, size, fit), xio.pixel_sha256(native), pid)


def _decode_all(records: Sequence[Record], size: int, fit: str, allow_upsample: bool, workers: int) -> Iterator[_Decoded]:
    jobs = ((r, size, fit, allow_upsample) for r in records)
    if workers <= 1 or len(records) < 64:
        yield from map(_decode_one, jobs)
        return
    with multiprocessing.get_context().Pool(workers) as pool:
        yield from pool.imap(_decode_one, jobs, chunksize=32)


def _assign_patients(records: list[Record], dicom_ids: list[str | None], shas: list[str], patient_regex: str | None) -> tuple[list[str], str]:
    """Patient id per record and where they came from; warns loudly when images stand alone."""
    if patient_regex:
        rx = compile_patient_regex(patient_regex)
        ids = []
        for r in records:
            pid = patient_from_name(rx, r.source)
            if pid is None:
                raise XrayganError(f"--patient-regex {patient_regex!r} does not match file {r.source}; fix the pattern (see `xraygan prepare --help`)")
            ids.append(pid)
        return ids, "regex"
    ids, origin, alone = [], set(), 0
    for r, did, sha in zip(records, dicom_ids, shas):
        if r.patient_id:
            ids.append(r.patient_id)
            origin.add("csv")
        elif did:
            ids.append(did)
            origin.add("dicom")
        else:
            ids.append(f"image-{sha[:16]}")
            alone += 1
    if alone and not all(r.split for r in records):
        whole = "EVERY image is treated as its own patient" if alone == len(records) else f"{alone} of {len(records)} images are treated as their own patients"
        log.warning(
            "\n" + "!" * 78 + "\nWARNING: no patient ids: %s, so images of one patient may land in "
            "different splits (train/test leakage). Give a CSV patient column (--patient-col) or "
            "--patient-regex (see `xraygan prepare --help`).\n" + "!" * 78, whole,
        )
    if alone:
        origin.add("per-image")
    return ids, "+".join(sorted(origin))


def _drop_duplicates(keep: list[int], shas: list[str], records: list[Record], names: list[str]) -> tuple[list[int], list[dict]]:
    first: dict[str, int] = {}
    kept, dropped = [], []
    for i in keep:
        j = first.setdefault(shas[i], i)
        if j == i:
            kept.append(i)
        else:
            dropped.append({"file": names[i], "duplicate_of": names[j], "same_label": records[i].label == records[j].label})
    if dropped:
        conflicts = sum(not d["same_label"] for d in dropped)
        log.warning("dropped %d exact duplicate image(s) (same decoded pixels)%s, e.g. %s = %s", len(dropped),
                    f", {conflicts} with a different label than the copy kept" if conflicts else "", dropped[0]["file"], dropped[0]["duplicate_of"])
    return kept, dropped


def _decode_into(buf: np.ndarray, records: Sequence[Record], size: int, fit: str, allow_upsample: bool, workers: int, skip_bad: bool,
                 names: Sequence[str]) -> tuple[list[str], list[str | None], list[int], list[dict]]:
    """Decode every record into ``buf`` (N, size, size) uint8; returns the hashes, DICOM patient
    ids, indices decoded and the skipped files (``skip_bad``; listed under their output ``names``)."""
    n = len(records)
    shas: list[str] = [""] * n
    dicom_ids: list[str | None] = [None] * n
    ok, skipped = [], []
    from xraygan.utils.progress import bar

    decoded = bar(_decode_all(records, size, fit, allow_upsample, workers), total=n, desc="decoding", unit="img")
    for i, res in enumerate(decoded):
        if res.error is not None:
            if res.fatal or not skip_bad:
                raise XrayganError(res.error)
            skipped.append({"file": names[i], "error": _redact(res.error, records[i], names[i])})
            continue
        buf[i], shas[i], dicom_ids[i] = res.pixels, res.sha256, res.dicom_patient
        ok.append(i)
    if skipped:
        log.warning("skipped %d bad file(s) (--skip-bad):\n  %s", len(skipped), "\n  ".join(s["error"] for s in skipped))
    return shas, dicom_ids, ok, skipped


def _keep_rows(raw: np.ndarray, kept: list[int], path: Path) -> np.ndarray:
    """Copy rows ``kept`` of ``raw`` into a new .npy file at ``path`` (in chunks); return it mapped."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(kept), *raw.shape[1:]))
    idx = np.asarray(kept, dtype=np.int64)
    for k in range(0, len(idx), 1024):
        out[k:k + 1024] = raw[idx[k:k + 1024]]
    out.flush()
    return out


def _check_classes(classes: Sequence[str], present: set[str], source: Path, allow_single_class: bool) -> list[str]:
    used = [c for c in classes if c in present]
    if not used:
        raise XrayganError(f"source {source}: no images left after reading (every file was skipped or unreadable); nothing to prepare")
    if len(used) < 2 and not allow_single_class:
        what = f"a single class ({used[0]})" if used else "no images"
        raise XrayganError(f"source {source}: {what} after reading; at least two classes are needed (one sub-folder or label per class), or pass --allow-single-class")
    return used


def _source_names(records: Sequence[Record], keep: bool, ids_in_names: bool = False) -> tuple[list[str], bool]:
    """What outputs call each source file: its own name, or ``source-<index>`` (index in the
    source listing) for a source holding DICOM files (their names often carry UIDs or patient
    data), or when ``ids_in_names`` (the patient ids being pseudonymised appear in the file names,
    e.g. ``person1000_bacteria_2931.jpeg``), unless ``keep``. Returns (names, replaced)."""
    if keep or not (ids_in_names or any(r.kind == "dicom" for r in records)):
        return [r.source for r in records], False
    width = max(5, len(str(len(records))))
    return [f"source-{i:0{width}d}" for i in range(len(records))], True


def _ids_in_names(records: Sequence[Record], patient_regex: str | None) -> bool:
    """True when a record's raw patient id can be read from its file name: always with
    ``--patient-regex`` (the ids come from the names), else when a CSV id occurs in the name."""
    if patient_regex:
        return True
    def norm(text: str) -> str:  # IM-0119-0001.png holds the id im0119
        return "".join(ch for ch in text.lower() if ch.isalnum())

    return any(r.patient_id and norm(r.patient_id) and norm(r.patient_id) in norm(r.source) for r in records)


def _redact(text: str, rec: Record, name: str) -> str:
    """``text`` (an error message) with the record's path and source name replaced by ``name``."""
    if name == rec.source:
        return text
    for s in sorted({str(rec.path) if rec.path is not None else "", rec.source} - {""}, key=len, reverse=True):
        text = text.replace(s, name)
    return text


def _pseudonymise_patients(patients: list[str], key: bytes | None) -> list[str]:
    """Pseudonyms for ids from the data; the per-image ids (``image-<sha>``, no patient data) stay."""
    if key is None:
        return patients
    data_ids = [p for p in patients if not p.startswith("image-")]
    table = dict(zip(data_ids, pseudonymise(data_ids, key)))
    return [table.get(p, p) for p in patients]


@locked_output("out", inputs=lambda a: [a["source"]])  # one writer per output folder (lock beside it: see xraygan.utils.fs)
def prepare(
    source: str | Path,
    out: str | Path,
    size: int = 64,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    fit: str = "pad",
    allow_upsample: bool = False,
    path_col: str = "path",
    label_col: str = "label",
    patient_col: str | None = None,
    patient_regex: str | None = None,
    label_names: Sequence[str] | None = None,
    skip_bad: bool = False,
    allow_single_class: bool = False,
    force: bool = False,
    workers: int = 1,
    any_size: bool = False,
    patient_ids: str = "pseudonymised",
    patient_key: str | Path | None = None,
    keep_source_names: bool = False,
    keep_identifying_columns: bool = False,
) -> PreparedDataset:
    """Prepare ``source`` into the dataset folder ``out`` and return it opened.

    ``source``: a folder with one sub-folder per class, a CSV (``path_col``, ``label_col``,
    optional ``patient_col``; paths relative to the CSV), DICOM files in either layout, or a
    MedMNIST ``.npz`` (its split is kept; ``label_names`` names its integer labels).
    ``fit``: ``pad`` | ``crop`` | ``squash`` makes images square; upsampling is refused unless
    ``allow_upsample``; ``size`` is a power of two from 8 to 1024 unless ``any_size``.
    ``patient_regex`` extracts patient ids from file names (see
    :data:`xraygan.data.splits.KERMANY_PATIENT_REGEX`). ``patient_ids``: ``pseudonymised`` (default:
    keyed hashes, key from ``patient_key`` or the per-user key file, see :mod:`xraygan.utils.privacy`)
    or ``raw``. ``keep_source_names`` keeps the source file names in the outputs (replaced by
    ``source-<index>`` by default for DICOM files, and whenever the names hold the patient ids
    being pseudonymised). Extra CSV columns whose names say they identify a person (name, birth
    date, MRN, address, UIDs, ...) are dropped with a warning unless ``keep_identifying_columns``.
    Raises :class:`XrayganError` on bad input.
    """
    options = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, (list, tuple)) else v) for k, v in locals().items()}
    size = check_size(size, any_size)
    check_fractions(val, test)
    if fit not in xio.FITS:
        raise UsageError(f"--fit {fit}: choose one of {', '.join(xio.FITS)}")
    if int(workers) < 1:
        raise UsageError(f"--workers {workers}: must be at least 1")
    check_mode(patient_ids)
    if patient_key is not None and patient_ids == "raw":
        raise UsageError("--patient-key: only used with --patient-ids pseudonymised (the default), not with --patient-ids raw")
    key = load_key(patient_key) if patient_ids == "pseudonymised" else None  # before any work: fails early
    source, out = Path(source), Path(out)
    check_output_dir(out, force, kind="prepared", inputs=[source])
    src = read_source(source, path_col, label_col, patient_col, label_names)
    if label_names and src.source_type != "npz":
        raise XrayganError("--label-names: only applies to a MedMNIST .npz source (folders and CSVs name their classes)")
    _check_classes(src.classes, {r.label for r in src.records}, source, allow_single_class)
    log.info("%s: %d images in %d classes (%s source); decoding at %d px (fit=%s)", source, len(src.records), len(src.classes), src.source_type, size, fit)
    options.pop("out"), options.pop("source"), options.pop("force")
    if src.extra_columns and not keep_identifying_columns:
        dropped_cols = identifying_columns(src.extra_columns)
        if dropped_cols:
            log.warning("%s: column(s) %s not copied into the outputs (they may identify patients); "
                        "pass --keep-identifying-columns to keep them", source, ", ".join(dropped_cols))
            src.extra_columns = [c for c in src.extra_columns if c not in dropped_cols]
    names, names_replaced = _source_names(src.records, keep_source_names, key is not None and _ids_in_names(src.records, patient_regex))
    with staged_output_dir(out, force, kind="prepared", inputs=[source]) as stage:
        # decoded pixels live in a file-backed array, so memory stays flat however large the set
        raw = np.lib.format.open_memmap(stage / "decoded.tmp.npy", mode="w+", dtype=np.uint8, shape=(len(src.records), size, size))
        shas, dicom_ids, ok, skipped = _decode_into(raw, src.records, size, fit, allow_upsample, int(workers), skip_bad, names)
        kept, dropped = _drop_duplicates(ok, shas, src.records, names)
        records = [src.records[i] for i in kept]
        classes = _check_classes(src.classes, {r.label for r in records}, source, allow_single_class)
        patients, patient_origin = _assign_patients(records, [dicom_ids[i] for i in kept], [shas[i] for i in kept], patient_regex)
        labels = [r.label for r in records]
        if all(r.split for r in records):
            splits, split_origin = [r.split for r in records], "source"
        else:
            splits, split_origin = patient_splits(labels, patients, val, test, seed), "patient-stratified"
        patients = _pseudonymise_patients(patients, key)  # after the split: it never depends on the key
        if len(kept) == len(raw):
            pixels = raw
            os.replace(stage / "decoded.tmp.npy", stage / "pixels.npy")
        else:
            pixels = _keep_rows(raw, kept, stage / "pixels.npy")
            del raw
            (stage / "decoded.tmp.npy").unlink()
        info = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "size": size, "classes": classes,
            "counts": split_counts(labels, splits, classes), "n_images": len(records),
            "n_patients": len(set(patients)), "source": str(source.resolve()), "source_type": src.source_type,
            "options": options, "patient_ids_from": patient_origin, "splits_from": split_origin, "pixels": "pixels.npy",
            "duplicates_dropped": dropped, "skipped": skipped, "patient_ids": patient_ids,
            "patient_key_fingerprint": key_fingerprint(key) if key is not None else None,
            "source_names": "replaced" if names_replaced else "kept",
        }
        _write(stage, pixels, records, patients, splits, [shas[i] for i in kept], src, info, int(workers), [names[i] for i in kept])
        del pixels
    _log_summary(info)
    return PreparedDataset.open(out)


def _save_png(job: tuple[Path, np.ndarray]) -> None:
    from PIL import Image

    # zlib level 1 with run-length strategy: ~2x faster than Pillow's default (level 6) on these
    # X-rays and no larger (measured: 25 KiB vs 25 KiB per 224 px image)
    Image.fromarray(job[1]).save(job[0], compress_level=1, compress_type=zlib.Z_RLE)


def _write(stage: Path, pixels: np.ndarray, records: list[Record], patients: list[str], splits: list[str],
           shas: list[str], src: Source, info: dict, workers: int, names: list[str]) -> None:
    """Write images/, pixels.npy, manifest.csv and dataset.json into the staging folder."""
    from xraygan import __version__

    (stage / "images").mkdir()
    width = max(5, len(str(len(records))))
    files = [f"images/{k:0{width}d}_{safe_component(r.label)}.png" for k, r in enumerate(records)]
    jobs = ((path_under(stage, f, what="prepare"), pixels[k]) for k, f in enumerate(files))
    if workers <= 1 or len(files) < 64:
        for job in jobs:
            _save_png(job)
    else:
        with multiprocessing.get_context().Pool(workers) as pool:
            for _ in pool.imap_unordered(_save_png, jobs, chunksize=32):
                pass
    cols = ["file", "label", "patient_id", "sha256", "split", "source", *src.extra_columns]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    # with "\n" as line end, csv leaves a lone "\r" unquoted and a reader splits the row there: quote
    # every field of such a row (mixing quoted and unquoted rows is valid CSV)
    w_quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    w.writerow(cols)
    for k, r in enumerate(records):
        row = [files[k], r.label, patients[k], shas[k], splits[k], names[k], *(r.extra.get(c, "") for c in src.extra_columns)]
        (w_quoted if any("\r" in str(v) for v in row) else w).writerow(row)
    (stage / "manifest.csv").write_text(buf.getvalue())
    atomic_write_json(stage / "dataset.json", {**info, "created_by": f"xraygan {__version__}"})


def _log_summary(info: dict) -> None:
    lines = [f"prepared {info['n_images']} images of {info['n_patients']} patients at {info['size']} px "
             f"(patient ids: {info['patient_ids_from']}; splits: {info['splits_from']})"]
    for s, per in info["counts"].items():
        lines.append(f"  {s:5s} " + "  ".join(f"{c}={n}" for c, n in per.items()))
    fracs = {"val": info["options"].get("val", 0), "test": info["options"].get("test", 0)}
    empty = [f"{s}/{c}" for s, per in info["counts"].items() for c, n in per.items()
             if n == 0 and (s == "train" or fracs.get(s, 0) > 0) and info["splits_from"] != "source"]
    if empty:
        log.warning("no images of %s (too few patients in that class for the split fractions)", ", ".join(empty))
    if info["duplicates_dropped"]:
        lines.append(f"  dropped {len(info['duplicates_dropped'])} duplicate(s); listed in dataset.json")
    log.info("\n".join(lines))


def default_workers() -> int:
    """min(4, CPUs available to this process)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS, Windows)
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))
