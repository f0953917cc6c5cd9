"""Model builders: output shapes, one gradient step, layer names, the registry and config."""

from __future__ import annotations

import numpy as np
import pytest

from fer_core.config import TrainConfig

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from fer_core.model import MODELS, ResNet50Transfer, create_model, last_conv_layer_name  # noqa: E402

CASES = [
    ("resnet10", dict(width=16, input_shape=(48, 48, 1)), (None, 7), "conv5_block1_out"),
    ("resnet18", dict(width=16, input_shape=(44, 44, 1)), (None, 7), "conv5_block2_out"),
    ("resnet34", dict(width=16, input_shape=(44, 44, 1), num_classes=6), (None, 6), "conv5_block3_out"),
    ("resnet50_transfer", dict(weights=None, input_shape=(64, 64, 3)), (None, 7), "conv5_block3_out"),
]


@pytest.mark.parametrize("name,kwargs,shape,last", CASES, ids=[c[0] for c in CASES])
def test_shape_gradient_and_names(name, kwargs, shape, last):
    model = create_model(name, **kwargs)
    assert model.output_shape == shape
    assert last_conv_layer_name(model) == last
    h, w, c = kwargs["input_shape"]
    x = np.random.default_rng(0).uniform(0, 255, (4, h, w, c)).astype("float32")
    y = tf.one_hot([0, 1, 2, 3], shape[1])

    # Graph mode, as training runs: eager Conv2D filter gradients abort the process in
    # TensorFlow 2.21's CPU build ("malloc(): unaligned tcache chunk detected").
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            loss = keras.losses.categorical_crossentropy(y, p)
        return p, tape.gradient(loss, model.trainable_variables)

    p, grads = step(x)
    assert all(g is not None for g in grads)
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0
    np.testing.assert_allclose(p.numpy().sum(axis=1), 1.0, rtol=1e-4)


def test_one_sgd_step_lowers_loss_on_a_fixed_batch():
    model = create_model("resnet10", width=16, input_shape=(44, 44, 1))
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "categorical_crossentropy")
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (16, 44, 44, 1)).astype("float32")
    y = np.eye(7)[rng.integers(0, 7, 16)]
    before = model.evaluate(x, y, verbose=0)
    for _ in range(10):
        model.train_on_batch(x, y)
    assert model.evaluate(x, y, verbose=0) < before


def test_registry_and_bad_arguments():
    from fer_core.config import ARCHITECTURES

    assert set(MODELS) == set(ARCHITECTURES)
    with pytest.raises(ValueError, match="Unknown architecture. Received: name='vgg'"):
        create_model("vgg")
    with pytest.raises(ValueError, match="depth must be one of"):
        from fer_core.model import ResNet

        ResNet(depth=50)
    with pytest.raises(ValueError, match="weights file not found"):
        ResNet50Transfer(weights="/nonexistent/weights.h5")


def test_resnet50_gray_input_and_local_weights(tmp_path):
    m = ResNet50Transfer(weights=None, input_shape=(64, 64, 1), num_classes=6)
    assert m.output_shape == (None, 6)
    backbone = next(layer for layer in m.layers if isinstance(layer, keras.Model))
    path = tmp_path / "resnet50.weights.h5"
    backbone.save_weights(path)
    m2 = ResNet50Transfer(weights=str(path), input_shape=(64, 64, 3))
    b2 = next(layer for layer in m2.layers if isinstance(layer, keras.Model))
    np.testing.assert_array_equal(backbone.weights[0].numpy(), b2.weights[0].numpy())


def test_config_round_trip(tmp_path):
    cfg = TrainConfig(data="x", width=16, epochs=3, optimizer="adamw", erasing=0.3)
    cfg.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == cfg
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="rmsprop").validated()
    with pytest.raises(ValueError, match=r"Unknown config key\(s\): colour"):
        TrainConfig.from_dict({"colour": 1})
