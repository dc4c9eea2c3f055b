"""Turn X-ray images into a prepared dataset: square grayscale PNGs at one size, a uint8 array,
a manifest with patient ids and patient-level stratified train/val/test splits.

SOURCE is one of:
  - a folder with one sub-folder per class (PNG/JPEG/TIFF/BMP 8- or 16-bit, gray/RGB/RGBA, or DICOM);
  - a CSV with image paths relative to the CSV's folder (--path-col, --label-col, --patient-col);
  - a MedMNIST .npz (train_/val_/test_ images and labels; its own split is kept; --label-names).

Patient ids come from --patient-regex on file names when given, else the CSV's patient column,
else the DICOM PatientID; without any, every image is its own patient (a loud warning: patients
may leak across splits). For the Kermany chest X-ray names use
  --patient-regex '^(person\\d+)_|^((?:NORMAL2-)?IM)-(\\d+)'
which maps person123_bacteria_456.jpeg -> person123 and IM-0115-0001.jpeg -> im0115 (the capture
groups are joined and lower-cased; a named group (?P<patient>...) is used alone when present).

Privacy: patient ids are written pseudonymised by default (p- + 16 hex digits of HMAC-SHA256 with a
secret key from --patient-key FILE or a per-user key file created with mode 0600 at
$XRAYGAN_PATIENT_KEY_FILE, else $XDG_CONFIG_HOME/xraygan/patient.key or
~/.config/xraygan/patient.key); the key never goes into any output, dataset.json keeps only its
fingerprint, and the split does not depend on it. --patient-ids raw writes the ids as found. For a
source with DICOM files, and wherever the file names hold the patient ids being pseudonymised (ids
from --patient-regex, or CSV ids found in the names), the file names are replaced by source-<index>
in every output; --keep-source-names keeps them. A CSV's patient column is patient_id, PatientID,
Patient ID, subject_id, ... (or --patient-col); extra CSV columns that identify a person (name,
birth date, MRN, address, UIDs) are not copied unless --keep-identifying-columns. No other DICOM
header field is read.

Example:
  xraygan prepare ../shared/data/chest-xray-pneumonia/labels.csv data/cxr64 --size 64
"""
from __future__ import annotations

import argparse
from pathlib import Path

from xraygan.options import arg, nonneg_int, real, seed

HELP = "turn a class folder, CSV, DICOM set or MedMNIST npz into a prepared dataset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `xraygan prepare`."""
    p.add_argument("source", type=Path, help="class folder, CSV file or MedMNIST .npz")
    p.add_argument("out", type=Path, help="output folder (refused if it exists and is not empty, unless --force)")
    p.add_argument("--size", type=int, default=64, help="side of the square output images in pixels (power of two, 8..1024)")
    p.add_argument("--any-size", action="store_true", help="allow a --size that is not a power of two (e.g. 224 for classifiers; the GANs need powers of two)")
    p.add_argument("--fit", choices=("pad", "crop", "squash"), default="pad",
                   help="how a non-square image becomes square: pad with black borders, centre-crop, or squash (change aspect ratio)")
    p.add_argument("--allow-upsample", action="store_true", help="allow enlarging images smaller than --size (refused by default)")
    p.add_argument("--val", type=arg(real(0.0, 1.0, hi_open=True)), default=0.1, help="fraction of images (by patient, per class) for validation")
    p.add_argument("--test", type=arg(real(0.0, 1.0, hi_open=True)), default=0.1, help="fraction of images (by patient, per class) for testing")
    p.add_argument("--seed", type=arg(seed), default=0, help="seed of the patient-level split")
    g = p.add_argument_group("CSV and label options")
    g.add_argument("--path-col", default="path", help="CSV column with image paths (relative to the CSV's folder)")
    g.add_argument("--label-col", default="label", help="CSV column with class labels")
    g.add_argument("--patient-col", default=None, help="CSV column with patient ids (default: 'patient_id' when present)")
    g.add_argument("--patient-regex", default=None,
                   help="regular expression extracting a patient id from each file name (capture groups joined, lower-cased); overrides other patient ids")
    g.add_argument("--label-names", default=None, help="comma-separated class names for the integer labels of a .npz source, e.g. normal,pneumonia")
    g.add_argument("--allow-single-class", action="store_true", help="accept a source with one class only (by default two or more are required)")
    g = p.add_argument_group("privacy options")
    g.add_argument("--patient-ids", choices=("pseudonymised", "raw"), default="pseudonymised",
                   help="write patient ids as keyed hashes p-<16 hex> (default) or raw, as found in the data")
    g.add_argument("--patient-key", type=Path, default=None, metavar="FILE",
                   help="file holding the secret key for pseudonymised ids (default: a per-user key file, created with mode 0600 at "
                        "$XRAYGAN_PATIENT_KEY_FILE or ~/.config/xraygan/patient.key); never copied into any output")
    g.add_argument("--keep-source-names", action="store_true",
                   help="keep the source file names in manifest.csv and dataset.json (replaced by source-<index> by default for DICOM "
                        "files and when the names hold the patient ids being pseudonymised, e.g. with --patient-regex)")
    g.add_argument("--keep-identifying-columns", action="store_true",
                   help="copy extra CSV columns whose names say they identify a person (name, birth date, MRN, address, UIDs, ...) "
                        "into manifest.csv (dropped with a warning by default)")
    g = p.add_argument_group("run options")
    g.add_argument("--skip-bad", action="store_true", help="skip corrupt, truncated, empty or non-image files (listed in the log and dataset.json) instead of stopping")
    g.add_argument("--force", action="store_true", help="replace an existing non-empty output folder")
    g.add_argument("--workers", type=arg(nonneg_int), default=1, help="processes decoding images in parallel (0 = min(4, CPUs))")


def run(args: argparse.Namespace) -> int:
    """Call :func:`xraygan.data.prepare.prepare` with the parsed options."""
    from xraygan.data.prepare import default_workers, prepare

    names = [n.strip() for n in args.label_names.split(",")] if args.label_names else None
    ds = prepare(
        args.source, args.out, size=args.size, val=args.val, test=args.test, seed=args.seed, fit=args.fit,
        allow_upsample=args.allow_upsample, path_col=args.path_col, label_col=args.label_col,
        patient_col=args.patient_col, patient_regex=args.patient_regex, label_names=names,
        skip_bad=args.skip_bad, allow_single_class=args.allow_single_class, force=args.force,
        workers=args.workers if args.workers != 0 else default_workers(), any_size=args.any_size,
        patient_ids=args.patient_ids, patient_key=args.patient_key, keep_source_names=args.keep_source_names, keep_identifying_columns=args.keep_identifying_columns,
    )
    print(f"wrote {len(ds)} images ({', '.join(ds.classes)}) to {ds.root}")
    return 0
