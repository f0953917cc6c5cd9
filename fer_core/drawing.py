"""Drawing recognition results on pictures: boxes, "emotion NN%" labels, landmarks.

Works on anything with ``box``, ``emotion``, ``scores`` and ``landmarks`` (a
`fer_core.inference.Face`), so it needs no model.
"""

from __future__ import annotations

import numpy as np

# Box and label colours (RGB) per FER-2013 emotion; other label sets cycle through them.
EMOTION_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (220, 40, 40),
    "disgust": (120, 160, 30),
    "fear": (150, 70, 200),
    "happy": (250, 190, 0),
    "sad": (40, 110, 230),
    "surprise": (250, 120, 0),
    "neutral": (150, 150, 150),
}
_PALETTE = list(EMOTION_COLORS.values())


def color_for(label: str, labels: tuple[str, ...] = ()) -> tuple[int, int, int]:
    """The drawing colour of a label (stable per FER-2013 name, by position otherwise)."""
    if label in EMOTION_COLORS:
        return EMOTION_COLORS[label]
    i = labels.index(label) if label in labels else abs(hash(label))
    return _PALETTE[i % len(_PALETTE)]


def annotate(
    rgb: np.ndarray, faces: list, labels: tuple[str, ...] = (), *, copy: bool = True, landmarks: bool = False
) -> np.ndarray:
    """Draw each face's box and "emotion NN%" label (and, with `landmarks`, its points) on an RGB uint8 picture.

    Line width and text size follow the picture's size so labels stay readable on a
    4000-pixel photo and a 640x480 frame alike.
    """
    import cv2

    out = rgb.copy() if copy else rgb
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 240))
    font = max(0.4, min(h, w) / 900)
    for f in faces:
        x, y, bw, bh = f.box
        color = color_for(f.emotion, labels)
        cv2.rectangle(out, (x, y), (x + bw, y + bh), color, thick)
        text = f"{f.emotion} {100 * f.scores.get(f.emotion, 0.0):.0f}%"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        ty = y - 4 if y - th - base - 4 >= 0 else min(h - 1, y + bh + th + 4)
        cv2.rectangle(out, (x, ty - th - base), (x + tw + 4, ty + base), color, -1)
        cv2.putText(out, text, (x + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick, cv2.LINE_AA)
        if landmarks:
            for px, py in f.landmarks.values():
                cv2.circle(out, (round(px), round(py)), thick + 2, color, -1, cv2.LINE_AA)
                cv2.circle(out, (round(px), round(py)), thick + 2, (0, 0, 0), 1, cv2.LINE_AA)
    return out
