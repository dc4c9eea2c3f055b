"""Shared fixtures: tiny prepared datasets written directly in the prepared-dataset format."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import make_prepared

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chest-xray-pneumonia"


@pytest.fixture
def tiny_prepared(tmp_path: Path) -> Path:
    """A 2-class prepared dataset: 16 px, 24 images per class, 2 images per patient."""
    return make_prepared(tmp_path / "prepared", size=16, n_per_class=24)


@pytest.fixture
def shared_data() -> Path:
    """The real chest X-ray data beside the checkout; tests using it skip when it is absent."""
    if not (SHARED_DATA / "labels.csv").is_file():
        pytest.skip(f"needs the shared chest X-ray data at {SHARED_DATA} (not part of a fresh clone)")
    return SHARED_DATA


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True, scope="session")
def _feature_cache_in_a_temporary_folder(tmp_path_factory):
    """Keep the tests' real-set feature cache out of the user's ~/.cache."""
    old = os.environ.get("XRAYGAN_CACHE")
    os.environ["XRAYGAN_CACHE"] = str(tmp_path_factory.mktemp("feature-cache"))
    yield
    if old is None:
        os.environ.pop("XRAYGAN_CACHE", None)
    else:
        os.environ["XRAYGAN_CACHE"] = old


@pytest.fixture(autouse=True, scope="session")
def _patient_key_in_a_temporary_folder(tmp_path_factory):
    """Keep the pseudonymisation key that `prepare` creates out of the user's ~/.config."""
    old = os.environ.get("XRAYGAN_PATIENT_KEY_FILE")
    os.environ["XRAYGAN_PATIENT_KEY_FILE"] = str(tmp_path_factory.mktemp("patient-key") / "patient.key")
    yield
    if old is None:
        os.environ.pop("XRAYGAN_PATIENT_KEY_FILE", None)
    else:
        os.environ["XRAYGAN_PATIENT_KEY_FILE"] = old
