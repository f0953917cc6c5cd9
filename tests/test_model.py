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


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_batchnorm_matches_keras_in_training_and_inference(policy):
    from fer_core.model import BatchNormalization

    keras.mixed_precision.set_global_policy(policy)
    try:
        rng = np.random.default_rng(0)
        # A small batch and momentum, so that a biased/unbiased variance mix-up shows (100 values a channel).
        x = tf.constant(rng.normal(1.0, 3.0, (4, 5, 5, 6)).astype("float32"))
        ours, theirs = BatchNormalization(momentum=0.5), keras.layers.BatchNormalization(momentum=0.5)
        for layer in (ours, theirs):
            layer.build(x.shape)
        for name in ("gamma", "beta", "moving_mean", "moving_variance"):
            getattr(theirs, name).assign(getattr(ours, name) + rng.random(6).astype("float32"))
            getattr(ours, name).assign(getattr(theirs, name))
        w = tf.constant(rng.normal(0.0, 1.0, x.shape).astype("float32"))  # a loss with non-trivial gradients
        results, dtypes = [], []
        for layer in (ours, theirs):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(tf.cast(y, "float32") * w + tf.cast(y, "float32") ** 3)
            grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
            stats = [layer.moving_mean.numpy(), layer.moving_variance.numpy()]
            dtypes.append(y.dtype)
            results.append([y.numpy().astype("float32"), *[g.numpy() for g in grads], *stats, layer(x).numpy()])
        tol = 1e-4 if policy == "float32" else 2e-2  # bfloat16 keeps 8 bits of mantissa
        for a, b in zip(*results, strict=True):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())
        assert dtypes[0] == dtypes[1] == keras.mixed_precision.global_policy().compute_dtype
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_trained_models_are_saved_with_keras_own_layers(tmp_path):
    from fer_core.model import BatchNormalization, batchnorm_kernel, with_keras_layers

    model = create_model("resnet10", width=8, input_shape=(44, 44, 1), fused_batchnorm=True)
    assert sum(type(layer) is BatchNormalization for layer in model.layers) == 12  # stem, 2 per block, 3 shortcuts
    x = np.random.default_rng(1).integers(0, 256, (4, 44, 44, 1)).astype("float32")
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    model.fit(x, np.eye(7, dtype="float32")[[0, 1, 2, 3]], verbose=0)  # moves the moving statistics
    plain = with_keras_layers(model)
    assert not any(type(layer) is BatchNormalization for layer in plain.layers)
    assert with_keras_layers(plain) is plain
    assert (batchnorm_kernel(model), batchnorm_kernel(plain)) == ("fused", "keras")  # what the card records
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    # Weight files interchange both ways: the layer keeps Keras' class name.
    model.save_weights(tmp_path / "fused.weights.h5")
    other = create_model("resnet10", width=8, input_shape=(44, 44, 1))
    other.load_weights(tmp_path / "fused.weights.h5")
    np.testing.assert_allclose(other.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    plain.save(tmp_path / "m.keras")
    import zipfile

    config = zipfile.ZipFile(tmp_path / "m.keras").read("config.json").decode()
    assert "fer_core" not in config and '"BatchNormalization"' in config
