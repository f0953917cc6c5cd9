"""Predict and Webcam pages under streamlit.testing (AppTest), plus their figure and table builders.

The pages use a tiny untrained model (patched in for the shipped one) so the tests are fast
and do not depend on the shipped model's accuracy. streamlit-webrtc needs a real server
session, so the Webcam page test replaces `webrtc_streamer` with a stand-in that feeds
frames to the page's own callback; tests/test_webcam_browser.py covers the real thing.

Import order: the dashboard loads pylibsrtp (via streamlit-webrtc), which segfaults when
TensorFlow was imported first (dashboard/__init__.py). pytest imports test modules in name
order and earlier ones import TensorFlow, so when this module arrives too late to load the
dashboard first, its tests run in one fresh pytest process instead (the last test below).
Importing `dashboard` at the top of tests/conftest.py would let them run in this process.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import types
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from fer_core.constants import EMOTIONS
from tests.conftest import REPO, SHARED_PHOTOS, needs_shared_photos
from tests.test_inference import make_tiny_model, write_video  # (none of these imports TensorFlow)

IN_PROCESS = "pylibsrtp" in sys.modules or "tensorflow" not in sys.modules
if IN_PROCESS:
    import dashboard  # noqa: F401  (before anything imports TensorFlow)

in_process = pytest.mark.skipif(
    not IN_PROCESS, reason="TensorFlow was imported before the dashboard; run by test_pages_in_a_fresh_process"
)
PREDICT = str(REPO / "pages" / "4_Predict.py")
WEBCAM = str(REPO / "pages" / "5_Webcam.py")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("page-model"))


@pytest.fixture
def app(tiny_model, monkeypatch):
    """AppTest factory with the tiny model as the dashboard's default model."""
    from streamlit.testing.v1 import AppTest

    import dashboard.resources as resources

    monkeypatch.setattr(resources, "DEFAULT_MODEL", tiny_model)
    monkeypatch.syspath_prepend(str(REPO))
    return lambda path: AppTest.from_file(path, default_timeout=180)


def _png(color=(180, 170, 160), size=(200, 150)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [i.value for i in at.info] + [e.value for e in at.error]
    return "\n".join(str(p) for p in parts)


@in_process
def test_predict_page_runs_without_uploads(app):
    at = app(PREDICT).run()
    assert not at.exception
    assert len(at.file_uploader) == 2  # photos, video
    assert "tiny" in " ".join(c.value for c in at.caption)


@in_process
@needs_shared_photos()
def test_predict_page_photos_good_and_bad(app):
    at = app(PREDICT).run()
    at.file_uploader[0].set_value(
        [
            ("kit_with_rose.jpg", (SHARED_PHOTOS / "kit_with_rose.jpg").read_bytes(), "image/jpeg"),
            ("broken.jpg", b"definitely not a jpeg", "image/jpeg"),
            ("wall.png", _png(), "image/png"),
        ]
    ).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("broken.jpg: not an image")
    assert any("No face found" in i.value for i in at.info)  # the blank wall
    table = at.dataframe[0].value
    assert list(table["image"]) == ["kit_with_rose.jpg", "kit_with_rose.jpg"]
    assert set(table["emotion"]) <= set(EMOTIONS)
    assert len(at.get("plotly_chart")) == 1  # one probability chart, for the photo with faces


@in_process
@needs_shared_photos()
def test_predict_page_gradcam_on_request(app):
    at = app(PREDICT).run()
    photo = (SHARED_PHOTOS / "two_people.jpg").read_bytes()
    at.file_uploader[0].set_value(("two_people.jpg", photo, "image/jpeg")).run()
    assert len(at.image) == 1  # the annotated photo
    at.checkbox[1].check().run()  # "Show Grad-CAM"
    assert not at.exception
    captions = [c for img in at.image for c in img.captions]
    assert sum(c.startswith("face ") for c in captions) == 2, captions


@in_process
def test_predict_page_cropped_faces_mode(app):
    crop = next((REPO / "data" / "sample").rglob("*.jpg"))
    at = app(PREDICT).run()
    at.file_uploader[0].set_value(("face.jpg", crop.read_bytes(), "image/jpeg")).run()
    assert any("No face found" in i.value for i in at.info)  # 48x48: too small to detect
    at.checkbox[0].check().run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 1


@in_process
@needs_shared_photos()
def test_predict_page_video(app, tmp_path):
    import cv2

    from fer_core.images import decode_image

    face = decode_image(SHARED_PHOTOS / "biden.jpg")
    face = cv2.resize(face[: face.shape[1] * 3 // 4], (320, 240), interpolation=cv2.INTER_AREA)
    video = write_video(tmp_path / "clip.mp4", [face] * 10 + [np.zeros_like(face)] * 10, fps=10)
    at = app(PREDICT).run()
    at.file_uploader[1].set_value(("clip.mp4", video.read_bytes(), "video/mp4")).run()
    at.button[0].click().run()
    assert not at.exception
    assert "4 frames analysed, 2 with a face." in _texts(at)
    assert len(at.get("plotly_chart")) == 2  # timeline + emotion strip


@in_process
def test_predict_page_bad_video_keeps_running(app):
    at = app(PREDICT).run()
    at.file_uploader[1].set_value(("clip.mp4", b"not a video", "video/mp4")).run()
    at.button[0].click().run()
    assert not at.exception
    assert any("not a video" in e.value for e in at.error)


@in_process
@needs_shared_photos()
def test_webcam_page_readout_with_a_stand_in_stream(app):
    import av

    from tests.test_faces import webcam_frame

    frame = av.VideoFrame.from_ndarray(webcam_frame(), format="rgb24")
    calls = {}

    def fake_streamer(**kw):
        from aiortc.mediastreams import VideoStreamTrack
        from streamlit_webrtc.relay import get_global_relay

        calls.update(kw)
        # What streamlit-webrtc does with the camera track: subscribe through its relay. It must keep
        # only the newest frame (unbuffered), so frames cannot pile up before the callback.
        calls["buffered"] = get_global_relay().subscribe(VideoStreamTrack())._buffered
        out = kw["video_frame_callback"](frame)  # what streamlit-webrtc's worker thread would do
        calls["out"] = out.to_ndarray(format="rgb24")
        return types.SimpleNamespace(state=types.SimpleNamespace(playing=True))

    with mock.patch("streamlit_webrtc.webrtc_streamer", fake_streamer):
        at = app(WEBCAM).run()
        assert not at.exception
        at.run()  # a second frame through the same session's annotator
    assert calls["rtc_configuration"] == {"iceServers": []}
    assert calls["buffered"] is False
    assert calls["media_stream_constraints"]["audio"] is False
    assert not np.array_equal(calls["out"], frame.to_ndarray(format="rgb24"))  # the box was drawn
    text = _texts(at)
    assert "Faces in view: 1" in text, text
    assert len(at.get("plotly_chart")) == 1  # the live timeline


@in_process
@needs_shared_photos()
def test_webcam_page_clears_the_readout_when_the_stream_stops(app):
    """After the stream stopped, the readout must show the final figures, not stale ones."""
    import av

    from tests.test_faces import webcam_frame

    frame = av.VideoFrame.from_ndarray(webcam_frame(), format="rgb24")
    playing = {"now": True}

    def fake_streamer(**kw):
        if playing["now"]:
            kw["video_frame_callback"](frame)
        return types.SimpleNamespace(state=types.SimpleNamespace(playing=playing["now"]))

    with mock.patch("streamlit_webrtc.webrtc_streamer", fake_streamer):
        at = app(WEBCAM).run()
        assert "Faces in view: 1" in _texts(at)
        playing["now"] = False  # the stream ends
        at.run()
    assert not at.exception
    text = _texts(at)
    assert "The stream has stopped" in text and "Faces in view" not in text, text
    assert not at.metric and not at.get("plotly_chart")


@in_process
def test_webcam_page_bad_ice_servers_is_a_message(app, monkeypatch):
    monkeypatch.setenv("FER_ICE_SERVERS", "{not json")
    with mock.patch("streamlit_webrtc.webrtc_streamer") as streamer:
        at = app(WEBCAM).run()
    assert not at.exception
    assert any("FER_ICE_SERVERS" in e.value for e in at.error)
    streamer.assert_not_called()


# ----------------------------------------------------------------------------- builders


def _faces(*tops):
    out = []
    for i, top in enumerate(tops):
        scores = {n: (0.7 if n == top else 0.05) for n in EMOTIONS}
        out.append({"box": [10 * i, 0, 20, 20], "emotion": top, "scores": scores})
    return out


@in_process
def test_probability_figure_one_trace_per_face():
    from dashboard.predict_ui import probability_figure

    fig = probability_figure(_faces("happy", "sad"), EMOTIONS)
    assert [t.name for t in fig.data] == ["face 1: happy", "face 2: sad"]
    assert list(fig.data[0].y) == list(EMOTIONS) and max(fig.data[0].x) == 0.7


@in_process
def test_timeline_leaves_gaps_where_the_face_is_missing():
    from dashboard.predict_ui import emotion_strip, timeline_figure

    entries = [
        {"time": 0.0, "faces": _faces("happy")},
        {"time": 0.5, "faces": []},
        {"time": 1.0, "faces": _faces("sad")},
    ]
    fig = timeline_figure(entries, EMOTIONS)
    assert len(fig.data) == 7
    happy = next(t for t in fig.data if t.name == "happy")
    assert list(happy.x) == [0.0, 0.5, 1.0] and list(happy.y) == [0.7, None, 0.05]
    strip = emotion_strip(entries, EMOTIONS)
    assert sorted(t.name for t in strip.data) == ["happy", "sad"]


@in_process
def test_faces_table_and_downloads():
    import json

    from dashboard.predict_ui import csv_bytes, faces_table, json_bytes, live_history

    entries = [{"image": "a.jpg", "faces": _faces("happy", "fear")}, {"image": "b.jpg", "faces": []}]
    table = faces_table(entries)
    assert list(table["face"]) == [1, 2] and list(table["emotion"]) == ["happy", "fear"]
    assert list(table["confidence"]) == [0.7, 0.7]
    assert csv_bytes(table).decode().splitlines()[0].startswith("image,face,x,y,w,h,emotion,confidence,angry")
    assert json.loads(json_bytes(entries)) == entries
    assert faces_table([]).empty
    hist = live_history([{"time": 100.0, "faces": []}, {"time": 101.5, "faces": []}])
    assert [h["time"] for h in hist] == [0.0, 1.5]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, {"iceServers": []}),
        ('[{"urls": ["stun:stun.example.org:3478"]}]', {"iceServers": [{"urls": ["stun:stun.example.org:3478"]}]}),
    ],
)
@in_process
def test_rtc_configuration(monkeypatch, env, expected):
    from dashboard.predict_ui import rtc_configuration

    if env is None:
        monkeypatch.delenv("FER_ICE_SERVERS", raising=False)
    else:
        monkeypatch.setenv("FER_ICE_SERVERS", env)
    assert rtc_configuration() == expected


@in_process
@pytest.mark.parametrize("env", ["{broken", '{"urls": "stun:x"}'])
def test_rtc_configuration_refuses_bad_env(monkeypatch, env):
    from dashboard.predict_ui import rtc_configuration

    monkeypatch.setenv("FER_ICE_SERVERS", env)
    with pytest.raises(ValueError, match="FER_ICE_SERVERS"):
        rtc_configuration()


@in_process
def test_predict_page_analyses_each_upload_once(app, monkeypatch):
    """Adding a photo or clicking a checkbox must not re-run the photos already analysed."""
    from fer_core.inference import Recognizer

    calls = []
    original = Recognizer.predict_image
    monkeypatch.setattr(Recognizer, "predict_image", lambda self, rgb: calls.append(rgb.shape) or original(self, rgb))
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))  # bytes no earlier test cached
    photos = [(f"p{i}.png", _png(tuple(int(v) for v in rng.integers(0, 256, 3))), "image/png") for i in range(3)]
    at = app(PREDICT).run()
    at.file_uploader[0].set_value(photos[:2]).run()
    assert not at.exception and len(calls) == 2
    at.file_uploader[0].set_value(photos).run()
    assert len(calls) == 3  # only the new photo
    at.checkbox[1].check().run()  # Show Grad-CAM
    assert not at.exception and len(calls) == 3


@in_process
@needs_shared_photos()
def test_predict_page_video_results_survive_the_interval_slider(app, tmp_path):
    from fer_core.images import decode_image

    face = decode_image(SHARED_PHOTOS / "biden.jpg")[:480, :640]
    video = write_video(tmp_path / "clip.mp4", [face] * 10, fps=10)
    at = app(PREDICT).run()
    at.file_uploader[1].set_value(("clip.mp4", video.read_bytes(), "video/mp4")).run()
    at.button[0].click().run()
    assert "frames analysed" in _texts(at)
    next(s for s in at.slider if s.label.startswith("Seconds between")).set_value(1.0).run()
    assert not at.exception
    assert "frames analysed" in _texts(at)  # still shown, and it says which interval it used
    assert any("used one frame every 0.5 s" in c.value for c in at.caption)


@pytest.mark.skipif(IN_PROCESS, reason="the page tests ran in this process")
def test_pages_in_a_fresh_process():
    """Run this module's tests in a new interpreter, where the dashboard loads before TensorFlow."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", __file__]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    tail = proc.stdout[-3000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail
