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


def basic_block(x, filters: int, stride: int = 1, name: str = "block"):
    """A ResNet v1 basic block: two 3x3 convs, projection shortcut when the shape changes."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=name + "_0_conv")(x)
        shortcut = layers.BatchNormalization(name=name + "_0_bn")(shortcut)
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=name + "_1_conv")(x)
    x = layers.BatchNormalization(name=name + "_1_bn")(x)
    x = layers.Activation("relu", name=name + "_1_relu")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name + "_2_conv")(x)
    x = layers.BatchNormalization(name=name + "_2_bn")(x)
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
) -> keras.Model:
    """A CIFAR-style ResNet (3x3 stride-1 stem, four stages) for small faces.

    Args:
        depth: 10, 18 or 34 (basic blocks per stage 1-1-1-1, 2-2-2-2, 3-4-6-3).
        width: filters of the first stage; stages use width x (1, 2, 4, 8).
        input_shape: (H, W, C) of the raw 0-255 input.
        num_classes: size of the softmax output.
        dropout: dropout rate before the classifier.
        name: model name (default ``resnet{depth}_w{width}``).

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
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    for stage, blocks in enumerate(_DEPTHS[depth]):
        filters = width * 2**stage
        for b in range(blocks):
            stride = 2 if (b == 0 and stage > 0) else 1
            x = basic_block(x, filters, stride, name=f"conv{stage + 2}_block{b + 1}")
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
    "resnet50_transfer": lambda width=None, **kw: ResNet50Transfer(**kw),
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
