"""Knowledge distillation: a student learns from a teacher model's softened probabilities.

The teacher is a model file with its card (any architecture, an ensemble too, the student's
crop size). Its targets reach the student either online, the teacher run on each augmented
batch (`load_teacher`, used by `fer_core.pipeline.make_datasets`), or cached, run once per
image before training (`cached_teacher_targets`). Either way the targets are
[one-hot | teacher probabilities], and `distillation_loss` mixes the two halves.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

from fer_core.config import ConfigError, TrainConfig
from fer_core.pipeline import training_arrays
from fer_core.runs import TEACHER_TARGETS


def distillation_loss(num_classes: int, temperature: float, alpha: float, label_smoothing: float = 0.0):
    """Hinton et al. (2015, https://arxiv.org/abs/1503.02531): (1 - alpha) x cross-entropy with the
    labels + alpha x T^2 x KL(teacher_T || student_T), where _T is a distribution softened by
    temperature T (softmax of log-probabilities / T; the T^2 keeps the gradient scale of the
    KL term independent of T).

    Targets are [one-hot | teacher probabilities], (B, 2 x num_classes); returns per-sample losses.
    """
    import keras
    from keras import ops

    def soften(p):
        return ops.log_softmax(ops.log(ops.clip(p, 1e-7, 1.0)) / temperature, axis=-1)

    def distillation(y, p):
        p = ops.cast(p, "float32")
        labels, teacher = y[:, :num_classes], y[:, num_classes:]
        hard = keras.losses.categorical_crossentropy(labels, p, label_smoothing=label_smoothing)
        log_t, log_s = soften(teacher), soften(p)
        kl = ops.sum(ops.exp(log_t) * (log_t - log_s), axis=-1)
        return (1.0 - alpha) * hard + alpha * temperature**2 * kl

    return distillation


def label_accuracy(num_classes: int):
    """Top-1 accuracy against the label half of distillation targets, logged as "accuracy"."""
    import keras

    def accuracy(y, p):
        return keras.metrics.categorical_accuracy(y[:, :num_classes], p)

    return accuracy


def teacher_origin(cfg: TrainConfig, class_names) -> dict:
    """Check `cfg.teacher` before training; return what the student's card records of it.

    The teacher must be a model file with a card whose crop size is the student's (it sees the
    student's augmented crops) and whose labels cover the dataset's classes.
    """
    from fer_core.card import card_path, label_mapping, load_card

    src = Path(cfg.teacher)
    if not src.is_file() or not card_path(src).exists():
        raise ConfigError(
            f"teacher: {src} is not a model file with its card; pass e.g. --teacher models/fer_resnet.keras."
        )
    card = load_card(src)
    if int(card["input"]["crop_size"]) != cfg.crop_size:
        raise ConfigError(
            f"teacher: {src} takes {card['input']['crop_size']}px crops, this run {cfg.crop_size}px; "
            f"give this run crop size {card['input']['crop_size']} to learn from it."
        )
    try:
        label_mapping(class_names, card["labels"])
    except ValueError as exc:
        raise ConfigError(f"teacher: {src}: {exc}") from None
    metrics = card.get("metrics") or {}
    return {
        "path": str(src),
        "name": card.get("name"),
        "members": [m.get("name") or m.get("path") for m in card.get("members", [])],
        "params": card.get("params"),
        "val_accuracy": metrics.get("val_accuracy"),
        "tta": card.get("tta"),
        "temperature": cfg.distill_temperature,
        "alpha": cfg.distill_alpha,
        "targets": cfg.distill_targets,
    }


def load_teacher(cfg: TrainConfig, class_names):
    """The teacher as a graph function: (B, crop, crop, 1) raw 0-255 -> (B, classes) float32
    probabilities in the dataset's class order (teacher outputs reordered by name)."""
    import tensorflow as tf

    from fer_core.card import label_mapping, load_card, load_model_file

    model = load_model_file(cfg.teacher)  # a truncated or corrupt file is a one-line error
    order = tf.constant(label_mapping(class_names, load_card(cfg.teacher)["labels"]))

    def teacher(x):
        return tf.gather(tf.cast(model(x, training=False), tf.float32), order, axis=-1)

    return teacher


def cached_teacher_targets(cfg: TrainConfig, ds, run_dir: Path | None = None) -> np.ndarray:
    """The teacher's probabilities (N, classes) for each image of `training_arrays`, in the
    dataset's class order: mean of the centre crop and its mirror, run once through the
    inference engine. Saved in the run folder (when given) so a resumed run reuses them."""
    from fer_core.card import label_mapping, load_card
    from fer_core.engine import load_engine
    from fer_core.jsonio import write_bytes_atomic

    faces, _ = training_arrays(ds, cfg)
    path = run_dir / TEACHER_TARGETS if run_dir is not None else None
    if path is not None and path.exists():
        cached = np.load(path)
        if cached.shape[0] == len(faces):
            return cached
    engine = load_engine(cfg.teacher)
    order = label_mapping(ds.class_names, load_card(cfg.teacher)["labels"])
    t0, shown = time.monotonic(), [0]  # tenths of the faces reported so far

    def progress(done: int, total: int) -> None:
        tenth = 10 * done // total
        if tenth > shown[0]:
            shown[0] = tenth
            print(f"teacher targets: {done}/{total} faces ({time.monotonic() - t0:.0f} s)", flush=True)

    targets = engine.predict_proba(faces, "flip", progress)[:, order].astype(np.float32)
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, targets)
        write_bytes_atomic(path, buf.getvalue())
    return targets
