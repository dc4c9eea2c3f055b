"""The small chest X-ray sample shipped inside the package (used by ``xraygan demo`` and the README).

It holds a few hundred 64 px 8-bit PNGs from Kermany et al. (2018), "Labeled Optical Coherence
Tomography (OCT) and Chest X-Ray Images for Classification", Mendeley Data v2,
doi:10.17632/rscbjbr9sj.2 (CC BY 4.0), whole patients per class, with ``labels.csv``
(``path,label,subtype,patient_id``) and a README carrying the attribution. It is built by
``scripts/make_sample.py``.
"""
from __future__ import annotations

from pathlib import Path

from xraygan.errors import XrayganError

SAMPLE_NAME = "chest-xray-sample"


def sample_path() -> Path:
    """Folder of the shipped sample (``<class>/*.png`` + ``labels.csv`` + ``README.md``)."""
    try:
        from importlib.resources import files

        root = Path(str(files("xraygan") / "sample_data" / SAMPLE_NAME))
    except (ImportError, TypeError):  # pragma: no cover (zip imports, very old Pythons)
        root = Path(__file__).resolve().parents[1] / "sample_data" / SAMPLE_NAME
    if not (root / "labels.csv").is_file():
        raise XrayganError(f"the shipped sample is missing at {root}; reinstall xraygan (package data sample_data/)")
    return root
