"""BatchNorm recalibration: the moving statistics become the exact statistics of clean crops."""

from __future__ import annotations

import numpy as np
import pytest

from fer_core.finalize import batchnorm_layers, recalibrate_batchnorm
from fer_core.preprocess import tta_views


@pytest.fixture(scope="module")
def tiny():
    import keras

    from fer_core.model import create_model

    keras.utils.set_random_seed(3)
    return create_model("resnet10", width=16, input_shape=(44, 44, 1), num_classes=7)


def test_first_layer_gets_the_exact_population_statistics(tiny, sample_dataset):
    import keras

    faces = sample_dataset.split("train").images[:300]  # 300: the last batch of 128 is partial
    bn = tiny.get_layer("conv1_bn")
    before = bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()
    n = recalibrate_batchnorm(tiny, faces, 44, batch_size=128)
    assert n == len(batchnorm_layers(tiny)) > 5

    # conv1_bn's input does not depend on any BatchNorm: compute its statistics directly.
    feed = keras.Model(tiny.input, bn.input)
    x = feed.predict(tta_views(faces, 44, "none")[0], verbose=0).astype(np.float64)
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), var, rtol=1e-3, atol=1e-4)
    assert not np.allclose(before[0], bn.moving_mean.numpy())  # an untrained net: mean 0, var 1 before
    assert all(layer.momentum == 0.99 for layer in batchnorm_layers(tiny))  # restored


def test_deeper_layers_move_and_inference_stays_finite(tiny, sample_dataset):
    faces = sample_dataset.split("train").images[:256]
    last = batchnorm_layers(tiny)[-1]
    last.moving_mean.assign(np.full(last.moving_mean.shape, 7.0, np.float32))
    seen = []
    recalibrate_batchnorm(tiny, faces, 44, tta="flip", progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (512, 512)  # 256 faces x 2 views
    assert np.abs(last.moving_mean.numpy() - 7.0).min() > 1.0
    probs = tiny.predict(tta_views(faces[:8], 44, "none")[0], verbose=0)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_a_model_without_batchnorm_is_left_alone(sample_dataset):
    import keras

    model = keras.Sequential([keras.Input((44, 44, 1)), keras.layers.Flatten(), keras.layers.Dense(7)])
    assert recalibrate_batchnorm(model, sample_dataset.split("train").images[:10], 44) == 0
