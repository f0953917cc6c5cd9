"""Every cached resource of the dashboard, in one module.

`st.cache_resource` for things that hold live objects (models, detectors); `st.cache_data`
for decoded datasets and computed reports. Unhashable arguments start with `_`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from fer_core.constants import DEFAULT_DETECTOR, DEFAULT_MODEL_NAME
from fer_core.runs import runs_folder

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "data" / "sample"
MODELS_DIR = REPO / "models"
DEFAULT_MODEL = MODELS_DIR / f"{DEFAULT_MODEL_NAME}.keras"
RUNS_DIR = runs_folder()  # $FER_RUNS, else runs/ in the repository, as for the CLI


def default_data_root() -> str:
    """$FER_DATA when it points somewhere real, else the bundled sample."""
    env = os.environ.get("FER_DATA")
    if env and Path(env).exists():
        return env
    return str(SAMPLE_DATA)


def _mtime(path: str | Path) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


def data_key(root: str | Path) -> tuple[str, str]:
    """(resolved path, fingerprint): what every dataset cache below is keyed on, so a dataset
    changed on disk is reloaded and two spellings of one path share an entry. Raises DataError."""
    from fer_core.data import dataset_fingerprint

    path = str(Path(root).expanduser().resolve())
    return path, dataset_fingerprint(path)


# cache_resource, not cache_data: the arrays (80 MB for FER-2013) are shared read-only instead
# of being pickled into the cache and copied out on every rerun.
@st.cache_resource(
    show_spinner="Decoding the dataset (the first time only; FER-2013 takes about a minute, then seconds)...",
    max_entries=4,
)
def _dataset(path: str, fingerprint: str):
    from fer_core.data import load_dataset

    ds = load_dataset(path)
    for array in (ds.images, ds.labels, ds.splits, ds.sources):
        array.setflags(write=False)  # shared by every session: nobody may change it in place
    return ds


def dataset(root: str):
    """The FaceDataset at `root`, shared by all sessions until its files change."""
    return _dataset(*data_key(root))


@st.cache_data(show_spinner="Building the data-quality report...", max_entries=4)
def _quality(path: str, fingerprint: str) -> dict:
    from fer_core.quality import quality_report

    return quality_report(_dataset(path, fingerprint))


def quality(root: str) -> dict:
    """The data-quality report of the dataset at `root` (fer_core.quality.quality_report)."""
    return _quality(*data_key(root))


@st.cache_data(show_spinner=False, max_entries=4)
def _quality_json(path: str, fingerprint: str) -> str:
    import json

    return json.dumps(_quality(path, fingerprint), indent=1)


def quality_json(root: str) -> str:
    """The report as JSON text, made once (it is ~0.5 MB on FER-2013)."""
    return _quality_json(*data_key(root))


@st.cache_data(show_spinner="Counting pixel values...", max_entries=4)
def _intensity_figure(path: str, fingerprint: str):
    from dashboard.figures import intensity_histograms

    ds = _dataset(path, fingerprint)
    return intensity_histograms(ds.images, ds.labels, ds.class_names)


def intensity_figure(root: str):
    """The per-class pixel-intensity figure of the dataset at `root`."""
    return _intensity_figure(*data_key(root))


@st.cache_data(max_entries=16, show_spinner=False)
def _class_indices(path: str, fingerprint: str, split: str) -> list[np.ndarray]:
    ds = _dataset(path, fingerprint)
    in_split = ds.splits == split
    return [np.flatnonzero(in_split & (ds.labels == i)) for i in range(len(ds.class_names))]


def class_indices(root: str, split: str) -> list[np.ndarray]:
    """Row numbers of each class's faces in one split (no copy of the images)."""
    return _class_indices(*data_key(root), split)


@st.cache_resource(show_spinner="Loading model...", max_entries=4)
def model(path: str, mtime_key: float = 0.0):
    """(keras model, card) for a model file; `mtime_key` reloads a file that changed."""
    import keras

    from fer_core.card import load_card

    card = load_card(path)
    return keras.models.load_model(path, compile=False), card


def load_model(path: str | Path):
    """Cached (model, card), reloaded when the file on disk changes."""
    return model(str(path), _mtime(path))


# ----------------------------------------------------------------------------- Evaluate page


@st.cache_data(show_spinner="Reading stored predictions...", max_entries=8)
def stored_predictions(path: str, mtime_key: float = 0.0) -> tuple[dict, dict]:
    """(metrics, predictions) from a model's stored .npz (see fer_core.evaluate.save_predictions)."""
    from fer_core.evaluate import load_predictions
    from fer_core.metrics import compute_metrics

    preds = load_predictions(path)
    return compute_metrics(preds["labels"], preds["probs"], preds["class_names"]), preds


@st.cache_data(show_spinner="Predicting on the dataset (cached afterwards)...", max_entries=8)
def _dataset_predictions(model_path: str, mtime_key: float, path: str, fingerprint: str, split: str, tta: str):
    from fer_core.evaluate import evaluate_dataset

    model_obj, card = load_model(model_path)
    return evaluate_dataset(model_obj, card, _dataset(path, fingerprint), split, tta)


def dataset_predictions(model_path: str, mtime_key: float, root: str, split: str, tta: str) -> tuple[dict, dict]:
    """(metrics, predictions) of a model on one split of a dataset; classes matched by name."""
    return _dataset_predictions(model_path, mtime_key, *data_key(root), split, tta)


@st.cache_resource(max_entries=4)
def _source_index(path: str, fingerprint: str) -> dict[str, int]:
    return {str(s): i for i, s in enumerate(_dataset(path, fingerprint).sources)}


def source_index(root: str) -> dict[str, int]:
    """{source path: row} of a dataset, to find the faces behind stored predictions (shared, read it only)."""
    return _source_index(*data_key(root))


@st.cache_data(max_entries=64, show_spinner=False)
def gradcam_overlays(model_path: str, mtime_key: float, faces: np.ndarray, class_indices: list[int]) -> list:
    """Grad-CAM overlays (RGB uint8, 144 px) of 48x48 faces, one class each, in one batch."""
    from fer_core.explain import gradcam_batch, overlay

    model_obj, card = load_model(model_path)
    maps = gradcam_batch(model_obj, faces, card["input"]["crop_size"], class_indices)
    return [overlay(face, m, size=144) for face, m in zip(faces, maps, strict=True)]


# ----------------------------------------------------------------------------- inference


def inference_model_path() -> Path:
    """The model the Predict and Webcam pages use: $FER_MODEL when set, else the shipped one."""
    return Path(os.environ.get("FER_MODEL") or DEFAULT_MODEL)


@st.cache_resource(show_spinner="Loading the recogniser...", max_entries=4)
def recognizer(path: str, mtime_key: float = 0.0, tta: str | None = None):
    """A `Recognizer` sharing the cached Keras model; `tta` None -> the card's choice."""
    from fer_core.inference import Recognizer

    keras_model, _ = model(path, mtime_key)
    return Recognizer(path, tta=tta, model=keras_model).warmup()


def load_recognizer(path: str | Path, tta: str | None = None):
    """Cached recogniser for a model file, reloaded when the file changes."""
    return recognizer(str(path), _mtime(path), tta)


# scope="session": an OpenCV cascade and a TFLite interpreter keep per-image state while they
# run, so two sessions must not share one.
@st.cache_resource(max_entries=8, scope="session")
def detector(name: str = DEFAULT_DETECTOR, **settings):
    """A photo-preset face detector (`fer_core.faces.create_detector`) with these settings, one per browser session."""
    from fer_core.faces import create_detector

    return create_detector(name, "photo", **settings)


# ----------------------------------------------------------------------------- Predict page


def upload_digest(data: bytes) -> str:
    """What per-upload caches key on: the file's bytes, not its name."""
    import hashlib

    return hashlib.blake2b(data, digest_size=16).hexdigest()


@st.cache_data(max_entries=256, show_spinner=False)
def photo_faces(digest: str, recognizer_key: str, cropped: bool, _rec, _data: bytes, _name: str = "upload"):
    """(rgb, faces) of one uploaded photo, computed once per (bytes, recognizer settings): adding a
    photo does not re-run the others. Raises ImageError (not cached) for a file that is not a photo,
    its message naming the file `_name` (the name does not change a result, so it is no cache key)."""
    from fer_core.images import UPLOAD_MAX_PIXELS, decode_image

    rgb = decode_image(_data, max_pixels=UPLOAD_MAX_PIXELS, name=_name)
    return rgb, ([_rec.predict_crop(rgb)] if cropped else _rec.predict_image(rgb))


@st.cache_data(max_entries=256, show_spinner=False)
def photo_gradcams(digest: str, recognizer_key: str, cropped: bool, _rec, _rgb, _faces) -> list | None:
    """Grad-CAM overlays (144 px) of every face of one photo, in one batch; None when the model has none."""
    from fer_core.explain import gradcam_batch, overlay

    if not _faces:
        return []
    crops = _rec.crops(_rgb, _faces)
    try:
        maps = gradcam_batch(_rec.model, crops, _rec.crop_size, [_rec.labels.index(f.emotion) for f in _faces])
    except ValueError:
        return None
    return [overlay(c, m, size=144) for c, m in zip(crops, maps, strict=True)]


@st.cache_data(max_entries=256, show_spinner=False)
def annotated_photo(digest: str, recognizer_key: str, cropped: bool, landmarks: bool, _rgb, _faces, _labels) -> bytes:
    """The photo with its boxes and emotions drawn, as JPEG bytes: drawn and encoded once, not on
    every rerun (st.image re-encodes an array each time, ~0.3 s for a 12-megapixel photo)."""
    import io

    from PIL import Image

    from fer_core.drawing import annotate

    buf = io.BytesIO()
    Image.fromarray(annotate(_rgb, _faces, _labels, landmarks=landmarks)).save(buf, "JPEG", quality=90)
    return buf.getvalue()
