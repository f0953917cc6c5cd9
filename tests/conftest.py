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


def make_tiny_model(
    folder: Path, *, tta: str = "none", labels=None, margin: float = 0.1, policy: str = "float32", name: str = "tiny"
) -> Path:
    """A small untrained ResNet-10 (width 8, 44x44 input) built under a dtype `policy`, saved with its card."""
    import keras

    from fer_core.card import make_card, save_card
    from fer_core.constants import EMOTIONS
    from fer_core.model import create_model

    labels = EMOTIONS if labels is None else labels
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.keras"
    old = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy)
    try:
        model = create_model("resnet10", width=8, input_shape=(44, 44, 1), num_classes=len(labels))
    finally:
        keras.config.set_dtype_policy(old)
    model.save(path)
    save_card(path, make_card(name=name, class_names=labels, crop_size=44, tta=tta, face_margin=margin))
    return path


def eager_proba(model, faces, tta: str = "none"):
    """The reference the inference engine is checked against: the Keras model called eagerly on
    every TTA view at once, probabilities averaged over the views."""
    import numpy as np

    from fer_core.preprocess import tta_views

    views = tta_views(np.asarray(faces), int(model.input_shape[1]), tta)
    v, n = views.shape[:2]
    flat = views.reshape(v * n, *views.shape[2:])
    return np.asarray(model(flat, training=False), np.float32).reshape(v, n, -1).mean(axis=0)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """An empty runs folder that the dashboard's Train page reads, with the bundled sample as its data."""
    from dashboard import resources

    d = tmp_path / "runs"
    monkeypatch.setattr(resources, "RUNS_DIR", d)
    monkeypatch.setenv("FER_DATA", str(SAMPLE))
    return d
