"""Shared fixtures: repo paths, the bundled sample, ../shared when present, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Load the dashboard package (and with it pylibsrtp) before any test imports TensorFlow:
# pylibsrtp segfaults at import once TensorFlow is loaded (see dashboard/__init__.py).
import dashboard  # noqa: F401

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
SHARED = Path(os.environ.get("FER_SHARED", REPO.parent / "shared"))
SHARED_FER = SHARED / "fer2013"
SHARED_PHOTOS = SHARED / "photos"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session decodes into its own cache folder, never the user's."""
    monkeypatch.setenv("FER_CACHE", str(tmp_path_factory.getbasetemp() / "fer-cache"))


def needs_shared_fer():
    return pytest.mark.skipif(not SHARED_FER.is_dir(), reason=f"{SHARED_FER} not present")


def needs_shared_photos():
    return pytest.mark.skipif(not SHARED_PHOTOS.is_dir(), reason=f"{SHARED_PHOTOS} not present")


@pytest.fixture(scope="session")
def sample_dataset():
    from fer_core.data import load_dataset

    return load_dataset(SAMPLE, cache_dir="")
