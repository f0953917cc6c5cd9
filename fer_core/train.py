"""Training: data pipeline, augmentation, optimiser and schedule, callbacks, run folder.

Reads top to bottom: precision and strategy, data, augmentation, model, compile,
callbacks, fit, final evaluation. `train(config, run_dir)` is the one entry point; the
CLI (`python -m fer_core train`) and the dashboard's jobs call it in their own process.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import shutil
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fer_core.config import TrainConfig
from fer_core.constants import IMAGE_SIZE
from fer_core.hardware import cpu_supports_bf16, training_runtime
from fer_core.jsonio import append_jsonl, now_iso, read_json, write_json_atomic
from fer_core.runs import (
    BACKUP_DIR,
    BEST_FILE,
    CONFIG_FILE,
    EPOCH_SUFFIX,
    EPOCHS_DIR,
    METRICS_FILE,
    MODEL_FILE,
    PREVIOUS_METADATA,
    PREVIOUS_WEIGHTS,
    STATUS_FILE,
    STOP_FILE,
    TEACHER_TARGETS,
    WORKERS_DIR,
    backup_epoch,
    update_status,
)


class StopRequested(Exception):
    """Raised internally when a stop file appears; the run ends as 'stopped'."""


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number; the run ends as 'failed' and keeps its last good epoch."""


# ----------------------------------------------------------------------------- hardware


def resolve_precision(precision: str) -> str:
    """Map "auto" to mixed_bfloat16 on a GPU or a bf16-capable CPU, else float32."""
    if precision != "auto":
        return precision
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU") or cpu_supports_bf16():
        return "mixed_bfloat16"
    return "float32"


def make_strategy(name: str):
    """The tf.distribute strategy for a config's `strategy` setting."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy=multiworker needs the TF_CONFIG environment variable (cluster and task).")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def worker_info() -> tuple[bool, int]:
    """(is_chief, task index) from TF_CONFIG; a single process is the chief."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = tf_config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    return (kind == "chief" or (kind == "worker" and index == 0)), index


# ----------------------------------------------------------------------------- data


def class_weight_vector(labels: np.ndarray, num_classes: int, mode: str) -> np.ndarray:
    """Per-class loss weights: none (all 1), balanced (n / (k * count)), sqrt (its square root)."""
    if mode == "none":
        return np.ones(num_classes, np.float32)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    w = len(labels) / (num_classes * np.maximum(counts, 1))
    if mode == "sqrt":
        w = np.sqrt(w)
    w = w / (w @ (counts / counts.sum()))  # mean weight over the data stays 1: lr keeps its meaning
    return w.astype(np.float32)


def augment_batch(images, cfg: TrainConfig, training: bool = True):
    """Random crop + flip + rotation + translation + zoom in one projective warp per image.

    Args:
        images: float32 (B, 48, 48, 1) raw 0-255 faces.
        cfg: the config (crop_size, rotation, translation, zoom, erasing).

    Returns:
        float32 (B, crop, crop, 1).
    """
    import tensorflow as tf

    b = tf.shape(images)[0]
    c = cfg.crop_size
    # Each output pixel p maps back to input A @ (p - c_out) + c_in: one warp does it all.
    theta = tf.random.uniform([b], -1.0, 1.0) * (cfg.rotation * math.pi / 180.0)
    scale = 1.0 / (1.0 + tf.random.uniform([b], -cfg.zoom, cfg.zoom))
    flip = tf.where(tf.random.uniform([b]) < 0.5, -1.0, 1.0)
    max_shift = (IMAGE_SIZE - c) / 2.0 + cfg.translation * IMAGE_SIZE
    tx = tf.random.uniform([b], -max_shift, max_shift)
    ty = tf.random.uniform([b], -max_shift, max_shift)
    cos, sin = tf.cos(theta) * scale, tf.sin(theta) * scale
    a0, a1 = cos * flip, -sin
    b0, b1 = sin * flip, cos
    co = (c - 1) / 2.0
    ci = (IMAGE_SIZE - 1) / 2.0
    a2 = ci + tx - (a0 * co + a1 * co)
    b2 = ci + ty - (b0 * co + b1 * co)
    zeros = tf.zeros([b])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.constant([c, c]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    if cfg.erasing > 0:
        out = random_erasing(out, cfg.erasing)
    return out


def random_erasing(images, probability: float):
    """Replace a random rectangle (2-25% of the area) of some images with noise."""
    import tensorflow as tf

    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    area = tf.random.uniform([b], 0.02, 0.25) * hf * wf
    ratio = tf.exp(tf.random.uniform([b], math.log(0.3), math.log(3.3)))
    eh = tf.minimum(tf.sqrt(area * ratio), hf)
    ew = tf.minimum(tf.sqrt(area / ratio), wf)
    y0 = tf.random.uniform([b]) * (hf - eh)
    x0 = tf.random.uniform([b]) * (wf - ew)
    ys = tf.cast(tf.range(h), tf.float32)[None, :, None]
    xs = tf.cast(tf.range(w), tf.float32)[None, None, :]
    inside = (
        (ys >= y0[:, None, None])
        & (ys < (y0 + eh)[:, None, None])
        & (xs >= x0[:, None, None])
        & (xs < (x0 + ew)[:, None, None])
        & (tf.random.uniform([b])[:, None, None] < probability)
    )
    noise = tf.random.uniform(tf.shape(images), 0.0, 255.0)
    return tf.where(inside[..., None], noise, images)


def mixup(images, targets, weights, alpha: float):
    """Mix each batch with a shuffled copy of itself, lambda ~ Beta(alpha, alpha)."""
    import tensorflow as tf

    b = tf.shape(images)[0]
    g1 = tf.random.gamma([b], alpha)
    g2 = tf.random.gamma([b], alpha)
    lam = g1 / (g1 + g2)
    perm = tf.random.shuffle(tf.range(b))
    lam_x = lam[:, None, None, None]
    images = lam_x * images + (1 - lam_x) * tf.gather(images, perm)
    targets = lam[:, None] * targets + (1 - lam[:, None]) * tf.gather(targets, perm)
    weights = lam * weights + (1 - lam) * tf.gather(weights, perm)
    return images, targets, weights


def stream_seed(seed: int, resume_point: int) -> int:
    """The seed of the training data's order and augmentation for a process that starts after
    `resume_point` finished epochs: the config's seed for a new run, a different one derived
    from both on each resume, so a resumed run does not replay its first epoch's images."""
    if resume_point <= 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(resume_point)]).generate_state(1)[0] & 0x7FFFFFFF)


def training_arrays(ds, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(faces (N, 48, 48) uint8, labels (N,)) a run trains on: the train split, or the subset
    of `max_train_images` that cfg.seed picks."""
    train = ds.split("train")
    if cfg.max_train_images:
        keep = np.sort(np.random.default_rng(cfg.seed).permutation(len(train))[: cfg.max_train_images])
        return train.images[keep], train.labels[keep]
    return train.images, train.labels


def make_datasets(
    ds, cfg: TrainConfig, num_classes: int, shuffle_seed: int | None = None, teacher=None, teacher_targets=None
):
    """(train tf.data.Dataset, val tf.data.Dataset or None, counts) from a FaceDataset.

    shuffle_seed: the seed of the data order (default: cfg.seed); the subset kept by
    max_train_images always follows cfg.seed.
    teacher: for distillation, a function (B, crop, crop, 1) images -> (B, classes) probabilities
    in the dataset's class order (see `load_teacher`). It runs on each batch after augmentation,
    on exactly the views the student sees, and the targets become [one-hot | teacher
    probabilities] (B, 2 x classes); validation targets repeat the one-hot labels in both halves.
    teacher_targets: instead of `teacher`, fixed teacher probabilities (N, classes), one row per
    image of `training_arrays` (see `cached_teacher_targets`); same target layout.
    """
    import tensorflow as tf

    from fer_core.preprocess import tta_views

    train_x, train_y = training_arrays(ds, cfg)
    if len(train_x) == 0:
        raise ValueError(f"{cfg.data}: the dataset has no training images.")
    cw = class_weight_vector(train_y, num_classes, cfg.class_weights)
    x = train_x[..., None]
    y = np.eye(num_classes, dtype=np.float32)[train_y]
    if teacher_targets is not None:
        y = np.concatenate([y, np.asarray(teacher_targets, np.float32)], axis=1)
    w = cw[train_y]
    distilling = teacher is not None or teacher_targets is not None

    def aug(xb, yb, wb):
        xb = tf.cast(xb, tf.float32)
        if cfg.augment:
            xb = augment_batch(xb, cfg)
        else:
            o = (IMAGE_SIZE - cfg.crop_size) // 2
            xb = xb[:, o : o + cfg.crop_size, o : o + cfg.crop_size, :]
        if cfg.mixup > 0:
            xb, yb, wb = mixup(xb, yb, wb, cfg.mixup)
        if teacher is not None:
            yb = tf.concat([yb, tf.cast(teacher(xb), tf.float32)], axis=-1)
        return xb, yb, wb

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_ds = (
        tf.data.Dataset.from_tensor_slices((x, y, w))
        .shuffle(len(x), seed=cfg.seed if shuffle_seed is None else shuffle_seed, reshuffle_each_iteration=True)
        .batch(cfg.batch_size)
        .map(aug, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(options)
    )
    val = ds.split("val")
    val_ds = None
    if len(val):
        vx = tta_views(val.images, cfg.crop_size, "none")[0]
        vy = np.eye(num_classes, dtype=np.float32)[val.labels]
        if distilling:
            vy = np.concatenate([vy, vy], axis=1)
        val_ds = tf.data.Dataset.from_tensor_slices((vx, vy)).batch(256).prefetch(2).with_options(options)
    counts = {"train": int(len(x)), "val": int(len(val)), "test": int((ds.splits == "test").sum())}
    return train_ds, val_ds, counts


# ----------------------------------------------------------------------------- optimiser


def make_schedule(cfg: TrainConfig, steps_per_epoch: int):
    """A Keras LearningRateSchedule (cosine with warmup) or a float (plateau / constant)."""
    import keras

    if cfg.schedule != "cosine":
        return cfg.learning_rate
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else cfg.learning_rate,
        decay_steps=max(1, total - warmup),
        alpha=0.0,
        warmup_target=cfg.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int):
    import keras

    lr = make_schedule(cfg, steps_per_epoch)
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        opt = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    else:
        return keras.optimizers.Adam(lr)
    # Decay conv/dense kernels only: shrinking BatchNorm scales and biases just fights the normalisation.
    opt.exclude_from_weight_decay(var_names=["_bn", "bias"])
    return opt


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    try:
        return float(np.asarray(lr))
    except TypeError:
        return float(np.asarray(lr(optimizer.iterations)))


# ----------------------------------------------------------------------------- distillation


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
        raise ValueError(
            f"teacher: {src} is not a model file with its card; pass e.g. --teacher models/fer_resnet.keras."
        )
    card = load_card(src)
    if int(card["input"]["crop_size"]) != cfg.crop_size:
        raise ValueError(
            f"teacher: {src} takes {card['input']['crop_size']}px crops, this run {cfg.crop_size}px; "
            f"give this run crop size {card['input']['crop_size']} to learn from it."
        )
    try:
        label_mapping(class_names, card["labels"])
    except ValueError as exc:
        raise ValueError(f"teacher: {src}: {exc}") from None
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


def build_model(cfg: TrainConfig, num_classes: int, steps_per_epoch: int):
    """The config's architecture, compiled with its optimizer, schedule and loss (under the
    current mixed-precision policy and distribution scope); with a teacher, the distillation
    loss on [one-hot | teacher] targets."""
    import keras

    from fer_core.model import create_model

    model = create_model(
        cfg.arch,
        width=cfg.width,
        input_shape=(cfg.crop_size, cfg.crop_size, 1),
        num_classes=num_classes,
        dropout=cfg.dropout,
    )
    if cfg.teacher:
        loss = distillation_loss(num_classes, cfg.distill_temperature, cfg.distill_alpha, cfg.label_smoothing)
        metrics = [label_accuracy(num_classes)]
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        metrics = ["accuracy"]
    model.compile(optimizer=make_optimizer(cfg, steps_per_epoch), loss=loss, metrics=metrics)
    return model


def initial_weights_origin(cfg: TrainConfig) -> dict:
    """Check `cfg.init_weights` before any training starts; return what the run's card records.

    The file must exist and, when it has a model card, that card must describe the same
    architecture, width and crop size (the error names the setting that differs).
    """
    from fer_core.card import card_path, load_card

    src = Path(cfg.init_weights)
    if not src.is_file():
        raise ValueError(
            f"init_weights: {src} not found; give a trained network's .keras file (e.g. runs/<run>/model.keras)."
        )
    origin: dict = {"path": str(src)}
    if not card_path(src).exists():
        return origin
    card = load_card(src)
    trained = card.get("training") or {}
    if card.get("members"):
        raise ValueError(
            f"init_weights: {src} is an ensemble of {len(card['members'])} networks; a warm start needs one network "
            "with this run's architecture (e.g. runs/<run>/model.keras). An ensemble can be a teacher instead."
        )
    wanted = {"arch": cfg.arch, "width": cfg.width, "crop_size": cfg.crop_size}
    have = {"arch": trained.get("arch"), "width": trained.get("width"), "crop_size": card["input"]["crop_size"]}
    differ = [f"{k} {have[k]} (this run: {v})" for k, v in wanted.items() if have[k] is not None and have[k] != v]
    if differ:
        raise ValueError(
            f"init_weights: {src} has {', '.join(differ)}; give this run the same architecture, width and crop size."
        )
    metrics = card.get("metrics") or {}
    origin.update(
        name=card.get("name"),
        source_run=card.get("source_run"),
        val_accuracy=metrics.get("val_accuracy"),
        tta=card.get("tta"),
        epochs_finished=(card.get("training_history") or {}).get("epochs_finished"),
    )
    return origin


def check_start_models(cfg: TrainConfig) -> None:
    """Check the model files a new run starts from (warm start, teacher) before it launches: a missing
    or mismatched file is a one-line ValueError. The teacher's labels are matched to the data at start."""
    if cfg.init_weights:
        initial_weights_origin(cfg)
    if cfg.teacher:
        teacher_origin(cfg, ())


def load_initial_weights(model, cfg: TrainConfig) -> dict:
    """Copy the weights of the model file `cfg.init_weights` into `model` (a warm start)."""
    origin = initial_weights_origin(cfg)
    try:
        model.load_weights(cfg.init_weights)
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"init_weights: {cfg.init_weights} does not fit this model ({first}).") from exc
    return origin


# ----------------------------------------------------------------------------- callbacks


def _callbacks_module():
    import keras

    class RunLogger(keras.callbacks.Callback):
        """Writes metrics.jsonl + status.json, checks for a stop request, draws a progress bar."""

        def __init__(self, run_dir: Path, cfg: TrainConfig, steps: int, n_train: int, write: bool):
            super().__init__()
            self.run_dir, self.cfg, self.steps, self.n_train, self.write = run_dir, cfg, steps, n_train, write
            self.stop_file = run_dir / STOP_FILE
            self.bar = None
            self.stopped = False

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = self.t_last = time.time()
            self.epoch = epoch + 1
            if self.write:
                update_status(self.run_dir, epoch=epoch, epochs=self.cfg.epochs)
            try:
                from tqdm import tqdm

                self.bar = tqdm(
                    total=self.steps,
                    desc=f"epoch {self.epoch}/{self.cfg.epochs}",
                    unit="batch",
                    leave=False,
                    disable=None,
                    file=sys.stderr,
                )
            except ImportError:
                self.bar = None

        def on_train_batch_end(self, batch, logs=None):
            if self.bar is not None:
                self.bar.update(1)
            now = time.time()
            if self.stop_file.exists():
                self.stopped = True
                if batch + 1 < self.steps:
                    # Mid-epoch: discard the epoch. Raising skips the end-of-epoch callbacks, so
                    # it is neither recorded as finished nor backed up; a resume redoes all of it.
                    if self.bar is not None:
                        self.bar.close()
                    print(
                        f"stopped in epoch {self.epoch} after {batch + 1} of {self.steps} batches; "
                        "that epoch is discarded and redone on resume",
                        flush=True,
                    )
                    raise StopRequested
                self.model.stop_training = True  # on the last batch: finish the epoch, then stop
            if self.write and (now - self.t_last > 2.0 or batch + 1 == self.steps):
                self.t_last = now
                done = batch + 1
                ips = done * self.cfg.batch_size / max(now - self.t0, 1e-6)
                append_jsonl(
                    self.run_dir / METRICS_FILE,
                    {
                        "type": "progress",
                        "epoch": self.epoch,
                        "step": done,
                        "steps": self.steps,
                        "loss": float(logs.get("loss", float("nan"))) if logs else None,
                        "accuracy": float(logs.get("accuracy", float("nan"))) if logs else None,
                        "images_per_s": round(ips, 1),
                        "epoch_start": self.t0,
                        "time": now,
                    },
                )

        def on_epoch_end(self, epoch, logs=None):
            if self.bar is not None:
                self.bar.close()
            logs = logs or {}
            secs = time.time() - self.t0
            row = {
                "type": "epoch",
                "epoch": epoch + 1,
                "lr": current_lr(self.model.optimizer),
                "seconds": round(secs, 1),
                "images_per_s": round(self.n_train / max(secs, 1e-6), 1),
                "time": time.time(),
            }
            row.update({k: float(v) for k, v in logs.items() if k != "learning_rate"})
            if self.write:
                append_jsonl(self.run_dir / METRICS_FILE, row)
            val = f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}" if "val_loss" in row else ""
            print(
                f"epoch {epoch + 1}/{self.cfg.epochs}  loss {row.get('loss', float('nan')):.4f}  "
                f"acc {row.get('accuracy', float('nan')):.4f}{val}  lr {row['lr']:.5f}  "
                f"{secs:.0f}s  {row['images_per_s']:.0f} img/s",
                flush=True,
            )

    class BestCheckpoint(keras.callbacks.Callback):
        """Saves model.keras + model.json whenever val accuracy improves (persists across resume)."""

        def __init__(self, run_dir: Path, card_fn, write: bool):
            super().__init__()
            self.run_dir, self.card_fn, self.write = run_dir, card_fn, write
            self.best_file = run_dir / BEST_FILE
            self.best = (read_json(self.best_file, {}) or {}).get("val_accuracy", -1.0)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            acc = logs.get("val_accuracy", logs.get("accuracy"))
            if acc is None or not math.isfinite(acc) or acc <= self.best:
                return
            self.best = float(acc)
            if not self.write:
                return
            from fer_core.card import save_card

            tmp = self.run_dir / ".model.tmp.keras"
            try:
                self.model.save(tmp)
                os.replace(tmp, self.run_dir / MODEL_FILE)
            except BaseException:
                tmp.unlink(missing_ok=True)  # e.g. disk full: no litter, the previous best stays
                raise
            save_card(self.run_dir / MODEL_FILE, self.card_fn(epoch + 1, float(acc)))
            write_json_atomic(self.best_file, {"epoch": epoch + 1, "val_accuracy": float(acc)})

    class KeepEpochs(keras.callbacks.Callback):
        """Saves the weights of each of the last `keep` epochs as epochs/epoch_NNN.weights.h5
        (for weight averaging at promote time); files of finished epochs survive a resume."""

        def __init__(self, run_dir: Path, epochs: int, keep: int, write: bool):
            super().__init__()
            self.folder, self.first, self.write = run_dir / EPOCHS_DIR, epochs - keep + 1, write

        def on_epoch_end(self, epoch, logs=None):
            if not self.write or epoch + 1 < self.first:
                return
            self.folder.mkdir(exist_ok=True)
            tmp = self.folder / ".epoch.tmp.weights.h5"
            try:
                self.model.save_weights(tmp)
                os.replace(tmp, self.folder / f"epoch_{epoch + 1:03d}{EPOCH_SUFFIX}")
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

    class NonFiniteGuard(keras.callbacks.Callback):
        """Ends the run as soon as a loss is NaN or infinite. It raises rather than setting
        stop_training, so Keras runs no end-of-epoch callbacks: the diverged weights never
        reach the backup, model.keras or a metrics row (listed first for the same reason)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            self._check(logs, f"epoch {self.epoch}, batch {batch + 1}")

        def on_epoch_end(self, epoch, logs=None):
            self._check(logs, f"the end of epoch {epoch + 1}")

        def _check(self, logs, where: str) -> None:
            for key, value in (logs or {}).items():
                if "loss" in key and not math.isfinite(float(value)):
                    raise TrainingDiverged(
                        f"{key} became {float(value)} at {where}: training diverged; lower the learning rate "
                        "(or check the data). The last finished epoch's backup and best model are kept."
                    )

    return RunLogger, BestCheckpoint, KeepEpochs, NonFiniteGuard


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def atomic_backup_class():
    """A Keras BackupAndRestore that a crash or a full disk during a save cannot spoil.

    Keras writes the backup in place: a save cut short by ENOSPC left a truncated
    latest.weights.h5 that every resume then failed to read ("Can't get deprecated info ...
    addr overflow"), losing all finished epochs. Here each save writes the weights and the
    epoch aside, fsyncs them, and only then renames them in, keeping the previous good pair
    as *.bkp; a restore takes the newest pair that loads. A failed save removes its
    temporary files and leaves the previous backup as it was.
    """
    import keras

    from fer_core.jsonio import fsync_dir, write_json_atomic

    class AtomicBackup(keras.callbacks.BackupAndRestore):
        def _pairs(self) -> list[tuple[Path, Path]]:
            # The fallback pair is ours (Keras' *.bkp names do not end in .weights.h5, which load_weights needs).
            w, m = Path(self._weights_path), Path(self._training_metadata_path)
            return [(w, m), (w.with_name(PREVIOUS_WEIGHTS), m.with_name(PREVIOUS_METADATA))]

        def on_train_begin(self, logs=None):
            errors = []
            for weights, meta in self._pairs():
                if not (weights.is_file() and meta.is_file()):
                    continue
                try:
                    epoch = json.loads(meta.read_text())["epoch"]
                    if self.model.optimizer is not None and not self.model.optimizer.built:
                        self.model.optimizer.build(self.model.trainable_variables)
                    self.model.load_weights(str(weights))
                except Exception as exc:  # noqa: BLE001 - a damaged pair: try the previous one
                    errors.append(f"{weights.name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
                    continue
                self.model._initial_epoch = int(epoch)
                if errors:
                    print(f"backup: {errors[0]}; resumed from the previous backup (epoch {epoch})", flush=True)
                return
            if errors:
                raise RuntimeError(
                    f"the run's backup in {self.backup_dir} cannot be read ({'; '.join(errors)}); start a new run."
                )

        def _save_model(self):
            folder = Path(self.backup_dir)
            folder.mkdir(parents=True, exist_ok=True)
            (weights, meta), (prev_weights, prev_meta) = self._pairs()
            incoming = folder / ".incoming.weights.h5"  # Keras wants the .weights.h5 suffix
            incoming_meta = folder / ".incoming_metadata.json"
            try:
                _check_free_space(folder, weights, self.model)
                self.model.save_weights(str(incoming), overwrite=True)
                _fsync_file(incoming)
                write_json_atomic(incoming_meta, {"epoch": self._current_epoch, "batch": self._last_batch_seen})
            except BaseException:
                incoming.unlink(missing_ok=True)
                incoming_meta.unlink(missing_ok=True)
                raise
            # The new pair is complete on disk: the old one becomes the fallback, the new one current.
            if weights.exists() and meta.exists():
                os.replace(weights, prev_weights)
                os.replace(meta, prev_meta)
            os.replace(incoming, weights)
            os.replace(incoming_meta, meta)
            fsync_dir(folder)

    return AtomicBackup


def _check_free_space(folder: Path, previous: Path, model) -> None:
    """Raise ENOSPC before writing when the backup clearly will not fit: HDF5 hitting a full disk
    mid-write has ended in a segmentation fault instead of an error."""
    try:
        need = previous.stat().st_size
    except OSError:
        need = sum(int(np.prod(v.shape)) * 4 for v in model.weights)
        if model.optimizer is not None:
            need += sum(int(np.prod(v.shape)) * 4 for v in model.optimizer.variables)
    need = int(need * 1.1) + (1 << 20)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device: the backup needs about {need / 1e6:.0f} MB in {folder}, {free / 1e6:.0f} MB free",
        )


# ----------------------------------------------------------------------------- entry point


def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False) -> dict:
    """Train a model as described by `cfg`, writing the run folder. Returns the final status.

    Never raises for a training failure: the error goes to status.json (state "failed")
    and is re-raised only for programming errors in the caller's arguments.
    """
    cfg = cfg.validated()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    is_chief, index = worker_info()
    write = is_chief
    if not is_chief:  # other workers write their (ignored) files apart from the chief's
        run_dir = run_dir / WORKERS_DIR / str(index)
        run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        cfg.save(run_dir / CONFIG_FILE)
        for stale in (METRICS_FILE, BEST_FILE):
            (run_dir / stale).unlink(missing_ok=True)
        shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)
        shutil.rmtree(run_dir / EPOCHS_DIR, ignore_errors=True)
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    started = now_iso()
    update_status(
        run_dir,
        state="running",
        pid=os.getpid(),
        started=started,
        finished=None,
        error=None,
        epochs=cfg.epochs,
        resumed=resume and (run_dir / BACKUP_DIR).exists(),
    )
    try:
        result = _train(cfg, run_dir, write=write)
    except StopRequested:
        return update_status(run_dir, state="stopped", finished=now_iso())
    except KeyboardInterrupt:
        update_status(run_dir, state="stopped", finished=now_iso(), error="interrupted")
        raise
    except Exception as exc:  # noqa: BLE001 - every failure must reach status.json
        msg = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        if "OOM" in msg or isinstance(exc, MemoryError):
            msg += " (out of memory: lower batch_size or width)"
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            msg += " (disk full: free some space, then resume; finished epochs are kept)"
        traceback.print_exc()
        try:
            update_status(run_dir, state="failed", finished=now_iso(), error=msg)
        except OSError as write_exc:  # e.g. still no space: say it where it can be seen
            print(f"error: could not record the failure in status.json ({write_exc}): {msg}", file=sys.stderr)
            return {"state": "failed", "error": msg}
        return read_json(run_dir / STATUS_FILE, {})
    return update_status(run_dir, **result, finished=now_iso())


def _patch_keras_for_multiworker(model) -> None:
    """Let Keras 3 `fit` run under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Two spots in Keras' TF trainer assume a single worker:
    * the symbolic build averages the first batch across replicas with an eager
      `strategy.reduce`, which fails for PerReplica batches ("Attempt to convert a value
      (PerReplica...)"); the build only needs shapes, so the first local replica's batch does;
    * `reduce_per_replica(..., "mean")` reduces scalar logs along axis 0, which a scalar has
      not ("Invalid reduction dimension 0"); scalars are averaged with axis=None instead.
    Both patches apply only to this model / to multi-worker strategies.
    """
    import types

    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def local_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: (
                        self.distribute_strategy.experimental_local_results(v)[0]
                        if isinstance(v, tf.distribute.DistributedValues)
                        else v
                    ),
                    next(it),
                )
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(local_symbolic_build, model)

    original = getattr(tf_trainer.reduce_per_replica, "__wrapped__", tf_trainer.reduce_per_replica)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=0 if v.shape.rank else None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.__wrapped__ = original
    tf_trainer.reduce_per_replica = reduce_per_replica


def _train(cfg: TrainConfig, run_dir: Path, *, write: bool) -> dict:
    import keras
    import tensorflow as tf

    from fer_core.card import card_path, make_card
    from fer_core.data import load_dataset

    # A resumed process seeds its data order and augmentation anew (the restored weights make
    # the initialisation moot); with the config's seed it would replay epoch 1's batches.
    backup = run_dir / BACKUP_DIR
    resume_point = backup_epoch(run_dir)
    seed = stream_seed(cfg.seed, resume_point)
    keras.utils.set_random_seed(seed)
    precision = resolve_precision(cfg.precision)
    keras.mixed_precision.set_global_policy(precision)
    strategy = make_strategy(cfg.strategy)
    runtime = training_runtime()
    print(f"{runtime['backend']} (oneDNN {runtime['onednn']}) on {runtime['cpu']}", flush=True)
    print(
        f"precision {precision}, strategy {type(strategy).__name__} ({strategy.num_replicas_in_sync} replica(s))",
        flush=True,
    )

    ds = load_dataset(cfg.data)
    num_classes = len(ds.class_names)
    teacher, teacher_targets, distilled_from = None, None, None
    if cfg.teacher:
        distilled_from = teacher_origin(cfg, ds.class_names)
        print(
            f"distilling from {cfg.teacher} (T {cfg.distill_temperature}, alpha {cfg.distill_alpha}, "
            f"{cfg.distill_targets} targets)",
            flush=True,
        )
        if cfg.distill_targets == "cached":
            teacher_targets = cached_teacher_targets(cfg, ds, run_dir if write else None)
        else:
            teacher = load_teacher(cfg, ds.class_names)
    train_ds, val_ds, counts = make_datasets(
        ds, cfg, num_classes, shuffle_seed=seed, teacher=teacher, teacher_targets=teacher_targets
    )
    if seed != cfg.seed:
        print(f"resumed after epoch {resume_point}: data order and augmentation seeded {seed}", flush=True)
    steps = math.ceil(counts["train"] / cfg.batch_size)
    print(
        f"data {ds.root} ({ds.format}): train {counts['train']}, val {counts['val']}, test {counts['test']}", flush=True
    )

    with strategy.scope():
        model = build_model(cfg, num_classes, steps)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _patch_keras_for_multiworker(model)
    print(f"model {model.name}: {model.count_params():,} parameters", flush=True)
    init_from = None
    if cfg.init_weights:
        if backup.exists():  # resumed: BackupAndRestore brings back the last finished epoch
            init_from = (read_json(card_path(run_dir / MODEL_FILE), {}) or {}).get("init_from")
        else:
            init_from = load_initial_weights(model, cfg)
            print(f"initial weights from {cfg.init_weights}", flush=True)
    dataset_info = {"root": ds.root, "format": ds.format, "counts": ds.counts(), "skipped": len(ds.skipped)}

    def card_fn(epoch: int, val_acc: float) -> dict:
        card = make_card(
            name=run_dir.name,
            class_names=ds.class_names,
            crop_size=cfg.crop_size,
            tta="none",
            config={**asdict(cfg), "precision_resolved": precision, "runtime": runtime},
            dataset=dataset_info,
            metrics={"best_epoch": epoch, "val_accuracy_centre_crop": val_acc},
            params=model.count_params(),
        )
        if init_from:
            card["init_from"] = init_from
        if distilled_from:
            card["distilled_from"] = distilled_from
        return card

    RunLogger, BestCheckpoint, KeepEpochs, NonFiniteGuard = _callbacks_module()
    AtomicBackup = atomic_backup_class()
    logger = RunLogger(run_dir, cfg, steps, counts["train"], write)
    monitor = "val_accuracy" if val_ds is not None else "accuracy"
    callbacks = [
        NonFiniteGuard(),  # before anything that saves at an epoch's end (it has no on_train_begin)
        # BackupAndRestore next: on resume it sets the initial epoch before others start.
        AtomicBackup(str(backup), save_freq="epoch", delete_checkpoint=False),
        logger,
        BestCheckpoint(run_dir, card_fn, write),
    ]
    if cfg.keep_epochs:
        callbacks.append(KeepEpochs(run_dir, cfg.epochs, cfg.keep_epochs, write))
    if cfg.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=cfg.plateau_patience, min_lr=1e-5)
        )
    if cfg.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=cfg.early_stopping))
    if write:  # TensorBoard event files in the run folder; MLflow too when installed
        from fer_core.tracking import tracking_callbacks

        callbacks += tracking_callbacks(run_dir, asdict(cfg))

    # shuffle=False: the tf.data pipeline shuffles (Keras would only warn that it cannot).
    model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, callbacks=callbacks, verbose=0, shuffle=False)
    if logger.stopped:
        raise StopRequested
    result = {"state": "finished"}
    if write and (run_dir / MODEL_FILE).exists():
        from fer_core.evaluate import evaluate_run

        result["eval"] = evaluate_run(run_dir, ds, tta=cfg.eval_tta)
    return result
