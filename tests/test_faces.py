"""Face detection: the shared photos' face counts, coordinates after downscaling, overlap suppression, tracking."""

from __future__ import annotations

import numpy as np
import pytest

from fer_core.faces import Detection, FaceDetector, TrackingDetector, cascade_path, suppress_overlaps, webcam_detector
from fer_core.images import decode_image
from tests.conftest import SHARED_PHOTOS, needs_shared_photos

# (photo, faces it contains) — from ../shared/photos/README.md
PHOTOS = [("two_people.jpg", 2), ("kit_with_rose.jpg", 2), ("biden.jpg", 1)]


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def webcam_frame() -> np.ndarray:
    """640x480 with one large face: the top of biden.jpg cropped to 4:3 (as benchmarks/latency.py)."""
    import cv2

    rgb = decode_image(SHARED_PHOTOS / "biden.jpg")
    return cv2.resize(rgb[: rgb.shape[1] * 3 // 4], (640, 480), interpolation=cv2.INTER_AREA)


@needs_shared_photos()
@pytest.mark.parametrize(("photo", "expected"), PHOTOS)
def test_shared_photos_face_counts(detector, photo, expected):
    rgb = decode_image(SHARED_PHOTOS / photo)
    dets = detector.detect(rgb)
    assert len(dets) == expected, dets
    h, w = rgb.shape[:2]
    for d in dets:
        x, y, bw, bh = d.box
        assert x >= 0 and y >= 0 and x + bw <= w and y + bh <= h
        assert bw >= 0.05 * min(h, w)  # the relative minimum size holds in original pixels
    assert [d.box[0] for d in dets] == sorted(d.box[0] for d in dets)  # left to right


@needs_shared_photos()
def test_boxes_are_in_original_pixels_whatever_the_working_size():
    """The same photo at full size and at half size: boxes differ by the factor 2 (within a few px)."""
    import cv2

    rgb = decode_image(SHARED_PHOTOS / "two_people.jpg")
    half = cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)
    full_boxes = FaceDetector(max_side=400).boxes(rgb)
    half_boxes = FaceDetector(max_side=400).boxes(half)
    assert len(full_boxes) == len(half_boxes) == 2
    for a, b in zip(full_boxes, half_boxes, strict=True):
        centre_a = np.array([a[0] + a[2] / 2, a[1] + a[3] / 2])
        centre_b = np.array([b[0] + b[2] / 2, b[1] + b[3] / 2]) * 2
        assert np.abs(centre_a - centre_b).max() < 0.1 * a[2]
        assert abs(a[2] - 2 * b[2]) < 0.15 * a[2]


@needs_shared_photos()
def test_webcam_detector_and_tracker_follow_one_face():
    frame = webcam_frame()
    assert len(webcam_detector().detect(frame)) == 1
    tracker = TrackingDetector(webcam_detector(), redetect=5)
    centres = []
    for i in range(12):
        shifted = np.roll(frame, 4 * i, axis=1)  # the face drifts right 4 px per frame
        dets = tracker.detect(shifted)
        assert len(dets) == 1, (i, dets)
        x, _, w, _ = dets[0].box
        centres.append(x + w / 2)
    assert tracker.full_searches < 12  # most frames were tracked, not searched in full
    drift = np.diff(centres)
    assert 0 < np.mean(drift) < 10  # it followed the motion


@needs_shared_photos()
def test_tracker_searches_in_full_when_the_face_leaves():
    frame = webcam_frame()
    tracker = TrackingDetector(webcam_detector(), redetect=100)
    assert len(tracker.detect(frame)) == 1
    searches = tracker.full_searches
    assert tracker.detect(np.zeros_like(frame)) == []
    assert tracker.full_searches == searches + 1
    assert len(tracker.detect(frame)) == 1  # found again at once


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((480, 640, 3), np.uint8),  # black
        np.full((300, 300), 200, np.uint8),  # flat gray, 2-D input
        np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8),  # noise
        np.zeros((10, 10, 3), np.uint8),  # smaller than the cascade window
        np.zeros((1, 1, 3), np.uint8),
    ],
    ids=["black", "gray-2d", "noise", "10px", "1px"],
)
def test_no_faces_in_faceless_pictures(detector, image):
    assert detector.detect(image) == []


# (boxes with scores, overlap threshold, boxes expected to survive)
OVERLAP_CASES = [
    ([((0, 0, 100, 100), 10), ((200, 0, 100, 100), 5)], 0.3, {(0, 0, 100, 100), (200, 0, 100, 100)}),
    ([((0, 0, 100, 100), 10), ((10, 10, 100, 100), 20)], 0.3, {(10, 10, 100, 100)}),
    ([((0, 0, 200, 200), 10), ((50, 50, 40, 40), 30)], 0.3, {(50, 50, 40, 40)}),  # nested: the surer wins
    ([((0, 0, 100, 100), 10), ((80, 0, 100, 100), 9)], 0.3, {(0, 0, 100, 100), (80, 0, 100, 100)}),  # 20% overlap
    ([((0, 0, 100, 100), 10), ((80, 0, 100, 100), 9)], 0.1, {(0, 0, 100, 100)}),
    ([], 0.3, set()),
]


@pytest.mark.parametrize(("dets", "overlap", "kept"), OVERLAP_CASES)
def test_suppress_overlaps(dets, overlap, kept):
    result = suppress_overlaps([Detection(b, s) for b, s in dets], overlap)
    assert {d.box for d in result} == kept


@pytest.mark.parametrize(
    "kwargs",
    [{"max_side": 10}, {"min_face": 1.5}, {"scale_factor": 1.0}, {"cascade": "nope"}],
)
def test_bad_settings_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="Received"):
        FaceDetector(**kwargs)


def test_cascade_ships_with_the_wheel():
    assert cascade_path("alt2").is_file()
