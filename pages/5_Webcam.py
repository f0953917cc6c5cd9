"""Webcam: live emotions from your camera over WebRTC (streamlit-webrtc), with FPS, latency and a timeline."""

import dashboard  # noqa: F401  (first: pylibsrtp must load before TensorFlow, see dashboard/__init__.py)

# isort: split
import collections
import os
import time

import av
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from dashboard import predict_ui as ui
from dashboard import resources
from fer_core.card import CardError
from fer_core.constants import DEFAULT_DETECTOR
from fer_core.faces import TrackingDetector, create_detector
from fer_core.video import LiveAnnotator

st.set_page_config(page_title="Webcam", layout="wide")
st.title("Webcam")
with st.sidebar:
    st.subheader("Live settings")
    smooth = st.toggle("Smooth emotions over time", value=True, help="Average each face's scores over recent frames.")
    min_face = st.slider(
        "Smallest face (% of the frame)", 5, 50, 10, help="Larger is faster; smaller finds faces further away."
    )
    window = st.slider("Timeline length (seconds)", 10, 120, 30)
try:
    base = resources.load_recognizer(resources.inference_model_path(), "none")  # tta none: ~5x cheaper than tencrop
    rtc = ui.rtc_configuration()
    ui.use_latest_frame_relay()
except (CardError, ValueError) as exc:
    st.error(str(exc))
    st.stop()
members = len(base.card.get("members") or []) or 1
st.caption(
    f"Model: {base.model_path.name} ({members} network{'s' if members > 1 else ''}, "
    f"{base.card.get('params') or 0:,} parameters), one centre crop per face, {base.engine.runtime_for(1)} runtime."
)

# One annotator per browser session (it tracks faces between frames), rebuilt when settings change.
live_key = (str(base.model_path), id(base), min_face)
if st.session_state.get("live_key") != live_key:
    try:
        detector = TrackingDetector(create_detector(DEFAULT_DETECTOR, "webcam", min_face=min_face / 100))
    except ValueError as exc:  # e.g. the BlazeFace package is missing: the message says what to install
        st.error(str(exc))
        st.stop()
    trace = os.environ.get("FER_LIVE_TRACE")  # per-frame timings for benchmarks/webcam_browser.py
    st.session_state["live"] = LiveAnnotator(base.with_detector(detector), trace=trace)
    st.session_state["live_key"] = live_key
    st.session_state["live_history"] = collections.deque(maxlen=3000)
annotator: LiveAnnotator = st.session_state["live"]
annotator.set_smoothing(0.3 if smooth else None)


def on_frame(frame: av.VideoFrame) -> av.VideoFrame:
    """Runs on streamlit-webrtc's worker thread: no st.* here; results leave through annotator.queue."""
    out = annotator(frame.to_ndarray(format="rgb24"), frame_time=frame.time)
    return av.VideoFrame.from_ndarray(out, format="rgb24")


ctx = webrtc_streamer(
    key="fer-webcam",
    mode=WebRtcMode.SENDRECV,
    rtc_configuration=rtc,
    media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
    video_frame_callback=on_frame,
    async_processing=True,
)
playing = bool(ctx.state.playing)
if not playing:
    st.info(
        "Press START and allow the camera. Everything runs on this machine; no STUN server is used by default. "
        "To use the camera from another machine, serve over HTTPS (see docs/inference.md)."
    )


STALE_S = 3.0  # no new frame for this long while "playing": the stream stopped by itself


@st.fragment(run_every=1.0 if playing else None)
def readout() -> None:
    """Poll the annotator's stats and queue (filled on the video thread) and redraw the readout."""
    stats = annotator.stats()
    history = st.session_state["live_history"]
    history.extend(annotator.drain())
    # A stream that stopped (by the user, or by itself: no new frame for STALE_S) must not leave its
    # last figures on screen as if they were live.
    seen = st.session_state.setdefault("live_seen", {"frames": -1, "at": time.monotonic()})
    if stats["frames"] != seen["frames"]:
        seen.update(frames=stats["frames"], at=time.monotonic())
    if stats["frames"] and (not playing or time.monotonic() - seen["at"] > STALE_S):
        st.info("The stream has stopped, so the readout is cleared. Press START to see live figures again.")
        return
    fps = f"{stats['fps']:.1f}" if stats["fps"] else "–"
    latency = f"{stats['latency_ms']:.0f}" if stats["latency_ms"] is not None else "–"
    lag = f"{stats['lag_ms']:.0f}" if stats["lag_ms"] is not None else "–"
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Faces", stats["faces"])
    c2.metric("FPS", fps)
    c3.metric("Latency per frame (ms)", latency)
    c4.metric("Frames analysed", stats["frames"])
    emotions = ", ".join(stats["emotions"]) or "none"
    st.markdown(
        f"Faces in view: {stats['faces']} · emotions: {emotions} · FPS: {fps} · latency: {latency} ms · "
        f"queueing: {lag} ms · frames: {stats['frames']}",
        help="Latency: detect, classify and draw one frame. Queueing: how much later than the stream's "
        "fastest frame this one arrived (it stays near 0 unless frames pile up before analysis).",
    )
    if stats["error"]:
        st.warning(f"The last frame could not be analysed: {stats['error']}")
    recent = [h for h in history if history and h["time"] >= history[-1]["time"] - window]
    if any(h["faces"] for h in recent):
        points = ui.live_history(recent, t0=recent[-1]["time"])
        fig = ui.timeline_figure(points, base.labels)
        fig.update_xaxes(title="seconds ago (0 = now)")
        st.plotly_chart(fig, width="stretch", key="live-timeline")


readout()
