"""Uploads: slow bodies time out, decoding big pictures does not multiply memory, exotic files are 400."""

from __future__ import annotations

import io
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fer_core.serve import ServeLimits, create_app  # noqa: E402

from .conftest import REPO, make_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory):
    from fer_core.inference import Recognizer

    return Recognizer(make_tiny_model(tmp_path_factory.mktemp("model")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(recognizer):
    """The API on a real socket (uvicorn in a thread), with a 1 s upload timeout."""
    import uvicorn

    port = _free_port()
    app = create_app(recognizer, limits=ServeLimits(upload_timeout_s=1.0, workers=1, max_waiting=2))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.time() + 20
    while not server.started and time.time() < end:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def test_a_slow_upload_gets_408_and_the_connection_is_closed(live_server):
    with socket.create_connection(("127.0.0.1", live_server), timeout=10) as s:
        s.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\n"
        )
        t0 = time.time()
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        waited = time.time() - t0
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"longer than 1 s" in reply and 0.8 < waited < 5


def test_an_exotic_dds_upload_is_400_not_500(recognizer):
    dds = b"DDS " + struct.pack("<I", 124) + struct.pack("<3I", 0x1007, 48, 48) + bytes(108)
    with TestClient(create_app(recognizer), raise_server_exceptions=False) as client:
        r = client.post("/predict", files={"file": ("texture.dds", dds, "image/vnd-ms.dds")})
    assert r.status_code == 400 and "not supported" in r.json()["detail"]


MEASURE = """
import resource, sys
from fer_core.images import decode_image, to_gray
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
gray = to_gray(decode_image(sys.argv[1]))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_small_png_of_62_megapixels_does_not_multiply_memory(tmp_path):
    big = tmp_path / "big.png"
    Image.new("L", (7874, 7874), 90).save(big)  # ~80 KB on disk, 62 MP
    assert big.stat().st_size < 300_000
    r = subprocess.run(
        [sys.executable, "-c", MEASURE, str(big)], capture_output=True, text=True, cwd=REPO, timeout=120, check=True
    )
    grown_mb = int(r.stdout.strip().splitlines()[-1])
    # The RGB result alone is 186 MB; decoding plus the gray conversion took ~1.6 GB more before.
    assert grown_mb < 450, f"peak RSS grew by {grown_mb} MB"


def test_banded_conversions_give_the_same_pixels():
    from fer_core import images

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)
    old = np.clip(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) + 0.5, 0, 255).astype(np.uint8)
    saved = images._GRAY_BAND_PIXELS
    images._GRAY_BAND_PIXELS = 50  # bands of one or two rows
    try:
        assert np.array_equal(images.to_gray(rgb), old)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        assert np.array_equal(images.decode_image(buf.getvalue()), rgb)
    finally:
        images._GRAY_BAND_PIXELS = saved
