"""The tf.data pipeline a run trains on: which faces, their targets and loss weights, batching.

`make_datasets` turns a FaceDataset into the (train, val) tf.data datasets `model.fit`
reads: the train split shuffled, batched, augmented on the graph (`fer_core.augment`) and
prefetched; val as centre crops. TensorFlow is imported when it is called.
"""

from __future__ import annotations

import numpy as np

from fer_core.augment import augment_batch, mixup
from fer_core.config import TrainConfig
from fer_core.constants import IMAGE_SIZE


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
    in the dataset's class order (see `fer_core.distill.load_teacher`). It runs on each batch
    after augmentation, on exactly the views the student sees, and the targets become [one-hot |
    teacher probabilities] (B, 2 x classes); validation targets repeat the one-hot labels in both
    halves.
    teacher_targets: instead of `teacher`, fixed teacher probabilities (N, classes), one row per
    image of `training_arrays` (see `fer_core.distill.cached_teacher_targets`); same target layout.
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
