"""Build the chest X-ray sample shipped in ``src/xraygan/sample_data/chest-xray-sample/``.

Usage::

    python scripts/make_sample.py PATH/TO/chest-xray-pneumonia/labels.csv [--per-class 180] [--size 64] [--seed 0]

Takes whole patients (so patient-level splits work on the sample) at random with ``--seed``
until each class has about ``--per-class`` images, downsizes them to ``--size`` px 8-bit PNG
(antialiased bilinear, as ``xraygan prepare``), and writes one sub-folder per class, a
``labels.csv`` (``path,label,subtype,patient_id``) and a README with the data's CC BY 4.0
attribution (copied from the source README's Source and License lines).
"""
from __future__ import annotations

import argparse
import csv
import io
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from xraygan.data.io import read_image, to_square_uint8

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "xraygan" / "sample_data" / "chest-xray-sample"


def choose_patients(rows: list[dict], per_class: int, seed: int) -> list[dict]:
    """Whole patients per class, shuffled by ``seed``, until each class has ``per_class`` images."""
    by_class: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_class[r["label"]][r["patient_id"]].append(r)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in sorted(by_class):
        patients = sorted(by_class[label])
        n = 0
        for i in rng.permutation(len(patients)):
            if n >= per_class:
                break
            imgs = by_class[label][patients[i]]
            chosen.extend(imgs)
            n += len(imgs)
    return sorted(chosen, key=lambda r: r["path"])


def attribution(readme: Path) -> str:
    """The Source and License lines of the data's README (the CC BY 4.0 attribution)."""
    lines, keep = [], False
    for line in readme.read_text().splitlines():
        if line.startswith("- Source:") or line.startswith("- License:"):
            keep = True
        elif line.startswith("- ") or not line.strip():
            keep = False
        if keep:
            lines.append(line)
    if not lines:
        raise SystemExit(f"{readme}: no '- Source:' / '- License:' lines to copy the attribution from")
    return "\n".join(lines)


def write_sample(labels_csv: Path, out: Path, per_class: int, size: int, seed: int) -> None:
    """Write the sample folder (replacing it)."""
    with open(labels_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    chosen = choose_patients(rows, per_class, seed)
    if out.exists():
        shutil.rmtree(out)
    table = io.StringIO()
    w = csv.writer(table, lineterminator="\n")
    w.writerow(["path", "label", "subtype", "patient_id"])
    for r in chosen:
        rel = Path(r["path"]).with_suffix(".png")
        (out / rel.parent).mkdir(parents=True, exist_ok=True)
        img = to_square_uint8(read_image(labels_csv.parent / r["path"]), size, "pad")
        Image.fromarray(img).save(out / rel, optimize=True)
        w.writerow([rel.as_posix(), r["label"], r["subtype"], r["patient_id"]])
    (out / "labels.csv").write_text(table.getvalue())
    counts = defaultdict(int)
    for r in chosen:
        counts[r["label"]] += 1
    n_pat = len({r["patient_id"] for r in chosen})
    summary = ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
    (out / "README.md").write_text(
        f"# Chest X-ray sample ({len(chosen)} images: {summary}; {n_pat} patients; {size}x{size} px)\n\n"
        "A small sample of pediatric frontal chest radiographs (normal vs pneumonia), downsized to "
        f"{size} px 8-bit grayscale PNG, shipped with xraygan for `xraygan demo` and the tests.\n"
        "Whole patients were taken, so patient-level splits work; `labels.csv` has "
        "`path,label,subtype,patient_id`.\n\n## Attribution (CC BY 4.0)\n\n"
        f"{attribution(labels_csv.parent / 'README.md')}\n\n"
        "Changes: a random subset of whole patients; images downsized and converted from JPEG to PNG.\n"
        f"Built by `python scripts/make_sample.py PATH/TO/labels.csv --per-class {per_class} --size {size} --seed {seed}`.\n"
    )
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {len(chosen)} images ({summary}) of {n_pat} patients to {out}: {total / 1e6:.2f} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("labels_csv", type=Path, help="labels.csv of the chest-xray-pneumonia data (path,label,subtype,patient_id)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (replaced)")
    p.add_argument("--per-class", type=int, default=180, help="approximate images per class (whole patients)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0, help="seed of the patient choice")
    a = p.parse_args()
    write_sample(a.labels_csv, a.out, a.per_class, a.size, a.seed)


if __name__ == "__main__":
    main()
