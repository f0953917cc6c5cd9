"""Finishing a trained model before it ships: weight averaging, and BatchNorm statistics recomputed on clean faces.

During training every BatchNorm layer keeps a moving average of the batch statistics of
*augmented* faces: warped with reflected borders, mirrored, and (with random erasing) partly
replaced by noise. At inference the model sees clean centre or corner crops, whose
statistics differ. `recalibrate_batchnorm` replaces each layer's moving mean and variance
with the exact mean and variance, over the whole training split, of that layer's input when
the network is fed the clean crops inference uses. Only training images are used; the weights
themselves do not change.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fer_core.preprocess import tta_views


def batchnorm_layers(model) -> list:
    """Every BatchNormalization layer of `model`, nested models included, in call order."""
    import keras

    from fer_core.model import all_layers

    return [layer for layer in all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate_batchnorm(
    model,
    faces: np.ndarray,
    crop_size: int,
    *,
    tta: str = "none",
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Set every BatchNorm layer's moving statistics to the exact statistics of clean views.

    Args:
        model: a Keras model with BatchNormalization layers (changed in place).
        faces: (N, 48, 48) uint8 training faces.
        crop_size: the model's input side.
        tta: which views to use ("none" = centre crops; "flip"/"tencrop" add the other
            views inference averages over).
        batch_size: faces per forward pass.
        progress: called with (done, total) after each batch.

    Returns:
        The number of BatchNorm layers recalibrated (0: the model has none; nothing changes).

    All layers are measured in one pass of training-mode forward calls, where each layer
    normalises with its batch's own statistics, as during training; so what a layer sees does
    not depend on the moving statistics being replaced. Per layer, the batch means and
    (biased) variances are pooled into the mean and variance of the whole population.
    """
    import tensorflow as tf

    bns = batchnorm_layers(model)
    if not bns:
        return 0
    views = tta_views(faces, crop_size, tta)
    views = views.reshape(-1, *views.shape[2:])
    saved_momentum = [layer.momentum for layer in bns]
    saved_stats = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in bns]
    try:
        # momentum 0: after each training-mode call the moving statistics *are* that batch's.
        for layer in bns:
            layer.momentum = 0.0
        step = tf.function(lambda x: model(x, training=True), reduce_retracing=True)
        n_total = 0
        sums = [np.zeros(layer.moving_mean.shape, np.float64) for layer in bns]
        sq_sums = [np.zeros(layer.moving_mean.shape, np.float64) for layer in bns]
        for start in range(0, len(views), batch_size):
            batch = views[start : start + batch_size]
            step(tf.constant(batch, tf.float32))
            n = len(batch)
            for i, layer in enumerate(bns):
                mean = layer.moving_mean.numpy().astype(np.float64)
                var = layer.moving_variance.numpy().astype(np.float64)
                sums[i] += n * mean
                sq_sums[i] += n * (var + mean**2)
            n_total += n
            if progress is not None:
                progress(min(start + batch_size, len(views)), len(views))
        for i, layer in enumerate(bns):
            mean = sums[i] / n_total
            var = np.maximum(sq_sums[i] / n_total - mean**2, 0.0)
            layer.moving_mean.assign(mean.astype(np.float32))
            layer.moving_variance.assign(var.astype(np.float32))
    except BaseException:
        for layer, (mean, var) in zip(bns, saved_stats, strict=True):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(var)
        raise
    finally:
        for layer, momentum in zip(bns, saved_momentum, strict=True):
            layer.momentum = momentum
    return len(bns)


def average_weights(model, files) -> None:
    """Set `model`'s weights to the mean of the weight files (same architecture), in float64."""
    total = None
    for f in files:
        model.load_weights(f)
        ws = [np.asarray(w, np.float64) for w in model.get_weights()]
        total = ws if total is None else [t + w for t, w in zip(total, ws, strict=True)]
    model.set_weights([(t / len(files)).astype(np.float32) for t in total])
