"""The recogniser: card-driven preprocessing, one batch per frame, JSON shape, smoothing, drawing, video."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from fer_core.card import CardError, load_card
from fer_core.constants import EMOTIONS
from fer_core.drawing import annotate
from fer_core.images import ImageError, decode_image
from fer_core.inference import DEFAULT_MODEL_PATH, EmotionSmoother, Face, Recognizer, crop_face
from tests.conftest import SHARED_PHOTOS, make_tiny_model, needs_shared_photos


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def recognizer(tiny_model) -> Recognizer:
    return Recognizer(tiny_model)


def test_card_drives_the_recognizer(tiny_model, recognizer):
    card = load_card(tiny_model)
    assert recognizer.labels == tuple(card["labels"]) == EMOTIONS
    assert recognizer.crop_size == card["input"]["crop_size"]
    assert recognizer.tta == card["tta"] == "none"
    assert recognizer.margin == card["face_margin"]


def test_explicit_tta_overrides_the_card_and_bad_tta_is_refused(tiny_model):
    import keras

    model = keras.models.load_model(tiny_model, compile=False)
    assert Recognizer(tiny_model, tta="flip", model=model).tta == "flip"
    with pytest.raises(ValueError, match="tta"):
        Recognizer(tiny_model, tta="sideways", model=model)


def test_card_labels_name_the_scores(tmp_path):
    labels = ("a", "b", "c")
    rec = Recognizer(make_tiny_model(tmp_path, labels=labels, tta="tencrop"))
    face = rec.predict_crop(np.full((48, 48, 3), 128, np.uint8))
    assert tuple(face.scores) == labels and face.emotion in labels
    assert rec.tta == "tencrop"


def test_missing_model_or_card_is_a_card_error(tmp_path, tiny_model):
    with pytest.raises(CardError, match="no model file"):
        Recognizer(tmp_path / "none.keras")
    lonely = tmp_path / "lonely.keras"
    lonely.write_bytes(Path(tiny_model).read_bytes())
    with pytest.raises(CardError, match="card"):
        Recognizer(lonely)


def test_classify_is_the_eager_model(recognizer):
    """The engine's compiled forward pass gives what the Keras model gives called eagerly."""
    from tests.conftest import eager_proba

    faces = np.random.default_rng(1).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    for tta in ("none", "flip", "tencrop"):
        recognizer.tta = tta
        try:
            ours = recognizer.classify(faces)
        finally:
            recognizer.tta = "none"
        ref = eager_proba(recognizer.model, faces, tta)
        np.testing.assert_allclose(ours, ref, atol=1e-5)
        assert ours.shape == (3, 7)


def test_one_batch_equals_one_by_one(recognizer):
    gray = np.random.default_rng(2).integers(0, 256, (200, 300), dtype=np.uint8)
    boxes = [(10, 10, 60, 60), (150, 40, 80, 80), (250, 150, 50, 50)]
    together = recognizer.faces_from_boxes(gray, boxes)
    for face, box in zip(together, boxes, strict=True):
        alone = recognizer.faces_from_boxes(gray, [box])[0]
        assert face.box == box
        np.testing.assert_allclose(list(face.scores.values()), list(alone.scores.values()), atol=1e-5)


@needs_shared_photos()
def test_predict_image_on_a_photo(recognizer):
    rgb = decode_image(SHARED_PHOTOS / "kit_with_rose.jpg")
    faces = recognizer.predict_image(rgb)
    assert len(faces) == 2
    for f in faces:
        assert set(f.scores) == set(EMOTIONS)
        assert sum(f.scores.values()) == pytest.approx(1.0, abs=1e-4)
        assert f.emotion == max(f.scores, key=f.scores.get)
        js = f.to_json()
        assert json.loads(json.dumps(js)) == js
        assert js["box"] == list(f.box) and all(isinstance(v, int) for v in js["box"])


@needs_shared_photos()
def test_predict_file_from_path_and_bytes_agree(recognizer):
    path = SHARED_PHOTOS / "biden.jpg"
    from_path = recognizer.predict_file(path)
    from_bytes = recognizer.predict_file(path.read_bytes(), name="biden.jpg")
    assert from_path["image"] == str(path) and from_bytes["image"] == "biden.jpg"
    assert len(from_path["faces"]) == 1
    assert from_path["faces"] == from_bytes["faces"]
    assert recognizer.predict_file(path.read_bytes())["image"] == "upload"


def test_predict_file_names_the_upload_in_errors(recognizer):
    with pytest.raises(ImageError, match=r"^holiday\.jpg: not an image"):
        recognizer.predict_file(b"this is not a jpeg", name="holiday.jpg")


@pytest.mark.skipif(not DEFAULT_MODEL_PATH.is_file(), reason="no shipped model in models/ yet")
def test_shipped_model_loads_and_gives_seven_scores():
    rec = Recognizer(tta="none")
    face = rec.predict_crop(np.full((48, 48, 3), 100, np.uint8))
    assert len(face.scores) == 7
    assert sum(face.scores.values()) == pytest.approx(1.0, abs=1e-4)


# (box, margin): the crop is always 48x48 and centred on the box, even at the border
CROPS = [((20, 20, 40, 40), 0.0), ((20, 20, 40, 40), 0.25), ((0, 0, 30, 30), 0.2), ((90, 70, 30, 30), 0.5)]


@pytest.mark.parametrize(("box", "margin"), CROPS)
def test_crop_face_shape_and_content(box, margin):
    gray = np.zeros((100, 120), np.uint8)
    x, y, w, h = box
    gray[y : y + h, x : x + w] = 255  # the box itself is white
    crop = crop_face(gray, box, margin)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    centre = crop[20:28, 20:28]
    assert centre.min() > 200  # the box's centre lands in the crop's centre
    inner = 48 / (1 + 2 * margin)  # the box's side inside the crop
    if margin >= 0.2 and x > 0 and y > 0 and x + w < 120 and y + h < 100:
        assert crop[0, 0] < 50  # the margin shows surroundings
    assert crop[24, 24 + int(inner / 2) - 3] > 200


def test_crop_face_outside_the_picture_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        crop_face(np.zeros((50, 50), np.uint8), (500, 500, 20, 20), 0.1)


def _face(box, scores) -> Face:
    s = dict(zip(EMOTIONS, scores, strict=True))
    return Face(box, max(s, key=s.get), s)


HAPPY = [0, 0, 0, 1.0, 0, 0, 0]
SAD = [0, 0, 0, 0, 1.0, 0, 0]


def test_smoother_averages_per_track():
    sm = EmotionSmoother(alpha=0.5)
    assert sm.update([_face((0, 0, 100, 100), HAPPY)])[0].emotion == "happy"
    out = sm.update([_face((5, 0, 100, 100), SAD)])[0]  # same face, moved a bit
    assert out.scores["happy"] == pytest.approx(0.5) and out.scores["sad"] == pytest.approx(0.5)
    out = sm.update([_face((5, 0, 100, 100), SAD)])[0]
    assert out.emotion == "sad" and out.scores["sad"] == pytest.approx(0.75)
    assert out.box == (5, 0, 100, 100)


def test_smoother_keeps_faces_apart_and_forgets_lost_ones():
    sm = EmotionSmoother(alpha=0.5, max_missed=2)
    sm.update([_face((0, 0, 100, 100), HAPPY), _face((300, 0, 100, 100), SAD)])
    a, b = sm.update([_face((0, 0, 100, 100), SAD), _face((300, 0, 100, 100), SAD)])
    assert a.scores["happy"] == pytest.approx(0.5) and b.scores["sad"] == pytest.approx(1.0)
    assert sm.n_tracks == 2
    for _ in range(3):
        sm.update([_face((0, 0, 100, 100), SAD)])
    assert sm.n_tracks == 1
    new = sm.update([_face((300, 0, 100, 100), HAPPY)])[0]  # the old track is gone: no memory of "sad"
    assert new.scores["happy"] == pytest.approx(1.0)


def test_smoother_alpha_one_is_no_smoothing():
    sm = EmotionSmoother(alpha=1.0)
    sm.update([_face((0, 0, 50, 50), HAPPY)])
    assert sm.update([_face((0, 0, 50, 50), SAD)])[0].scores["sad"] == 1.0
    with pytest.raises(ValueError):
        EmotionSmoother(alpha=0)


def test_annotate_draws_on_a_copy():
    rgb = np.zeros((200, 300, 3), np.uint8)
    faces = [_face((50, 60, 80, 80), HAPPY)]
    out = annotate(rgb, faces)
    assert out.shape == rgb.shape and rgb.max() == 0  # the input is untouched
    assert out[60, 90].any() and out[100, 50].any()  # top and left edges of the box are drawn
    assert not out[100, 90].any()  # inside the box stays clear
    assert not annotate(rgb, []).any()


def test_recognizer_with_another_detector_shares_the_model(recognizer):
    from fer_core.faces import webcam_detector

    other = recognizer.with_detector(webcam_detector())
    assert other.model is recognizer.model and other.detector is not recognizer.detector
    assert type(recognizer.detector).__name__ == "BlazeFaceDetector" and recognizer.detector.tiles == 2
    assert other.detector.max_side == 320


def test_crops_match_the_faces(recognizer):
    rgb = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    faces = recognizer.faces_from_boxes(rgb[..., 0], [(10, 10, 50, 50)])
    assert recognizer.crops(rgb, faces).shape == (1, 48, 48)
    assert recognizer.crops(rgb, []).shape == (0, 48, 48)


# ----------------------------------------------------------------------------- video


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, codec: str = "mpeg4") -> Path:
    """Encode RGB frames into a small video file with PyAV."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@needs_shared_photos()
@pytest.mark.parametrize(("codec", "ext"), [("mpeg4", "mp4"), ("libvpx", "webm"), ("mjpeg", "avi")])
def test_analyse_video_reports_faces_per_frame(tmp_path, recognizer, codec, ext):
    import cv2

    from fer_core.video import analyse_video

    face = decode_image(SHARED_PHOTOS / "biden.jpg")
    face = cv2.resize(face[: face.shape[1] * 3 // 4], (320, 240), interpolation=cv2.INTER_AREA)
    frames = [face] * 5 + [np.zeros_like(face)] * 5  # 1 s at 10 fps: face, then nothing
    video = write_video(tmp_path / f"clip.{ext}", frames, codec=codec)
    seen = []
    results = analyse_video(video, recognizer, every=0.0, progress=seen.append)
    assert len(results) == 10
    assert [r["frame"] for r in results] == list(range(10))
    times = [r["time"] for r in results]
    assert times == sorted(times) and times[-1] == pytest.approx(0.9, abs=0.05)
    counts = [len(r["faces"]) for r in results]
    assert counts[:5] == [1] * 5 and counts[5:] == [0] * 5
    assert seen and seen[-1] == 1.0
    sparse = analyse_video(video.read_bytes(), recognizer, every=0.45, name="clip")
    assert [r["frame"] for r in sparse] == [0, 5] and sparse[0]["image"] == "clip"


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"\x00\x00\x00\x18ftypmp42 this is not really a video", "video"), (b"hello", "video")],
    ids=["zero-byte", "fake-mp4", "text"],
)
def test_bad_videos_are_video_errors(tmp_path, recognizer, content, message):
    from fer_core.errors import FerError
    from fer_core.video import VideoError, analyse_video

    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match=message) as caught:
        analyse_video(path, recognizer)
    assert isinstance(caught.value, FerError) and not isinstance(caught.value, ImageError)


def test_live_annotator_records_stats_and_queues_results(recognizer):
    from fer_core.video import LiveAnnotator

    ann = LiveAnnotator(recognizer, smooth=0.3)
    frame = np.zeros((120, 160, 3), np.uint8)
    for _ in range(3):
        out = ann(frame)
        assert out.shape == frame.shape
    stats = ann.stats()
    assert stats["frames"] == 3 and stats["faces"] == 0 and stats["latency_ms"] > 0 and stats["fps"] > 0
    items = ann.drain()
    assert len(items) == 3 and items[0]["faces"] == []
    assert ann.drain() == []
    ann.set_smoothing(None)
    ann(np.zeros((5, 5, 3), np.uint8))  # tiny frame: no face, no crash
    assert ann.stats()["frames"] == 4 and ann.stats()["error"] is None


def test_live_annotator_lag_grows_only_when_frames_queue(recognizer):
    """Frames handed over at their capture rate show no lag; frames arriving ever later show it growing."""
    from fer_core.video import LiveAnnotator

    frame = np.zeros((60, 80, 3), np.uint8)
    steady = LiveAnnotator(recognizer)
    start = time.perf_counter()
    for _ in range(4):
        steady(frame, frame_time=(time.perf_counter() - start) + 1000.0)  # capture clock = wall clock + a constant
    assert steady.stats()["lag_ms"] < 20
    late = LiveAnnotator(recognizer)
    for i in range(4):
        late(frame, frame_time=i * 0.01)  # captured 10 ms apart, handed over >= 60 ms apart: a queue builds
        time.sleep(0.06)
    assert late.stats()["lag_ms"] >= 100  # lags 0, >=50, >=100, >=150 ms; the median is the third
    assert LiveAnnotator(recognizer).stats()["lag_ms"] is None
