"""ResNet models for 48x48 grayscale faces, plus a transfer-learning ResNet50.

Layer names follow Keras' own ``applications/resnet.py`` (``conv3_block2_1_conv``,
``conv5_block2_out``...) so Grad-CAM and debugging find layers by name. Pixel scaling
(0-255 -> 0-1) is the model's first layer, so every caller feeds raw 0-255 values and
there is exactly one place that scales.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
from keras import layers

from fer_core.constants import NUM_CLASSES

# Basic-block counts per stage.
_DEPTHS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class BatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization, with TensorFlow's fused kernel for training steps.

    Keras 3 normalises a training batch with separate mean, variance, scale and shift ops, and
    differentiates each; TensorFlow's FusedBatchNormV3 does the forward pass and its gradient as
    one kernel each. On a 2-core CPU that made a ResNet-18 (width 24) training step 1.29x as
    fast in mixed_bfloat16 (AMX) and 1.20x in float32 with oneDNN's AVX2 kernels
    (docs/benchmarks.md, "Fused batch normalization"). It computes in float32, as Keras does
    (the bfloat16 fused kernel was slower than Keras' ops). Statistics, outputs and gradients
    equal Keras' to float rounding.

    Inference, other backends and settings the kernel lacks (masks, renorm, synchronized
    statistics, an axis other than the last) take Keras' own path. The class keeps Keras' name,
    so weight files interchange with models built from Keras' layer, and `with_keras_layers`
    turns a model back into Keras' own layers before it is saved, so any Keras loads the file.
    """

    def _fusable(self, inputs, training, mask) -> bool:
        return (
            bool(training)
            and self.trainable
            and mask is None
            and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and self.center
            and self.scale
            and not self.renorm
            and not self.synchronized
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, "float32")
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, self.gamma, self.beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
        )
        # The kernel returns the unbiased batch variance; Keras' moving variance tracks the biased one.
        n = tf.cast(tf.size(x) // tf.shape(x)[-1], "float32")
        variance = variance * (n - 1.0) / tf.maximum(n, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(y, self.compute_dtype)


def batchnorm_kernel(model: keras.Model) -> str:
    """ "fused" when `model`'s training steps use `BatchNormalization`'s fused kernel, else "keras"."""
    fused = any(type(layer) is BatchNormalization for layer in model.layers)
    return "fused" if fused and keras.backend.backend() == "tensorflow" else "keras"


def with_keras_layers(model: keras.Model) -> keras.Model:
    """`model` itself, or when it has fused `BatchNormalization` layers, a copy with Keras' own
    layer and the same weights: what training saves, so a model file needs only Keras to load."""
    if not any(type(layer) is BatchNormalization for layer in model.layers):
        return model
    # Rebuilt from the functional config (not keras.models.clone_model, which would also
    # recompile the copy with the training loss, e.g. distillation's closure).
    config = model.get_config()
    for entry in config["layers"]:
        if entry.get("module") == BatchNormalization.__module__ and entry["class_name"] == "BatchNormalization":
            entry.update(module="keras.layers", registered_name=None)
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def basic_block(x, filters: int, stride: int = 1, name: str = "block", norm=layers.BatchNormalization):
    """A ResNet v1 basic block: two 3x3 convs, projection shortcut when the shape changes."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=name + "_0_conv")(x)
        shortcut = norm(name=name + "_0_bn")(shortcut)
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=name + "_1_conv")(x)
    x = norm(name=name + "_1_bn")(x)
    x = layers.Activation("relu", name=name + "_1_relu")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name + "_2_conv")(x)
    x = norm(name=name + "_2_bn")(x)
    x = layers.Add(name=name + "_add")([shortcut, x])
    return layers.Activation("relu", name=name + "_out")(x)


def classifier_head(x, num_classes: int, dropout: float):
    """Global average pooling, dropout, a dense layer and a float32 softmax: the probabilities."""
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    # Softmax in float32 even under mixed precision, for stable losses and probabilities.
    return layers.Activation("softmax", dtype="float32", name="predictions")(x)


def ResNet(
    depth: int = 18,
    width: int = 32,
    input_shape: tuple[int, int, int] = (44, 44, 1),
    num_classes: int = NUM_CLASSES,
    dropout: float = 0.2,
    name: str | None = None,
    fused_batchnorm: bool = False,
) -> keras.Model:
    """A CIFAR-style ResNet (3x3 stride-1 stem, four stages) for small faces.

    Args:
        depth: 10, 18 or 34 (basic blocks per stage 1-1-1-1, 2-2-2-2, 3-4-6-3).
        width: filters of the first stage; stages use width x (1, 2, 4, 8).
        input_shape: (H, W, C) of the raw 0-255 input.
        num_classes: size of the softmax output.
        dropout: dropout rate before the classifier.
        name: model name (default ``resnet{depth}_w{width}``).
        fused_batchnorm: use `BatchNormalization` (TensorFlow's fused kernel in training
            steps, what training builds) instead of Keras' own layer.

    Returns:
        An uncompiled `keras.Model` whose output is float32 softmax probabilities.
    """
    if depth not in _DEPTHS:
        raise ValueError(f"depth must be one of {sorted(_DEPTHS)}. Received: depth={depth}")
    if width < 4:
        raise ValueError(f"width must be at least 4. Received: width={width}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv1_conv")(x)
    norm = BatchNormalization if fused_batchnorm else layers.BatchNormalization
    x = norm(name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    for stage, blocks in enumerate(_DEPTHS[depth]):
        filters = width * 2**stage
        for b in range(blocks):
            stride = 2 if (b == 0 and stage > 0) else 1
            x = basic_block(x, filters, stride, name=f"conv{stage + 2}_block{b + 1}", norm=norm)
    return keras.Model(inputs, classifier_head(x, num_classes, dropout), name=name or f"resnet{depth}_w{width}")


def ResNet50Transfer(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    num_classes: int = NUM_CLASSES,
    weights: str | None = "imagenet",
    dropout: float = 0.2,
    name: str = "resnet50_transfer",
) -> keras.Model:
    """`keras.applications.ResNet50` backbone with a new classifier, for RGB datasets.

    Args:
        input_shape: (H, W, C) of the raw 0-255 input; C=1 inputs are tiled to RGB.
        num_classes: size of the softmax output.
        weights: "imagenet" (Keras downloads them), a path to a local weights file, or None.
        dropout: dropout rate before the classifier.
        name: model name.

    Returns:
        An uncompiled model. Grad-CAM's last conv block is ``conv5_block3_out``.

    Raises:
        ValueError: `weights` is a path that does not exist, or ImageNet weights cannot be
            downloaded (no network); the message says to pass a local file or None.
    """
    if weights not in (None, "imagenet") and not Path(str(weights)).is_file():
        raise ValueError(f"ResNet50 weights file not found. Received: weights={weights}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if input_shape[-1] == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    x = keras.applications.resnet.preprocess_input(x)
    rgb_shape = (*input_shape[:2], 3)
    try:
        backbone = keras.applications.ResNet50(
            include_top=False, weights="imagenet" if weights == "imagenet" else None, input_shape=rgb_shape
        )
    except Exception as exc:  # noqa: BLE001 - Keras raises several types for a failed download
        raise ValueError(
            "Could not download the ImageNet ResNet50 weights "
            f"({type(exc).__name__}); pass a local weights file or weights=None."
        ) from None
    if weights not in (None, "imagenet"):
        backbone.load_weights(str(weights), skip_mismatch=True)
    x = backbone(x)
    return keras.Model(inputs, classifier_head(x, num_classes, dropout), name=name)


# The registry: a name -> builder(input_shape, num_classes, dropout, **kw).
MODELS: dict[str, Callable[..., keras.Model]] = {
    "resnet10": lambda **kw: ResNet(depth=10, **kw),
    "resnet18": lambda **kw: ResNet(depth=18, **kw),
    "resnet34": lambda **kw: ResNet(depth=34, **kw),
    # Keras' own ResNet50 keeps Keras' BatchNormalization.
    "resnet50_transfer": lambda width=None, fused_batchnorm=False, **kw: ResNet50Transfer(**kw),
}


def create_model(name: str, **kwargs) -> keras.Model:
    """Build a registered architecture by name; raises ValueError on an unknown name."""
    if name not in MODELS:
        raise ValueError(f"Unknown architecture. Received: name={name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def all_layers(model):
    """Every layer of `model`, nested models' layers included (ResNet50Transfer's backbone), in order."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def last_conv_layer_name(model: keras.Model) -> str:
    """Name of the last convolutional block's output, the usual Grad-CAM target."""
    for layer in reversed(model.layers):
        if layer.name.endswith("_out") and layer.name.startswith("conv"):
            return layer.name
        if isinstance(layer, keras.Model):  # a nested backbone (ResNet50Transfer)
            return last_conv_layer_name(layer)
    raise ValueError(f"No residual block output found in model {model.name!r}.")
