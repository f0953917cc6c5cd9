"""End to end in a real browser: headless Chromium with a fake camera fed from a photo, the Webcam page
over streamlit-webrtc on loopback (no STUN server), and the page's readout reporting the face.

Needs Debian's `chromium` (run.sh installs it as root); skipped with a reason where it is absent.
Driven by Python playwright with `executable_path` (playwright's own browser downloads are not used).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, SHARED_PHOTOS

CHROMIUM = Path(os.environ.get("FER_CHROMIUM", "/usr/bin/chromium"))
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]


def write_y4m(path: Path, rgb: np.ndarray, frames: int = 15, fps: int = 15) -> Path:
    """A YUV4MPEG2 file (what Chromium's fake camera reads) repeating one RGB picture; I420, no ffmpeg."""
    import cv2

    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"I420 needs even sides. Received: {w}x{h}")
    i420 = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420).tobytes()
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for _ in range(frames):
            f.write(b"FRAME\n")
            f.write(i420)
    return path


def camera_picture() -> np.ndarray:
    """640x480 with one face: the shared biden.jpg's top, or, without ../shared, a bundled FER face enlarged."""
    import cv2

    from fer_core.images import decode_image

    if (SHARED_PHOTOS / "biden.jpg").is_file():
        rgb = decode_image(SHARED_PHOTOS / "biden.jpg")
        return cv2.resize(rgb[: rgb.shape[1] * 3 // 4], (640, 480), interpolation=cv2.INTER_AREA)
    face = decode_image(next((REPO / "data" / "sample" / "train" / "happy").glob("*.jpg")))
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[60:420, 140:500] = cv2.resize(face, (360, 360), interpolation=cv2.INTER_CUBIC)
    return canvas


def test_y4m_writer_round_trip(tmp_path):
    import cv2

    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :3] = (255, 0, 0)
    data = write_y4m(tmp_path / "t.y4m", rgb, frames=2).read_bytes()
    header, rest = data.split(b"\n", 1)
    assert header == b"YUV4MPEG2 W6 H4 F15:1 Ip A1:1 C420jpeg"
    frame_len = 6 * 4 * 3 // 2
    assert rest == (b"FRAME\n" + rest[6 : 6 + frame_len]) * 2
    back = cv2.cvtColor(np.frombuffer(rest[6 : 6 + frame_len], np.uint8).reshape(6, 6), cv2.COLOR_YUV2RGB_I420)
    assert back[0, 0, 0] > 200 and back[0, 5, 0] < 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"streamlit did not answer at {url} within {timeout:.0f} s")


@pytest.fixture
def webcam_server(tmp_path):
    """`streamlit run` on a free loopback port; yields the Webcam page's URL."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "FER_ICE_SERVERS": ""}
    if not (REPO / "models" / "fer_resnet.keras").is_file():
        from tests.test_inference import make_tiny_model

        env["FER_MODEL"] = str(make_tiny_model(tmp_path / "model"))
    home = REPO / "Home.py"
    script, path = (home, "/Webcam") if home.is_file() else (REPO / "pages" / "5_Webcam.py", "/")
    port = _free_port()
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=90)
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


@pytest.mark.timeout(600)
def test_webcam_page_sees_a_face_in_a_real_browser(tmp_path, webcam_server):
    from playwright.sync_api import sync_playwright

    y4m = write_y4m(tmp_path / "face.y4m", camera_picture())
    args = [
        "--no-sandbox",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-gpu",
    ]
    log = tmp_path / "streamlit.log"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            context = browser.new_context(permissions=["camera"])
            page = context.new_page()
            page.goto(webcam_server, timeout=90_000)
            start = page.frame_locator("iframe").first.get_by_role("button", name=re.compile("start", re.I))
            start.click(timeout=120_000)
            # At least one face, and an FPS figure: several frames went through the callback.
            readout = page.get_by_text(re.compile(r"Faces in view: [1-9].*FPS: \d"))
            try:
                readout.first.wait_for(timeout=90_000)
            except Exception as exc:
                body = page.inner_text("body")[-1500:]
                tail = log.read_text()[-1500:] if log.exists() else ""
                raise AssertionError(f"no face reported: {exc}\n--- page ---\n{body}\n--- server ---\n{tail}") from None
            text = readout.first.inner_text()
            assert int(re.search(r"Faces in view: (\d+)", text).group(1)) >= 1
            assert float(re.search(r"FPS: ([\d.]+)", text).group(1)) > 0
            print(f"browser readout: {text}")
        finally:
            browser.close()
