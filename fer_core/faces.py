"""Offline face detection: OpenCV's Haar cascade, shipped inside the opencv-python-headless 4.x wheel.

Nothing is downloaded at run time. The detector works on a downscaled, histogram-equalised
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

import numpy as np

from fer_core.images import to_gray

CASCADES = ("alt2", "alt", "default")


@dataclass(frozen=True)
class Detection:
    """One detected face: box (x, y, w, h) in original image pixels and its neighbour count."""

    box: tuple[int, int, int, int]
    score: int  # raw detections merged into this box: higher is more certain


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


def _overlap_of_smaller(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = min(a[2] * a[3], b[2] * b[3])
    return (ix * iy) / smaller if smaller > 0 else 0.0


class FaceDetector:
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

    def __repr__(self) -> str:
        return (
            f"FaceDetector(max_side={self.max_side}, min_face={self.min_face}, min_neighbors={self.min_neighbors}, "
            f"scale_factor={self.scale_factor}, overlap={self.overlap}, cascade={self.cascade!r})"
        )

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


def _to_original(box, scale: float, w: int, h: int) -> tuple[int, int, int, int]:
    """A box found on the downscaled picture, in the original picture's pixels (clipped)."""
    x, y, bw, bh = (float(v) / scale for v in box)
    x0, y0 = max(0, round(x)), max(0, round(y))
    x1, y1 = min(w, round(x + bw)), min(h, round(y + bh))
    return (x0, y0, x1 - x0, y1 - y0)


def webcam_detector(min_face: float = 0.1, min_neighbors: int = 3) -> FaceDetector:
    """Settings for live video: a 320-pixel working size and a coarser scale step (speed first)."""
    return FaceDetector(max_side=320, min_face=min_face, min_neighbors=min_neighbors, scale_factor=1.2)


class TrackingDetector:
    """A detector for streams: a full search now and then, and between, a search near the last faces.

    A full-frame Haar search of a 640x480 frame costs 10-25 ms here, mostly on the many
    small window sizes. Between full searches, each face found in the previous frame is
    looked for only in a region around its box, at sizes within +-33% of it (a few
    pyramid levels on a small patch: about a millisecond). A face lost that way triggers a
    full search on the same frame, so nothing is missed for long; a new face appears at
    the next full search (every `redetect` frames).

    Not thread-safe (it remembers the previous frame): one per stream.

    Args:
        detector: the `FaceDetector` whose settings (working size, confidence) are used.
        redetect: a full search every this many frames (1 = always, no tracking).
        search: how far around the last box to look, as a fraction of its size per side.
    """

    def __init__(self, detector: FaceDetector | None = None, *, redetect: int = 10, search: float = 0.5) -> None:
        self.detector = detector if detector is not None else webcam_detector()
        self.redetect = max(1, int(redetect))
        self.search = float(search)
        self._last: list[Detection] = []
        self._since_full = 0
        self.full_searches = 0

    def reset(self) -> None:
        self._last, self._since_full = [], 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in this frame (same contract as `FaceDetector.detect`)."""
        gray = to_gray(image)
        d = self.detector
        small, scale = d.downscale(gray)
        found: list[Detection] = []
        tracked = bool(self._last) and self._since_full < self.redetect - 1
        if tracked:
            for det in self._last:
                hit = self._near(small, scale, gray.shape, det)
                if hit is None:  # lost one: fall back to a full search of this frame
                    tracked = False
                    break
                found.append(hit)
        if tracked:
            self._since_full += 1
        else:
            min_px = max(20, round(d.min_face * min(small.shape)))
            found = d.detect_scaled(small, scale, gray.shape, (min_px, min_px)) if min(small.shape) >= 20 else []
            self._since_full = 0
            self.full_searches += 1
        found = sorted(suppress_overlaps(found, d.overlap), key=lambda f: (f.box[0], f.box[1]))
        self._last = found
        return found

    def boxes(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Just the boxes of `detect` (x, y, w, h), left to right."""
        return [det.box for det in self.detect(image)]

    def _near(self, small: np.ndarray, scale: float, shape: tuple[int, int], det: Detection) -> Detection | None:
        """The best face within `search` of a previous box, at a similar size, or None."""
        x, y, w, h = (v * scale for v in det.box)
        m = self.search * max(w, h)
        x0, y0 = max(0, int(x - m)), max(0, int(y - m))
        x1, y1 = min(small.shape[1], int(x + w + m)), min(small.shape[0], int(y + h + m))
        side = max(w, h)
        lo, hi = max(20, int(side * 0.75)), int(side * 1.33) + 1
        hits = self.detector.detect_scaled(small[y0:y1, x0:x1], scale, shape, (lo, lo), (hi, hi), (x0, y0))
        return max(hits, key=lambda d: d.score) if hits else None
