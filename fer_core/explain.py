"""Grad-CAM (Selvaraju et al., 2017, https://arxiv.org/abs/1610.02391) for the project's Keras models.

The heatmap says which parts of the face raised the score of one class: the gradients of
that class's score with respect to the last convolutional block's output, averaged over
space, weight that output's channels; the weighted sum, through a ReLU, is the map.

The target layer is found by name (`fer_core.model.last_conv_layer_name`), so any model
built by `fer_core.model` works; for an ensemble (`fer_core.ensemble`) the map is the mean
of its members' maps. Mixed-precision (bfloat16) models run their layers in
bfloat16; the weighting, ReLU and normalisation here are done in float32.
"""

from __future__ import annotations

import weakref

import numpy as np

from fer_core.constants import IMAGE_SIZE
from fer_core.engine import engine_for
from fer_core.ensemble import ensemble_members
from fer_core.preprocess import tta_views

# model -> its Grad-CAM model; weak keys so a model dropped from a cache is freed. (Not an
# attribute on the model: Keras would track it as a sub-layer.)
_GRAD_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _grad_model(model):
    """(features, head) for a model: input -> target conv block output, and that output ->
    (pre-softmax scores, probabilities). Cached per model.

    Splitting the model keeps the gradient tape on the few layers after the conv block:
    faster, and it never asks TensorFlow for conv-filter gradients (which crashed oneDNN
    in eager mode here, TensorFlow 2.21).
    """
    import keras

    cached = _GRAD_MODELS.get(model)
    if cached is not None:
        return cached
    from fer_core.model import last_conv_layer_name

    name = last_conv_layer_name(model)
    try:
        target = model.get_layer(name)
    except ValueError:
        raise ValueError(
            f"Grad-CAM needs the conv block {name!r} as a top-level layer of {model.name!r}; "
            "models with a nested backbone (resnet50_transfer) are not supported."
        ) from None
    features = keras.Model(model.inputs, target.output)
    # The layers after the target (pooling, dropout, classifier, softmax) form a chain here.
    inp = keras.Input(shape=tuple(target.output.shape[1:]), dtype=target.output.dtype)
    y, scores = inp, None
    try:
        for layer in model.layers[model.layers.index(target) + 1 :]:
            y = layer(y)
            if layer.name == "logits":  # scores before the softmax: a saturated softmax has vanishing gradients
                scores = y
    except (ValueError, TypeError) as exc:
        raise ValueError(f"Grad-CAM needs a plain chain of layers after {name!r} in {model.name!r} ({exc}).") from None
    head = keras.Model(inp, [y if scores is None else scores, y])
    _GRAD_MODELS[model] = (features, head)
    return features, head


def gradcam(model, face48_uint8: np.ndarray, crop_size: int, class_index: int | None = None) -> np.ndarray:
    """Grad-CAM heatmap of one 48x48 face for one class.

    The model sees the centre crop of side `crop_size` (as `fer_core.preprocess` feeds it);
    the map is resized to that crop and placed back in the 48x48 frame (the border outside
    the crop is 0).

    Args:
        model: a Keras model from `fer_core.model` (raw 0-255 input, softmax output).
        face48_uint8: (48, 48) uint8 gray face.
        crop_size: the model card's ``input.crop_size``.
        class_index: the class to explain; None explains the predicted class.

    Returns:
        float32 (48, 48) heatmap in [0, 1] (all zeros when no region raises the score).

    Raises:
        ValueError: a face of the wrong shape, a class index out of range, or a model
            without a findable conv block.
    """
    face = np.asarray(face48_uint8)
    if face.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"gradcam expects one ({IMAGE_SIZE}, {IMAGE_SIZE}) face. Received: shape={face.shape}")
    return gradcam_batch(model, face[None], crop_size, None if class_index is None else [class_index])[0]


def gradcam_batch(model, faces48_uint8: np.ndarray, crop_size: int, class_indices=None) -> np.ndarray:
    """Grad-CAM heatmaps of many faces in one pass through the model (what `gradcam` does for one).

    One forward and one backward pass for the whole batch: in inference mode the faces do not
    interact, so each face's gradient is its own. Thirty faces cost about what two did one by one.

    Args:
        model: a Keras model from `fer_core.model`, or an ensemble (`fer_core.ensemble`).
        faces48_uint8: (N, 48, 48) uint8 gray faces.
        crop_size: the model card's ``input.crop_size``.
        class_indices: the class to explain per face (N ints); None explains each face's predicted class.

    Returns:
        float32 (N, 48, 48) heatmaps, each in [0, 1].

    Raises:
        ValueError: faces of the wrong shape, a class index out of range, a count that does not
            match, or a model without a findable conv block.
    """
    import tensorflow as tf

    faces = np.asarray(faces48_uint8)
    if faces.ndim != 3 or faces.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"gradcam_batch expects (N, {IMAGE_SIZE}, {IMAGE_SIZE}) faces. Received: shape={faces.shape}")
    n = len(faces)
    if class_indices is not None and len(class_indices) != n:
        raise ValueError(f"one class index per face. Received: {len(class_indices)} for {n} faces")
    if n == 0:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    members = ensemble_members(model)
    if members:  # an ensemble: the mean of its members' maps for the ensemble's class
        if class_indices is None:
            class_indices = np.argmax(engine_for(model).predict_proba(faces), axis=1)
        cams = np.mean([gradcam_batch(m, faces, crop_size, class_indices) for m in members], axis=0)
        top = cams.max(axis=(1, 2), keepdims=True)
        return np.where(top > 0, cams / np.where(top > 0, top, 1), cams).astype(np.float32)
    x = tf.convert_to_tensor(tta_views(faces, crop_size, "none")[0])
    features, head = _grad_model(model)
    conv = features(x, training=False)
    with tf.GradientTape() as tape:
        tape.watch(conv)
        scores, probs = head(conv, training=False)
        ks = np.argmax(np.asarray(probs), axis=1) if class_indices is None else np.asarray(class_indices, int)
        bad = [int(k) for k in ks if not 0 <= k < scores.shape[-1]]
        if bad:
            raise ValueError(f"class_index must be in [0, {scores.shape[-1]}). Received: class_index={bad[0]}")
        score = tf.reduce_sum(tf.cast(tf.gather(scores, ks, axis=1, batch_dims=1), tf.float32))
    grads = tf.cast(tape.gradient(score, conv), tf.float32).numpy()
    conv = tf.cast(conv, tf.float32).numpy()
    weights = grads.mean(axis=(1, 2), keepdims=True)  # one weight per face and channel
    cams = np.maximum((conv * weights).sum(axis=-1), 0.0)
    top = cams.max(axis=(1, 2), keepdims=True)
    cams = np.where(top > 0, cams / np.where(top > 0, top, 1), 0.0).astype(np.float32)
    return np.stack([_to_face_frame(c, crop_size) for c in cams])


def _to_face_frame(cam: np.ndarray, crop_size: int) -> np.ndarray:
    """Resize a low-resolution map to the crop and place it at the crop's spot in 48x48."""
    import cv2

    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    o = (IMAGE_SIZE - crop_size) // 2
    out[o : o + crop_size, o : o + crop_size] = cv2.resize(cam, (crop_size, crop_size), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0)


def overlay(face: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, size: int | None = None) -> np.ndarray:
    """The face in gray with the heatmap laid over it in a jet colour map.

    Args:
        face: (H, W) uint8 gray face (or (H, W, 3) RGB).
        heatmap: (h, w) float in [0, 1]; resized to the face.
        alpha: heatmap opacity, 0-1.
        size: optional output side in pixels (nearest-neighbour upscale, for display).

    Returns:
        (H, W, 3) uint8 RGB image (or size x size).
    """
    import cv2

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha}")
    face = np.asarray(face, np.uint8)
    rgb = np.repeat(face[..., None], 3, axis=-1) if face.ndim == 2 else face
    h, w = rgb.shape[:2]
    hm = np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0)
    if hm.shape != (h, w):
        hm = cv2.resize(hm, (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap((hm * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    out = (rgb.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha).round().astype(np.uint8)
    if size:
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_NEAREST)
    return out
