"""Grad-CAM: output shape and range, bf16 models, and that it points at what the model uses."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from fer_core.explain import gradcam, overlay  # noqa: E402
from fer_core.model import create_model  # noqa: E402

CROP = 44


def _faces(n, rng, patch_at=None):
    """Dim noise faces; with patch_at=(y, x), a bright 8x8 square there."""
    faces = rng.integers(0, 90, size=(n, 48, 48)).astype(np.uint8)
    if patch_at is not None:
        y, x = patch_at
        faces[:, y : y + 8, x : x + 8] = 255
    return faces


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    return create_model("resnet10", width=8, input_shape=(CROP, CROP, 1))


@pytest.mark.parametrize("class_index", [None, 0, 6])
def test_gradcam_shape_and_range(tiny_model, class_index):
    face = np.random.default_rng(0).integers(0, 256, (48, 48)).astype(np.uint8)
    hm = gradcam(tiny_model, face, CROP, class_index)
    assert hm.shape == (48, 48)
    assert hm.dtype == np.float32
    assert np.isfinite(hm).all() and hm.min() >= 0.0 and hm.max() <= 1.0
    # Outside the centre crop the model saw nothing: the 2-pixel border is zero.
    assert hm[:2].max() == 0 and hm[:, -2:].max() == 0


def test_gradcam_rejects_bad_input(tiny_model):
    with pytest.raises(ValueError, match="48, 48"):
        gradcam(tiny_model, np.zeros((44, 44), np.uint8), CROP)
    with pytest.raises(ValueError, match="class_index"):
        gradcam(tiny_model, np.zeros((48, 48), np.uint8), CROP, class_index=7)


def test_gradcam_works_on_mixed_bfloat16_model():
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = create_model("resnet10", width=8, input_shape=(CROP, CROP, 1))
    finally:
        keras.config.set_dtype_policy(old)
    assert model.get_layer("conv5_block1_out").compute_dtype == "bfloat16"
    hm = gradcam(model, np.random.default_rng(1).integers(0, 256, (48, 48)).astype(np.uint8), CROP)
    assert hm.dtype == np.float32 and hm.shape == (48, 48)
    assert np.isfinite(hm).all() and hm.min() >= 0.0 and hm.max() <= 1.0


def test_overlay_is_rgb_uint8():
    face = np.full((48, 48), 100, np.uint8)
    hm = np.zeros((48, 48), np.float32)
    hm[10:20, 10:20] = 1.0
    out = overlay(face, hm, alpha=0.5)
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8
    # Where the heat is 1 the jet colour map is dark red, elsewhere dark blue.
    assert out[15, 15, 0] > out[15, 15, 2]
    assert out[40, 40, 2] > out[40, 40, 0]
    assert overlay(face, hm, size=96).shape == (96, 96, 3)
    with pytest.raises(ValueError, match="alpha"):
        overlay(face, hm, alpha=2)


def test_heatmap_peaks_on_the_planted_patch():
    """A model trained to detect a bright patch must look at the patch.

    Class 1 = a bright 8x8 square somewhere in the face, class 0 = noise only. After
    training, the class-1 Grad-CAM of a face with the square at a new spot must peak on
    (or right next to) the square, and far from where the square is not.
    """
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = 192
    spots = [(int(y), int(x)) for y, x in rng.integers(4, 36, size=(n // 2, 2))]
    with_patch = np.concatenate([_faces(1, rng, s) for s in spots])
    faces = np.concatenate([with_patch, _faces(n // 2, rng)])
    labels = np.array([1] * (n // 2) + [0] * (n // 2))
    model = create_model("resnet10", width=4, input_shape=(CROP, CROP, 1), num_classes=2, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = faces[:, 2:46, 2:46, None].astype(np.float32)
    hist = model.fit(x, labels, epochs=3, batch_size=32, verbose=0, shuffle=True)
    assert hist.history["accuracy"][-1] > 0.9, hist.history

    for y, x0 in [(6, 30), (28, 8), (20, 20)]:
        face = _faces(1, np.random.default_rng(y), (y, x0))[0]
        hm = gradcam(model, face, CROP, class_index=1)
        py, px = np.unravel_index(np.argmax(hm), hm.shape)
        cy, cx = y + 3.5, x0 + 3.5
        assert abs(py - cy) <= 8 and abs(px - cx) <= 8, (py, px, y, x0)
        patch_heat = hm[y : y + 8, x0 : x0 + 8].mean()
        assert patch_heat > 2 * hm.mean(), (patch_heat, hm.mean())


def test_gradcam_batch_equals_one_face_at_a_time(tiny_model):
    """The batch is one pass, but each face's map must be its own (no mixing across the batch)."""
    from fer_core.explain import gradcam_batch

    rng = np.random.default_rng(3)
    faces = np.concatenate([_faces(3, rng), _faces(2, rng, patch_at=(10, 30))])
    ks = [0, 3, 6, 1, 2]
    batch = gradcam_batch(tiny_model, faces, CROP, ks)
    assert batch.shape == (5, 48, 48) and batch.dtype == np.float32
    for face, k, hm in zip(faces, ks, batch, strict=True):
        np.testing.assert_allclose(hm, gradcam(tiny_model, face, CROP, k), atol=1e-4)
    predicted = gradcam_batch(tiny_model, faces, CROP)
    for face, hm in zip(faces, predicted, strict=True):
        np.testing.assert_allclose(hm, gradcam(tiny_model, face, CROP), atol=1e-4)
    assert gradcam_batch(tiny_model, faces[:0], CROP).shape == (0, 48, 48)
    with pytest.raises(ValueError, match="one class index per face"):
        gradcam_batch(tiny_model, faces, CROP, [0])


def test_gradcam_batch_on_an_ensemble(tmp_path):
    from fer_core.ensemble import build_ensemble
    from fer_core.explain import gradcam_batch

    keras.utils.set_random_seed(1)
    members = [create_model("resnet10", width=8, input_shape=(CROP, CROP, 1)) for _ in range(2)]
    ens = build_ensemble(members)
    faces = _faces(4, np.random.default_rng(4))
    batch = gradcam_batch(ens, faces, CROP, [1, 2, 3, 4])
    for face, k, hm in zip(faces, [1, 2, 3, 4], batch, strict=True):
        one = np.mean([gradcam(m, face, CROP, k) for m in members], axis=0)
        np.testing.assert_allclose(hm, one / one.max() if one.max() > 0 else one, atol=1e-4)
    assert batch.max() > 0  # not a test of all-zero maps
