"""Model cards: the JSON that travels with every model file and tells inference how to use it.

A card sits next to its model: ``models/fer_resnet.keras`` + ``models/fer_resnet.json``.
Inference reads the card and assumes nothing (label order, input size, TTA, crop margin).
"""

from __future__ import annotations

import platform
import zipfile
from pathlib import Path

import numpy as np

from fer_core.errors import FerError
from fer_core.jsonio import now_iso, read_json, write_json_atomic

CARD_VERSION = 1
# Fraction of the detected face box added on every side before cropping; FER-2013 faces
# are tightly framed but include some forehead and chin, which detector boxes often cut.
DEFAULT_FACE_MARGIN = 0.1


class CardError(FerError, ValueError):
    """A model card that is missing or unusable."""


def card_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def make_card(
    *,
    name: str,
    class_names,
    crop_size: int,
    image_size: int = 48,
    tta: str = "none",
    face_margin: float = DEFAULT_FACE_MARGIN,
    config: dict | None = None,
    dataset: dict | None = None,
    metrics: dict | None = None,
    params: int | None = None,
) -> dict:
    """Assemble a model card: labels in output order, input geometry, TTA, face margin, training
    config, dataset, metrics and library versions (everything inference needs besides the weights)."""
    import keras
    import tensorflow as tf

    return {
        "card_version": CARD_VERSION,
        "name": name,
        "created": now_iso(),
        "labels": list(class_names),
        "input": {
            "image_size": image_size,  # faces are resized to this square, gray
            "crop_size": crop_size,  # the model sees centre (or TTA) crops of this side
            "channels": 1,
            "color": "grayscale (ITU-R 601 luma)",
            "pixel_scaling": "raw 0-255 float input; the model's first layer multiplies by 1/255",
        },
        "face_margin": face_margin,
        "tta": tta,
        "params": params,
        "training": config or {},
        "dataset": dataset or {},
        "metrics": metrics or {},
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
    }


def save_card(model_path: str | Path, card: dict) -> Path:
    p = card_path(model_path)
    write_json_atomic(p, card)
    return p


def load_card(model_path: str | Path) -> dict:
    """Read and check the card next to a model file; raise CardError with what to do."""
    p = card_path(model_path)
    card = read_json(p)
    if card is None:
        raise CardError(f"{p}: model card missing or unreadable; every model file needs its card JSON beside it.")
    for key in ("labels", "input"):
        if key not in card:
            raise CardError(f"{p}: model card has no {key!r} entry.")
    for key in ("image_size", "crop_size"):
        if key not in card["input"]:
            raise CardError(f"{p}: model card has no input.{key} entry.")
    return card


def load_model_file(model_path: str | Path):
    """`keras.models.load_model` with a one-line CardError for a missing, corrupt or truncated file
    (Keras calls a file that is not a complete .keras zip "File not found")."""
    import keras

    p = Path(model_path)
    if not p.is_file():
        raise CardError(f"{p}: no model file there; train one (python -m fer_core train) or pass another model path.")
    if not zipfile.is_zipfile(p):
        raise CardError(
            f"{p}: not a readable .keras model (corrupt or truncated: not a complete zip archive, "
            f"{p.stat().st_size} bytes); copy or export it again."
        )
    try:
        return keras.models.load_model(p, compile=False)
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CardError(f"{p}: not a readable .keras model ({first}); copy or export it again.") from exc


def check_model_against_card(model, card: dict, model_path: str | Path) -> None:
    """Check at load time that a model and its card agree, and that the model gives probabilities.

    One probe batch (black, mid-gray and noise faces) is run through the model, so a model
    with NaN weights, or one that ends in logits instead of a softmax, is refused here with
    one line instead of printing "angry nan%" or "neutral 41805%" later.

    Raises:
        CardError: the line says what differs and what to do.
    """
    p = Path(model_path)
    labels, inp = card["labels"], card["input"]
    crop, channels = int(inp["crop_size"]), int(inp.get("channels", 1))
    outputs = int(model.output_shape[-1])
    if outputs != len(labels):
        raise CardError(
            f"{p}: the model has {outputs} outputs, its card {len(labels)} labels; use the model's own card."
        )
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3 or any(
        have not in (None, want) for have, want in zip(shape, (crop, crop, channels), strict=True)
    ):
        raise CardError(
            f"{p}: the model takes input {shape}, its card says crop_size {crop} with {channels} channel(s) "
            f"({crop}, {crop}, {channels}); use the model's own card."
        )
    rng = np.random.default_rng(0)
    probe = np.stack(
        [
            np.zeros((crop, crop, channels)),
            np.full((crop, crop, channels), 128.0),
            rng.uniform(0, 255, (crop, crop, channels)),
        ]
    ).astype(np.float32)
    out = np.asarray(model(probe, training=False), dtype=np.float64)
    if not np.isfinite(out).all():
        raise CardError(
            f"{p}: the model outputs NaN or infinite scores (broken weights, e.g. from a diverged training run); "
            "use another model."
        )
    sums = out.sum(axis=-1)
    if out.min() < -1e-4 or np.abs(sums - 1.0).max() > 1e-2:
        raise CardError(
            f"{p}: the model's outputs are not probabilities (they sum to {sums.min():.3g}..{sums.max():.3g}, "
            "not 1: it ends without a softmax); export it with its softmax layer."
        )


def label_mapping(dataset_classes, model_labels) -> np.ndarray:
    """Map a dataset's label indexes to a model's, matching class names (case-insensitive).

    A dataset may hold a subset of the model's classes in any order (e.g. CK+48-style
    folders named with FER-2013 names).

    Args:
        dataset_classes: the dataset's class names in its label order.
        model_labels: the model card's "labels" in output order.

    Returns:
        int array `m` with ``m[dataset_label] == model_label``.

    Raises:
        ValueError: a dataset class the model does not know; the message lists both.
    """
    index = {str(n).lower(): i for i, n in enumerate(model_labels)}
    unknown = [str(c) for c in dataset_classes if str(c).lower() not in index]
    if unknown:
        raise ValueError(
            f"dataset class(es) {', '.join(unknown)} not among the model's labels ({', '.join(model_labels)}); "
            "remove those folders or evaluate a model trained on them."
        )
    return np.array([index[str(c).lower()] for c in dataset_classes], np.int64)
