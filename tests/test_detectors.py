"""The BlazeFace detector and the detector table: occluded and tilted faces, landmarks, eye alignment, bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.detection import Truth, hand_over_mouth, load_labels, match
from fer_core.blazeface import weighted_nms
from fer_core.faces import BlazeFaceDetector, TrackingDetector, create_detector
from fer_core.images import decode_image
from fer_core.inference import Face, crop_face, eye_angle
from tests.conftest import SHARED_PHOTOS, needs_shared_photos


@pytest.fixture(scope="module")
def default_detector():
    return create_detector()


@pytest.fixture(scope="module")
def labels() -> dict[str, list[Truth]]:
    return load_labels()


@needs_shared_photos()
@pytest.mark.parametrize("photo", ["kit_with_rose.jpg", "two_people.jpg"])
def test_default_detector_finds_faces_behind_a_hand(default_detector, labels, photo):
    """A hand-shaped occluder (palm and fingers in the face's skin tone) over every mouth and chin."""
    rgb = decode_image(SHARED_PHOTOS / photo)
    for face in labels[photo]:
        rgb = hand_over_mouth(rgb, face)
    found, counted, false_pos = match(default_detector.boxes(rgb), labels[photo])
    assert (found, false_pos) == (counted, 0)


@needs_shared_photos()
@pytest.mark.parametrize("photo", ["biden.jpg", "kit_with_rose.jpg", "two_people.jpg"])
def test_eyes_land_on_the_hand_labelled_eyes(default_detector, labels, photo):
    dets = default_detector.detect(decode_image(SHARED_PHOTOS / photo))
    assert len(dets) == len(labels[photo])
    for det, truth in zip(dets, sorted(labels[photo], key=lambda t: t.centre[0]), strict=True):
        eyes = np.array([det.landmarks["right_eye"], det.landmarks["left_eye"]])
        assert np.abs(eyes - truth.eyes).max() < 0.1 * truth.size, (eyes, truth.eyes)


@needs_shared_photos()
@pytest.mark.parametrize("angle", [-30, 20])
def test_eye_angle_recovers_a_tilt_and_alignment_levels_the_crop(default_detector, labels, angle):
    import cv2

    rgb = decode_image(SHARED_PHOTOS / "biden.jpg")
    truth = labels["biden.jpg"][0]
    m = cv2.getRotationMatrix2D(tuple(float(v) for v in truth.centre), angle, 1.0)
    tilted = cv2.warpAffine(rgb, m, rgb.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    (det,) = default_detector.detect(tilted)
    est = eye_angle(det.landmarks)
    upright = eye_angle({"right_eye": truth.eyes[0], "left_eye": truth.eyes[1]})
    assert abs(est - (upright - angle)) < 5, est
    gray, tilted_gray = rgb.mean(2).astype(np.uint8), tilted.mean(2).astype(np.uint8)
    box = tuple(int(v) for v in (truth.centre[0] - 140, truth.centre[1] - 140, 280, 280))
    ref = crop_face(gray, box, 0.1).astype(float)
    aligned = crop_face(tilted_gray, box, 0.1, angle=-angle).astype(float)
    plain = crop_face(tilted_gray, box, 0.1).astype(float)
    assert np.corrcoef(ref.ravel(), aligned.ravel())[0, 1] > 0.95
    assert np.corrcoef(ref.ravel(), plain.ravel())[0, 1] < 0.9


def test_eye_angle_without_eyes_and_mirrored():
    assert eye_angle({}) == 0.0 and eye_angle(None) == 0.0
    assert eye_angle({"right_eye": (0, 0), "left_eye": (10, 10)}) == pytest.approx(45)
    assert eye_angle({"right_eye": (10, 10), "left_eye": (0, 0)}) == pytest.approx(45)  # mirrored: same tilt


@needs_shared_photos()
def test_tracker_with_blazeface_follows_one_face():
    from tests.test_faces import webcam_frame

    frame = webcam_frame()
    tracker = TrackingDetector(create_detector("blazeface", "webcam"), redetect=5)
    centres = []
    for i in range(10):
        dets = tracker.detect(np.roll(frame, 4 * i, axis=1))
        assert len(dets) == 1, (i, dets)
        centres.append(dets[0].box[0] + dets[0].box[2] / 2)
    assert tracker.full_searches < 10
    assert 0 < np.mean(np.diff(centres)) < 10
    assert tracker.detect(np.zeros_like(frame)) == []


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((480, 640, 3), np.uint8),
        np.full((300, 300), 200, np.uint8),
        np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8),
        np.zeros((1, 1, 3), np.uint8),
    ],
    ids=["black", "gray-2d", "noise", "1px"],
)
def test_blazeface_finds_nothing_in_faceless_pictures(default_detector, image):
    assert default_detector.detect(image) == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("nope",), "Unknown face detector"),
        (("blazeface", "party"), "Unknown preset"),
        (("blazeface",), "no setting max_side"),
    ],
)
def test_create_detector_refuses_bad_names_and_settings(args, words):
    kwargs = {"max_side": 800} if words.startswith("no setting") else {}
    with pytest.raises(ValueError, match=words):
        create_detector(*args, **kwargs)


@pytest.mark.parametrize("kwargs", [{"min_score": 1.5}, {"min_face": 1.0}, {"tiles": 0}, {"model": "huge"}])
def test_bad_blazeface_settings_say_what_was_received(kwargs):
    with pytest.raises(ValueError, match="Received"):
        BlazeFaceDetector(**kwargs)


def test_clone_is_a_separate_detector_with_the_same_settings(default_detector):
    other = default_detector.clone()
    assert other is not default_detector and repr(other) == repr(default_detector)


# (boxes x0 y0 x1 y1, scores, iou) -> kept boxes
NMS_CASES = [
    ([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [[0, 0, 10, 10], [20, 20, 30, 30]]),
    ([[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.9], [[0.5, 0, 10.5, 10]]),  # equal weights: the mean
    ([[0, 0, 10, 10], [3, 0, 13, 10]], [0.9, 0.3], [[0.75, 0, 10.75, 10]]),  # weighted 3:1
]


@pytest.mark.parametrize(("boxes", "scores", "kept"), NMS_CASES)
def test_weighted_nms(boxes, scores, kept):
    boxes, scores = np.array(boxes, float), np.array(scores, float)
    out = weighted_nms(boxes, scores, np.zeros((len(boxes), 6, 2)), 0.3)
    np.testing.assert_allclose([b for b, _, _ in out], kept)
    assert out[0][1] == max(scores)


def test_face_json_carries_landmarks():
    face = Face((1, 2, 3, 4), "happy", {"happy": 1.0}, {"right_eye": (1.04, 2.0)})
    assert face.to_json()["landmarks"] == {"right_eye": [1.0, 2.0]}
    assert Face((1, 2, 3, 4), "happy", {"happy": 1.0}).to_json()["landmarks"] == {}
