"""Video files: sample frames at a fixed interval and run the recogniser on each.

Decoding goes through PyAV (``av``, already required by streamlit-webrtc), which reads
mp4, webm, avi, mov and mkv from a path or from bytes, and gives each frame's time.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from fer_core.drawing import annotate
from fer_core.errors import FerError
from fer_core.images import MAX_PIXELS
from fer_core.inference import EmotionSmoother, Recognizer

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg"})
# Longer videos are analysed up to this many sampled frames (and say so), so an upload
# cannot keep the app busy for an hour.
MAX_FRAMES = 600


class VideoError(FerError, ValueError):
    """A user-supplied video that cannot be used; the message says why and what to do."""


def is_video(path: str | Path) -> bool:
    """True when the file name has a video extension."""
    return Path(str(path)).suffix.lower() in VIDEO_EXTENSIONS


def iter_frames(
    source: str | Path | bytes,
    every: float = 0.5,
    *,
    max_frames: int = MAX_FRAMES,
    name: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> Iterator[tuple[float, int, np.ndarray]]:
    """Yield (time in seconds, frame index, RGB uint8 frame), one frame per `every` seconds.

    Args:
        source: a video file path or its bytes.
        every: seconds between analysed frames (0 = every frame).
        max_frames: stop after this many yielded frames.
        name: what to call the video in error messages.
        progress: called with the fraction of the video done (0-1) after each yielded frame.

    Raises:
        VideoError: not a video, no video stream, frames above the pixel limit, or corrupt data.
    """
    import av

    label = name or ("upload" if isinstance(source, bytes | bytearray) else str(source))
    if isinstance(source, bytes | bytearray):
        if not source:
            raise VideoError(f"{label}: the file is empty (0 bytes).")
        fp = io.BytesIO(source)
    else:
        if not Path(source).is_file():
            raise VideoError(f"{label}: no such file.")
        if Path(source).stat().st_size == 0:
            raise VideoError(f"{label}: the file is empty (0 bytes).")
        fp = str(source)
    try:
        container = av.open(fp, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{label}: not a video file or unreadable ({type(exc).__name__}).") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{label}: the file has no video stream.")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        w, h = stream.codec_context.width, stream.codec_context.height
        if w * h > MAX_PIXELS:
            raise VideoError(f"{label}: {w}x{h} frames are above the {MAX_PIXELS / 1e6:.0f} MP limit.")
        duration = _duration(container, stream)
        next_t, n = 0.0, 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                t = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 25)
                if t + 1e-6 < next_t:
                    continue
                yield t, index, frame.to_ndarray(format="rgb24")
                n += 1
                next_t = t + every if every > 0 else t
                if progress is not None and duration:
                    progress(min(1.0, t / duration))
                if n >= max_frames:
                    break
        except av.error.FFmpegError as exc:
            if n == 0:
                raise VideoError(
                    f"{label}: the video is corrupt or in a codec this build cannot read ({exc})."
                ) from None
            # A truncated file: keep what was decoded before the damage.
    if n == 0:
        raise VideoError(f"{label}: no frames could be decoded.")
    if progress is not None:
        progress(1.0)


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # av.time_base is microseconds
    return None


def analyse_video(
    source: str | Path | bytes,
    recognizer: Recognizer,
    *,
    every: float = 0.5,
    max_frames: int = MAX_FRAMES,
    name: str | None = None,
    smooth: float | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[dict]:
    """Per-frame emotions of a video.

    Args:
        source: a video file path or its bytes.
        recognizer: the `Recognizer` to run on each sampled frame.
        every: seconds between analysed frames.
        max_frames: analyse at most this many frames.
        name: the name to report (default: the path, or "upload").
        smooth: EMA weight of the newest frame for per-face smoothing (None = off).
        progress: called with the fraction done (0-1).

    Returns:
        One dict per analysed frame: ``{"image": name, "time": s, "frame": index, "faces": [...]}``.
    """
    label = name or ("upload" if isinstance(source, bytes | bytearray) else str(source))
    smoother = EmotionSmoother(alpha=smooth) if smooth else None
    out = []
    for t, index, rgb in iter_frames(source, every, max_frames=max_frames, name=label, progress=progress):
        faces = recognizer.predict_image(rgb)
        if smoother is not None:
            faces = smoother.update(faces)
        out.append({"image": label, "time": round(t, 3), "frame": index, "faces": [f.to_json() for f in faces]})
    return out


class LiveAnnotator:
    """The per-frame work of a live stream: recognise, smooth, draw, and record timings.

    Call it from the thread that receives frames (streamlit-webrtc's `video_frame_callback`);
    read `stats()` and drain `queue` from any other thread. It never touches Streamlit.

    Args:
        recognizer: the `Recognizer` (use a fast detector and tta "none" for live video).
        smooth: EMA weight of the newest frame (None = smoothing off).
        window: how many recent frames the FPS and latency figures cover.
        queue_size: at most this many unread results are kept (older ones are dropped).
        trace: a file to append one JSON line per frame to (wall time, latency_ms, lag_ms, faces),
            for benchmarks (``benchmarks/webcam_browser.py`` reads it); None = no trace.
    """

    def __init__(
        self,
        recognizer: Recognizer,
        *,
        smooth: float | None = 0.3,
        window: int = 30,
        queue_size: int = 600,
        trace: str | Path | None = None,
    ):
        self.recognizer = recognizer
        self._trace = Path(trace) if trace else None
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._smooth = smooth
        self._smoother = EmotionSmoother(alpha=smooth) if smooth else None
        self._latencies: collections.deque = collections.deque(maxlen=window)
        self._lags: collections.deque = collections.deque(maxlen=window)
        self._stamps: collections.deque = collections.deque(maxlen=window + 1)
        self._offset: float | None = None  # smallest (arrival - capture) clock offset seen: the lag's zero
        self._frames = 0
        self._faces: list = []
        self._error: str | None = None

    def set_smoothing(self, smooth: float | None) -> None:
        """Turn smoothing on (EMA weight) or off (None); safe from another thread."""
        with self._lock:
            if smooth != self._smooth:
                self._smooth = smooth
                self._smoother = EmotionSmoother(alpha=smooth) if smooth else None

    def __call__(self, rgb: np.ndarray, frame_time: float | None = None) -> np.ndarray:
        """Annotate one RGB uint8 frame; returns a new annotated frame.

        Args:
            rgb: the frame.
            frame_time: the frame's capture time in seconds on the stream's own clock (PyAV's
                ``frame.time``). With it, `stats()` reports the lag: how much later than the
                stream's fastest frame this one reached the annotator. A lag that grows means
                frames queue up somewhere before the annotator; a steady one means they do not.
        """
        t0 = time.perf_counter()
        try:
            faces = self.recognizer.predict_image(rgb)
        except Exception as exc:  # noqa: BLE001 - a bad frame must not kill the stream; the page shows it
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}"
            return rgb
        with self._lock:
            smoother = self._smoother
        if smoother is not None:
            faces = smoother.update(faces)
        out = annotate(rgb, faces, self.recognizer.labels)
        t1 = time.perf_counter()
        with self._lock:
            self._frames += 1
            self._faces = faces
            self._latencies.append(1000.0 * (t1 - t0))
            self._stamps.append(t1)
            self._error = None
            lag = None
            if frame_time is not None:
                offset = t0 - float(frame_time)
                self._offset = offset if self._offset is None else min(self._offset, offset)
                lag = 1000.0 * (offset - self._offset)
                self._lags.append(lag)
        if self._trace is not None:
            row = {"time": time.time(), "latency_ms": round(1000.0 * (t1 - t0), 2), "faces": len(faces)}
            row["lag_ms"] = None if lag is None else round(lag, 2)
            with self._trace.open("a") as f:
                f.write(json.dumps(row) + "\n")
        # Nobody reading (page closed)? Drop rather than grow.
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait({"time": time.time(), "faces": [f.to_json() for f in faces]})
        return out

    def stats(self) -> dict:
        """{"frames", "faces", "fps", "latency_ms" (median of recent frames), "lag_ms" (median; None
        without frame times), "emotions", "error"}."""
        with self._lock:
            lat = sorted(self._latencies)
            lags = sorted(self._lags)
            stamps = list(self._stamps)
            faces = list(self._faces)
            out = {"frames": self._frames, "error": self._error}
        out["faces"] = len(faces)
        out["emotions"] = [f.emotion for f in faces]
        out["latency_ms"] = lat[len(lat) // 2] if lat else None
        out["lag_ms"] = lags[len(lags) // 2] if lags else None
        span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
        out["fps"] = (len(stamps) - 1) / span if span > 0 else None
        return out

    def drain(self, limit: int = 1000) -> list[dict]:
        """Take up to `limit` unread per-frame results off the queue (oldest first)."""
        items = []
        for _ in range(limit):
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return items
