"""The one preprocessing path from 48x48 gray faces to model input, shared by
evaluation and inference (training uses the same geometry through random crops);
`fer_core.engine.InferenceEngine.predict_proba` runs the model on these views.

Model input is raw 0-255 pixel values, float32, shape (N, crop, crop, 1): the model's
own first layer scales them, so nothing here divides by 255.
"""

from __future__ import annotations

import numpy as np

from fer_core.constants import IMAGE_SIZE

TTA_MODES = ("none", "flip", "tencrop")


def tta_views(faces: np.ndarray, crop_size: int, tta: str = "none") -> np.ndarray:
    """Turn (N, 48, 48) uint8 faces into model-ready views.

    Args:
        faces: (N, 48, 48) uint8 gray faces.
        crop_size: the model's input side (<= 48); crops are taken from the 48x48 face.
        tta: "none" (centre crop), "flip" (centre + mirrored), or "tencrop"
            (four corners + centre, each also mirrored).

    Returns:
        float32 array (V, N, crop, crop, 1), V = 1, 2 or 10. Average the model's
        probabilities over the first axis.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}. Received: tta={tta!r}")
    faces = np.asarray(faces)
    if faces.ndim == 2:
        faces = faces[None]
    if faces.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"Expected faces of shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}). Received: {faces.shape}")
    c, s = crop_size, IMAGE_SIZE
    o = (s - c) // 2
    centre = faces[:, o : o + c, o : o + c]
    if tta == "none":
        views = [centre]
    elif tta == "flip":
        views = [centre, centre[:, :, ::-1]]
    else:
        corners = [(0, 0), (0, s - c), (s - c, 0), (s - c, s - c), (o, o)]
        crops = [faces[:, y : y + c, x : x + c] for y, x in corners]
        views = crops + [v[:, :, ::-1] for v in crops]
    return np.stack(views).astype(np.float32)[..., None]
