"""Widgets and figures for the Predict and Webcam pages (pure figure/table builders are testable without UI)."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from fer_core.constants import ALIGN_FACES, TTA_MODES
from fer_core.drawing import color_for

# ICE servers for remote use, as JSON (e.g. '[{"urls": ["stun:stun.l.google.com:19302"]}]').
# Empty by default: on localhost the browser and the server meet without any STUN server.
ICE_ENV = "FER_ICE_SERVERS"


def _rgb(label: str, labels) -> str:
    r, g, b = color_for(label, tuple(labels))
    return f"rgb({r},{g},{b})"


# ----------------------------------------------------------------------------- widgets


# "Search detail" choices of the Haar detector: the working size (longer side, px) photos are searched at.
DETAIL = {"normal (fast)": 400, "small faces": 800, "crowds (slow)": 1600}
# Face detectors offered on the Predict page, default first (fer_core.faces.PRESETS holds their settings).
DETECTOR_CHOICES = {"BlazeFace (CNN)": "blazeface", "Haar cascade (2001)": "haar"}


def detector_ui() -> dict:
    """Sidebar: face-detector, drawing and TTA settings for photos.

    Returns:
        {"detector": name, "settings": {constructor overrides}, "landmarks": bool, "align": bool, "tta": ...}.
    """
    with st.sidebar:
        st.subheader("Face detection")
        choice = st.selectbox(
            "Detector",
            list(DETECTOR_CHOICES),
            help="BlazeFace finds tilted, half-covered and small faces that the Haar cascade misses "
            "(benchmark in docs/inference.md).",
        )
        name = DETECTOR_CHOICES[choice]
        min_face = st.slider(
            "Smallest face (% of the shorter side)",
            0,
            40,
            5 if name == "haar" else 0,
            help="Larger ignores small faces.",
        )
        settings: dict = {"min_face": min_face / 100.0}
        if name == "haar":
            detail = st.selectbox(
                "Search detail",
                list(DETAIL),
                help="Photos are searched at this working size. Faces smaller than ~5% of the photo need more detail.",
            )
            settings["max_side"] = DETAIL[detail]
            settings["min_neighbors"] = st.slider(
                "Confidence (agreeing detections)",
                2,
                20,
                6,
                help="Real faces collect 15+ agreeing detections, false ones rarely more than 4. Lower finds more.",
            )
        else:
            settings["min_score"] = st.slider(
                "Confidence",
                0.2,
                0.9,
                0.5,
                0.05,
                help="BlazeFace's face probability; lower finds more, and more mistakes.",
            )
        landmarks = st.checkbox("Show eyes, nose, mouth and ears", help="BlazeFace's landmarks (Haar finds none).")
        align = st.checkbox(
            "Level the eyes before classifying",
            value=ALIGN_FACES,
            help="Rotates tilted faces upright first (needs BlazeFace's eyes).",
        )
        tta = st.selectbox(
            "Test-time augmentation",
            ["card", *TTA_MODES],
            help="'card' uses the model card's choice. tencrop averages ten crops: a little more accurate, ~5x slower.",
        )
    return {
        "detector": name,
        "settings": settings,
        "landmarks": landmarks,
        "align": align,
        "tta": None if tta == "card" else tta,
    }


def rtc_configuration() -> dict:
    """The WebRTC configuration: no ICE servers unless $FER_ICE_SERVERS lists some (JSON).

    Raises:
        ValueError: $FER_ICE_SERVERS is not a JSON list.
    """
    raw = os.environ.get(ICE_ENV, "").strip()
    if not raw:
        return {"iceServers": []}
    try:
        servers = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f'${ICE_ENV} is not valid JSON ({exc.msg}); expected a list like [{{"urls": [...]}}].'
        ) from None
    if not isinstance(servers, list):
        raise ValueError(f"${ICE_ENV} must be a JSON list of ICE servers. Received: {raw[:80]}")
    return {"iceServers": servers}


def use_latest_frame_relay() -> None:
    """Make streamlit-webrtc hand the frame callback the newest camera frame, never a backlog.

    streamlit-webrtc passes the camera track to the callback through aiortc's `MediaRelay`,
    whose subscriptions buffer every frame by default. The callback's output is pulled at the
    pace of the outgoing encoder, so whenever detection + encoding fall behind the camera for
    a while, the buffer grows and so does the delay, without bound (measured here: queueing
    from 4 ms to 8.4 s within 40 s on a loaded 2-core machine). An unbuffered relay keeps only
    the newest frame (aiortc's own fix for this, https://github.com/aiortc/aiortc/pull/498):
    a late frame is dropped, so the delay cannot accumulate. streamlit-webrtc keeps one relay
    per server; this installs an unbuffered one in its place, once.
    """
    from aiortc.contrib.media import MediaRelay
    from streamlit.runtime.runtime import Runtime
    from streamlit_webrtc import relay as webrtc_relay

    class LatestFrameRelay(MediaRelay):
        latest_frame_only = True

        def subscribe(self, track, buffered: bool = False):
            return super().subscribe(track, buffered=False)

    runtime = Runtime.instance()
    name = webrtc_relay._SERVER_GLOBAL_RELAY_ATTR_NAME_  # where get_global_relay() keeps its singleton
    if not getattr(getattr(runtime, name, None), "latest_frame_only", False):
        setattr(runtime, name, LatestFrameRelay())  # MediaRelay binds no event loop when made


# ----------------------------------------------------------------------------- tables and files


def faces_table(entries: list[dict]) -> pd.DataFrame:
    """One row per face: image (and time/frame for videos), face number, box, top emotion, every score."""
    rows = []
    for e in entries:
        base = {k: e[k] for k in ("image", "time", "frame") if k in e}
        for i, f in enumerate(e["faces"]):
            x, y, w, h = f["box"]
            rows.append(
                {
                    **base,
                    "face": i + 1,
                    "x": x,
                    "y": y,
                    "w": w,
                    "h": h,
                    "emotion": f["emotion"],
                    "confidence": f["scores"][f["emotion"]],
                    **f["scores"],
                }
            )
    return pd.DataFrame(rows)


def unique_names(names: list[str]) -> list[str]:
    """Upload names made unique ("a.jpg", "a.jpg (2)", ...): two photos may share a file name,
    and the page keys its widgets and results by name."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def csv_bytes(df: pd.DataFrame) -> bytes:
    """A DataFrame as UTF-8 CSV bytes (for st.download_button)."""
    return df.to_csv(index=False, float_format="%.5f").encode("utf-8")


def json_bytes(obj) -> bytes:
    """Results as indented JSON bytes, the same shape the CLI writes."""
    return json.dumps(obj, indent=2).encode("utf-8")


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB uint8 array as PNG bytes (for downloading the annotated image)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def gradcam_images(recognizer, rgb: np.ndarray, faces: list) -> list[np.ndarray] | None:
    """Grad-CAM overlays (144 px RGB) of each face for its predicted emotion, or None if unsupported."""
    try:
        from fer_core.explain import gradcam, overlay
    except ImportError:
        return None
    crops = recognizer.crops(rgb, faces)
    out = []
    try:
        for crop, face in zip(crops, faces, strict=True):
            k = recognizer.labels.index(face.emotion)
            out.append(overlay(crop, gradcam(recognizer.model, crop, recognizer.crop_size, k), size=144))
    except ValueError:
        return None
    return out


# ----------------------------------------------------------------------------- figures


def probability_figure(faces: list[dict], labels) -> go.Figure:
    """Grouped horizontal bars: each face's probability for every label (face 1, 2, ... as in the image)."""
    fig = go.Figure()
    labels = list(labels)
    for i, f in enumerate(faces):
        fig.add_bar(
            name=f"face {i + 1}: {f['emotion']}",
            y=labels,
            x=[f["scores"][n] for n in labels],
            orientation="h",
            text=[f"{100 * f['scores'][n]:.0f}%" for n in labels],
            textposition="auto",
        )
    fig.update_layout(
        barmode="group",
        xaxis={"range": [0, 1], "tickformat": ".0%", "title": "probability"},
        yaxis={"autorange": "reversed"},
        height=120 + 28 * len(labels) * max(1, min(len(faces), 3)),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "y": 1.08},
    )
    return fig


def timeline_figure(entries: list[dict], labels, face: int = 0) -> go.Figure:
    """Per-frame scores of one face (by position, left to right) over time: one line per label.

    Frames where that face is absent leave a gap. `entries` have "time" (video) or are
    numbered in order (live stream history uses its own "time").
    """
    labels = list(labels)
    times = [e.get("time", i) for i, e in enumerate(entries)]
    fig = go.Figure()
    for name in labels:
        ys = [e["faces"][face]["scores"][name] if len(e["faces"]) > face else None for e in entries]
        fig.add_scatter(x=times, y=ys, mode="lines", name=name, line={"color": _rgb(name, labels)}, connectgaps=False)
    fig.update_layout(
        xaxis={"title": "time (s)"},
        yaxis={"range": [0, 1], "tickformat": ".0%", "title": f"face {face + 1} probability"},
        height=320,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "y": 1.12},
    )
    return fig


def emotion_strip(entries: list[dict], labels, face: int = 0) -> go.Figure:
    """The top emotion of one face per frame as coloured markers (a compact timeline)."""
    labels = list(labels)
    fig = go.Figure()
    for name in labels:
        pts = [
            (e.get("time", i), e["faces"][face]["scores"][name])
            for i, e in enumerate(entries)
            if len(e["faces"]) > face and e["faces"][face]["emotion"] == name
        ]
        if pts:
            fig.add_scatter(
                x=[p[0] for p in pts],
                y=[name] * len(pts),
                mode="markers",
                name=name,
                marker={"color": _rgb(name, labels), "size": 9},
                showlegend=False,
            )
    fig.update_layout(
        xaxis={"title": "time (s)"},
        yaxis={"categoryorder": "array", "categoryarray": labels[::-1]},
        height=80 + 22 * len(labels),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return fig


def live_history(history: list[dict], t0: float | None = None) -> list[dict]:
    """Live-stream queue items ({"time": wall clock, "faces": [...]}) with time relative to `t0` (or the first)."""
    if not history:
        return []
    start = t0 if t0 is not None else history[0]["time"]
    return [{"time": round(h["time"] - start, 3), "faces": h["faces"]} for h in history]
