"""End to end in a real browser: headless Chromium with a fake camera fed from a photo, the Webcam page
over streamlit-webrtc on loopback (no STUN server), the page's readout reporting the face, and the
page keeping up with the camera after 30 s.

Needs Debian's `chromium` (run.sh installs it as root); skipped with a reason where it is absent.
Driven by Python playwright with `executable_path` (playwright's own browser downloads are not used).
The helpers are benchmarks/webcam_browser.py's, which runs the same page for minutes and prints figures.
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from benchmarks.webcam_browser import CHROMIUM, camera_picture, read_readout, streamlit_server, summarise, webcam_page
from benchmarks.webcam_browser import write_y4m as write_y4m
from tests.conftest import REPO

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]


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


@pytest.mark.timeout(600)
def test_webcam_page_sees_a_face_and_keeps_up_in_a_real_browser(tmp_path):
    trace = tmp_path / "trace.jsonl"
    env = {"FER_LIVE_TRACE": str(trace)}
    if not (REPO / "models" / "fer_resnet.keras").is_file():
        from tests.conftest import make_tiny_model

        env["FER_MODEL"] = str(make_tiny_model(tmp_path / "model"))
    y4m = write_y4m(tmp_path / "face.y4m", camera_picture())
    log = tmp_path / "streamlit.log"
    with streamlit_server(log, env) as (url, _), webcam_page(url, y4m) as page:
        try:
            faces, fps, text = read_readout(page)
        except Exception as exc:
            body = page.inner_text("body")[-1500:]
            raise AssertionError(
                f"no readout: {exc}\n--- page ---\n{body}\n--- server ---\n{log.read_text()[-1500:]}"
            ) from None
        assert faces >= 1 and fps > 0, text
        assert re.search(r"Model: fer_resnet\.keras|Model: tiny\.keras", page.inner_text("body"))
        time.sleep(30)
        _, _, text = read_readout(page, 30_000)
    rows = [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]
    late = summarise(rows, window=10.0)
    print(f"browser readout after 30 s: {text}; last 10 s of the trace: {late}")
    # A 15 fps camera: the page must analyse at least 10 frames per second after 30 s, with no backlog.
    assert late["fps"] >= 10, late
    assert late["queueing_ms_p90"] < 500, late
