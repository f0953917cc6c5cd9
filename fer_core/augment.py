"""On-graph augmentation of training batches, and the seed of a run's random stream.

Every function works on a whole batch of raw 0-255 float32 faces (B, H, W, 1) inside the
tf.data pipeline (`fer_core.pipeline`); TensorFlow is imported when one is called.
"""

from __future__ import annotations

import math

import numpy as np

from fer_core.config import TrainConfig
from fer_core.constants import IMAGE_SIZE


def augment_batch(images, cfg: TrainConfig):
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
