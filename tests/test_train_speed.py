"""benchmarks/train_speed.py's profile helpers: the FLOP count it prints and the copy of the
model without batch normalization and ReLU that it times."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from benchmarks.train_speed import _convolutions_only, training_flops  # noqa: E402
from fer_core.model import create_model  # noqa: E402


def test_training_flops_counts_conv_and_dense_multiply_adds():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8*4 outputs, 3*3*1 each
    x = keras.layers.Conv2D(2, 1, strides=2)(x)  # 4*4*2 outputs, 1*1*4 each
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(7)(x)  # 32*7
    macs = 8 * 8 * 4 * 9 + 4 * 4 * 2 * 4 + 32 * 7
    assert training_flops(keras.Model(inputs, outputs)) == 6 * macs


def test_convolutions_only_drops_batch_norm_and_relu_but_keeps_the_convolutions():
    model = create_model("resnet10", width=8, input_shape=(44, 44, 1))
    kinds = [type(layer).__name__ for layer in model.layers]
    relus = [layer for layer in model.layers if getattr(layer, "activation", None) is keras.activations.relu]
    assert "BatchNormalization" in kinds and relus

    convs = _convolutions_only(model)
    kinds_after = [type(layer).__name__ for layer in convs.layers]
    assert "BatchNormalization" not in kinds_after
    assert not [layer for layer in convs.layers if getattr(layer, "activation", None) is keras.activations.relu]
    assert kinds_after.count("Conv2D") == kinds.count("Conv2D")
    assert training_flops(convs) == training_flops(model)

    x = np.random.default_rng(0).uniform(0, 255, (2, 44, 44, 1)).astype("float32")
    assert tuple(convs(x, training=True).shape) == (2, 7)


def test_convolutions_only_keeps_a_convolution_with_its_own_relu():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Activation("relu")(x)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    kinds = [type(layer).__name__ for layer in _convolutions_only(keras.Model(inputs, outputs)).layers]
    assert kinds == ["InputLayer", "Conv2D", "Identity", "Flatten", "Dense"]
