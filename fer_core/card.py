"""Model cards: the JSON that travels with every model file and tells inference how to use it.

A card sits next to its model: ``models/fer_resnet.keras`` + ``models/fer_resnet.json``.
Inference reads the card and assumes nothing (label order, input size, TTA, crop margin).
"""

from __future__ import annotations

import platform
from pathlib import Path

from fer_core.runs import now_iso, read_json, write_json_atomic

CARD_VERSION = 1
# Fraction of the detected face box added on every side before cropping; FER-2013 faces
# are tightly framed but include some forehead and chin, which detector boxes often cut.
DEFAULT_FACE_MARGIN = 0.1


class CardError(ValueError):
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
    """Assemble a model card dict (see README 'Model card')."""
    import keras
    import numpy as np
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
