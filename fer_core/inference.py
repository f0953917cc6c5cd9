"""From a photo or a video frame to per-face emotions: detect, crop, preprocess, classify.

The recogniser reads everything from the model card (labels, crop size, face margin,
test-time augmentation) and classifies through `fer_core.engine`, the same engine and
preprocessing evaluation uses. All faces of a frame are classified in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fer_core.card import DEFAULT_FACE_MARGIN, CardError, check_model_against_card, load_card
from fer_core.constants import ALIGN_FACES, DEFAULT_MODEL_NAME, IMAGE_SIZE
from fer_core.engine import InferenceEngine, engine_for, load_engine
from fer_core.faces import create_detector, iou
from fer_core.images import decode_image, resize_face, to_gray
from fer_core.preprocess import TTA_MODES

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_PATH = REPO / "models" / f"{DEFAULT_MODEL_NAME}.keras"


@dataclass(frozen=True)
class Face:
    """One face in a picture: where it is and what the model thinks it shows."""

    box: tuple[int, int, int, int]  # x, y, w, h in original image pixels
    emotion: str
    scores: dict[str, float]  # every label of the card, summing to ~1
    # {"right_eye": (x, y), ...} in original pixels (the subject's right/left); empty when the detector gives none
    landmarks: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """``{"box": [x, y, w, h], "emotion": name, "scores": {name: p}, "landmarks": {name: [x, y]}}``, plain types."""
        return {
            "box": [int(v) for v in self.box],
            "emotion": self.emotion,
            "scores": {k: round(float(v), 5) for k, v in self.scores.items()},
            "landmarks": {k: [round(float(v[0]), 1), round(float(v[1]), 1)] for k, v in self.landmarks.items()},
        }


def eye_angle(landmarks: dict | None) -> float:
    """Degrees the line from the right to the left eye is turned from level (0 without eye landmarks)."""
    if not landmarks or "right_eye" not in landmarks or "left_eye" not in landmarks:
        return 0.0
    (rx, ry), (lx, ly) = landmarks["right_eye"], landmarks["left_eye"]
    angle = float(np.degrees(np.arctan2(ly - ry, lx - rx)))
    # A mirrored picture swaps which eye is on the left; either way the face is within 90 degrees of level.
    return (angle + 90.0) % 180.0 - 90.0


def crop_face(
    gray: np.ndarray, box: tuple[int, int, int, int], margin: float, size: int = IMAGE_SIZE, angle: float = 0.0
) -> np.ndarray:
    """Square crop around `box` grown by `margin` (fraction of the box) per side, resized to size x size.

    Parts of the grown box outside the picture are filled by repeating the edge pixels,
    so a face at the border stays centred instead of being squeezed. A non-zero `angle`
    (degrees, `eye_angle`) rotates the picture about the box centre first, so the eyes
    end up level, as in FER-2013's roughly upright faces.
    """
    x, y, w, h = box
    if angle:
        import cv2

        side = max(w, h) * (1.0 + 2.0 * margin)
        n = max(1, round(side))
        m = cv2.getRotationMatrix2D((x + w / 2.0, y + h / 2.0), angle, 1.0)
        m[:, 2] += n / 2.0 - np.array([x + w / 2.0, y + h / 2.0])
        crop = cv2.warpAffine(gray, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return resize_face(crop, size)
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = round(cx - side / 2.0), round(cy - side / 2.0)
    x1, y1 = x0 + max(1, round(side)), y0 + max(1, round(side))
    H, W = gray.shape[:2]
    crop = gray[max(0, y0) : min(H, y1), max(0, x0) : min(W, x1)]
    if crop.size == 0:
        raise ValueError(f"Face box {box} lies outside the {W}x{H} picture.")
    pad = ((max(0, -y0), max(0, y1 - H)), (max(0, -x0), max(0, x1 - W)))
    if any(p for pair in pad for p in pair):
        crop = np.pad(crop, pad, mode="edge")
    return resize_face(crop, size)


class Recognizer:
    """Detect faces and classify their emotions with a model and its card.

    Args:
        model_path: a ``.keras`` file with its card JSON beside it; None -> the shipped
            ``models/fer_resnet.keras``.
        tta: test-time augmentation ("none", "flip", "tencrop"); None -> the card's
            ``photo_tta`` (the cheapest mode about as accurate as the best on PublicTest, see
            `fer_core.preprocess.choose_photo_tta`), else its ``tta``. "none" costs one network
            pass per face, "tencrop" ten; "none" is right for live video.
        detector: a face detector (default: `fer_core.faces.create_detector()`, photo preset).
        model: an already loaded Keras model for `model_path` (the dashboard's cache), or
            its `InferenceEngine`; the card is still read from beside `model_path`.
        align: rotate each face so its eyes are level before cropping (needs a detector
            with eye landmarks); None -> `fer_core.constants.ALIGN_FACES`.

    Raises:
        CardError: no model file, no card, or a card this code cannot use.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        tta: str | None = None,
        detector=None,
        model=None,
        align: bool | None = None,
    ) -> None:
        path = Path(model_path) if model_path is not None else DEFAULT_MODEL_PATH
        if model is None and not path.is_file():
            raise CardError(
                f"{path}: no model file there; train one (python -m fer_core train) or pass another model path."
            )
        self.model_path = path
        self.card: dict = load_card(path)
        self.labels: tuple[str, ...] = tuple(self.card["labels"])
        inp = self.card["input"]
        if int(inp["image_size"]) != IMAGE_SIZE or int(inp.get("channels", 1)) != 1:
            raise CardError(
                f"{path}: this recogniser feeds {IMAGE_SIZE}x{IMAGE_SIZE} gray faces; the card asks for "
                f"{inp['image_size']}px with {inp.get('channels', 1)} channels."
            )
        self.crop_size = int(inp["crop_size"])
        self.margin = float(self.card.get("face_margin", DEFAULT_FACE_MARGIN))
        self.tta = tta if tta is not None else str(self.card.get("photo_tta") or self.card.get("tta") or "none")
        if self.tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}. Received: tta={self.tta!r}")
        if isinstance(model, InferenceEngine):
            engine = model
        elif model is not None:
            engine = engine_for(model, path)
        else:
            engine = load_engine(path)
        model = engine.model
        check_model_against_card(model, self.card, path)
        self.model = model
        self.engine = engine
        self.detector = detector if detector is not None else create_detector()
        self.align = ALIGN_FACES if align is None else bool(align)

    def __repr__(self) -> str:
        return f"Recognizer({str(self.model_path)!r}, tta={self.tta!r}, labels={len(self.labels)})"

    def with_detector(self, detector) -> Recognizer:
        """A recogniser sharing this one's model but using another detector (cheap; no reload)."""
        other = object.__new__(Recognizer)
        other.__dict__.update(self.__dict__)
        other.detector = detector
        return other

    def warmup(self) -> Recognizer:
        """Build the engine's runtime once (seconds) so the first real frame is not the slow one."""
        self.classify(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), np.uint8))
        return self

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities (N, len(labels)) for (N, 48, 48) uint8 gray faces, in one batch."""
        return self.engine.predict_proba(faces, self.tta)

    def crops(self, rgb: np.ndarray, faces: list[Face]) -> np.ndarray:
        """The (N, 48, 48) uint8 gray crops the model saw for `faces` (for Grad-CAM and galleries)."""
        gray = to_gray(rgb)
        if not faces:
            return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        return np.stack([self._crop(gray, f.box, f.landmarks) for f in faces])

    def faces_from_boxes(
        self, gray: np.ndarray, boxes: list[tuple[int, int, int, int]], landmarks: list[dict] | None = None
    ) -> list[Face]:
        """Classify given boxes of a gray picture (crop with the card's margin, one batch).

        `landmarks` (one dict per box) travel into the faces and, with `align`, level the eyes.
        """
        if not boxes:
            return []
        marks = landmarks if landmarks is not None else [{}] * len(boxes)
        crops = np.stack([self._crop(gray, b, m) for b, m in zip(boxes, marks, strict=True)])
        probs = self.classify(crops)
        return [self._face(b, p, m) for b, p, m in zip(boxes, probs, marks, strict=True)]

    def predict_image(self, rgb: np.ndarray) -> list[Face]:
        """Every face found in an RGB uint8 (H, W, 3) picture, left to right."""
        dets = self.detector.detect(rgb)  # colour: BlazeFace was trained on it
        return self.faces_from_boxes(to_gray(rgb), [d.box for d in dets], [d.landmarks or {} for d in dets])

    def _crop(self, gray: np.ndarray, box, landmarks: dict | None) -> np.ndarray:
        return crop_face(gray, box, self.margin, angle=eye_angle(landmarks) if self.align else 0.0)

    def predict_crop(self, rgb: np.ndarray) -> Face:
        """Treat the whole picture as one face (FER-2013-style crops, where detectors find nothing)."""
        gray = to_gray(rgb)
        face = resize_face(gray)
        probs = self.classify(face[None])[0]
        return self._face((0, 0, gray.shape[1], gray.shape[0]), probs)

    def predict_file(self, source: str | Path | bytes, name: str | None = None) -> dict:
        """Decode a picture (path or bytes) and find its faces.

        Args:
            source: a file path or the file's bytes.
            name: what to call it in the result (default: the path, or "upload").

        Returns:
            ``{"image": name_or_path, "faces": [Face.to_json(), ...]}``.

        Raises:
            ImageError: the file is not a usable picture (the message says why).
        """
        label = name if name is not None else ("upload" if isinstance(source, bytes | bytearray) else str(source))
        rgb = decode_image(source, name=label)
        return {"image": label, "faces": [f.to_json() for f in self.predict_image(rgb)]}

    def _face(self, box, probs: np.ndarray, landmarks: dict | None = None) -> Face:
        scores = {name: float(p) for name, p in zip(self.labels, probs, strict=True)}
        return Face(tuple(int(v) for v in box), self.labels[int(np.argmax(probs))], scores, dict(landmarks or {}))


class EmotionSmoother:
    """Temporal smoothing for streams: an exponential moving average of scores per tracked face.

    Faces are matched to the previous frame's tracks by box overlap (greedy, highest IoU
    first); a track unseen for `max_missed` frames is dropped. Not thread-safe: use one per
    stream, from the thread that produces the frames.

    Args:
        alpha: weight of the newest frame (1 = no smoothing; 0.3 settles in ~6 frames).
        min_iou: boxes overlapping less than this start a new track.
        max_missed: frames a track survives without a matching face.
    """

    def __init__(self, alpha: float = 0.3, min_iou: float = 0.3, max_missed: int = 5) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1]. Received: alpha={alpha}")
        self.alpha, self.min_iou, self.max_missed = float(alpha), float(min_iou), int(max_missed)
        self._tracks: dict[int, dict] = {}  # id -> {"box", "scores": ndarray, "missed"}
        self._next_id = 0

    @property
    def n_tracks(self) -> int:
        return len(self._tracks)

    def update(self, faces: list[Face]) -> list[Face]:
        """Smoothed copies of this frame's faces (same boxes, averaged scores and top emotion)."""
        pairs = sorted(
            ((iou(f.box, t["box"]), i, tid) for i, f in enumerate(faces) for tid, t in self._tracks.items()),
            reverse=True,
        )
        matched: dict[int, int] = {}
        used: set[int] = set()
        for overlap, i, tid in pairs:
            if overlap < self.min_iou:
                break
            if i not in matched and tid not in used:
                matched[i] = tid
                used.add(tid)
        out = []
        for i, f in enumerate(faces):
            names = list(f.scores)
            new = np.array([f.scores[n] for n in names], dtype=np.float64)
            if i in matched:
                tid = matched[i]
                t = self._tracks[tid]
                t["scores"] = self.alpha * new + (1 - self.alpha) * t["scores"]
            else:
                tid = self._next_id
                self._next_id += 1
                self._tracks[tid] = t = {"scores": new}
                used.add(tid)
            t["box"], t["missed"] = f.box, 0
            scores = {n: float(p) for n, p in zip(names, t["scores"], strict=True)}
            out.append(replace(f, emotion=max(scores, key=scores.get), scores=scores))
        for tid in list(self._tracks):
            if tid not in used:
                self._tracks[tid]["missed"] += 1
                if self._tracks[tid]["missed"] > self.max_missed:
                    del self._tracks[tid]
        return out
