"""The one preprocessing path from 48x48 gray faces to model input, shared by
evaluation and inference (training uses the same geometry through random crops);
`fer_core.engine.InferenceEngine.predict_proba` runs the model on these views.

Model input is raw 0-255 pixel values, float32, shape (N, crop, crop, 1): the model's
own first layer scales them, so nothing here divides by 255.
"""

from __future__ import annotations

import numpy as np

from fer_core.constants import IMAGE_SIZE, TTA_MODES

# Which views of each mode's layout (see tta_views) make up the cheaper modes: one ten-crop pass
# also gives the centre-crop and flip results, for free.
SUBMODE_VIEWS: dict[str, dict[str, list[int]]] = {
    "none": {"none": [0]},
    "flip": {"none": [0], "flip": [0, 1]},
    "tencrop": {"none": [4], "flip": [4, 9], "tencrop": list(range(10))},
}


def choose_photo_tta(accuracy_by_tta: dict[str, float], n: int) -> str:
    """The cheapest TTA mode whose accuracy is within one standard error of the best mode's.

    Each mode costs its number of views in network passes (1, 2, 10). One standard error of
    an accuracy p on n faces, sqrt(p (1 - p) / n), is what a validation split can tell apart
    (0.76 points at 71% on FER-2013's 3,589 PublicTest faces); paying 10x the time per face
    for a difference smaller than that buys nothing a user could rely on.

    Args:
        accuracy_by_tta: accuracy (0-1) per mode, measured on the same faces.
        n: how many faces those accuracies were measured on.
    """
    if not accuracy_by_tta or n < 1:
        raise ValueError(f"choose_photo_tta needs accuracies measured on some faces. Received: n={n}")
    best = max(accuracy_by_tta.values())
    stderr = (best * (1.0 - best) / n) ** 0.5
    return next(m for m in TTA_MODES if m in accuracy_by_tta and best - accuracy_by_tta[m] <= stderr)


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
