"""The Webcam page in a real browser for minutes: sustained FPS, latency and queueing, server CPU.

Usage::

    python benchmarks/webcam_browser.py [--seconds 120] [--model models/fer_resnet.keras] [--json OUT]

Starts `streamlit run Home.py` on a free loopback port, opens the Webcam page in headless
Chromium whose fake camera plays a 640x480 picture with one face at 15 fps (made from
../shared/photos/biden.jpg, or a bundled FER face without ../shared), presses START and
lets it run. The page's annotator appends one line per analysed frame to a trace file
(``FER_LIVE_TRACE``): from it come the frames per second over the last 60 s, the
per-frame latency (detect + classify + draw) and queueing (how much later than the
stream's fastest frame each frame reached the annotator; it grows when frames pile up),
their 50th/90th percentiles, and the trend of queueing between the first and last thirds
of the last 60 s. Server CPU is read from /proc for the streamlit process.

Needs Debian's `chromium` and Python `playwright` (requirements-dev.txt). This prints
figures; it is not a test (tests/test_webcam_browser.py is, with a looser bound).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CHROMIUM = Path(os.environ.get("FER_CHROMIUM", "/usr/bin/chromium"))
SHARED_PHOTOS = Path(os.environ.get("FER_SHARED", REPO.parent / "shared")) / "photos"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-gpu",
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"streamlit did not answer at {url} within {timeout:.0f} s")


@contextlib.contextmanager
def streamlit_server(log_path: Path, env: dict | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamlit run Home.py` on a free loopback port; yields (Webcam page URL, process)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "FER_ICE_SERVERS": "", **(env or {})}
    port = free_port()
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(REPO / "Home.py"),
        "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=90)
            yield f"http://127.0.0.1:{port}/Webcam", proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@contextlib.contextmanager
def webcam_page(url: str, y4m: Path) -> Iterator:
    """A headless Chromium page on the Webcam page with the fake camera playing `y4m`, START pressed."""
    from playwright.sync_api import sync_playwright

    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={y4m}"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            page = browser.new_context(permissions=["camera"]).new_page()
            page.goto(url, timeout=90_000)
            start = page.frame_locator("iframe").first.get_by_role("button", name=re.compile("start", re.I))
            start.click(timeout=120_000)
            yield page
        finally:
            browser.close()


READOUT = re.compile(r"Faces in view: (\d+).*FPS: ([\d.]+)")


def read_readout(page, timeout_ms: int = 90_000) -> tuple[int, float, str]:
    """(faces, FPS, text) from the page's readout line, once it reports an FPS figure."""
    line = page.get_by_text(re.compile(r"Faces in view: \d+.*FPS: \d")).first
    line.wait_for(timeout=timeout_ms)
    text = line.inner_text()
    m = READOUT.search(text)
    return int(m.group(1)), float(m.group(2)), text


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def summarise(rows: list[dict], window: float = 60.0) -> dict:
    """Figures of the trace's last `window` seconds: FPS, latency and queueing percentiles, queueing trend."""
    end = rows[-1]["time"]
    last = [r for r in rows if r["time"] >= end - window]
    lat = np.array([r["latency_ms"] for r in last])
    lag = np.array([r["lag_ms"] for r in last if r.get("lag_ms") is not None] or [np.nan])
    total = lat + (lag if len(lag) == len(lat) else 0.0)
    third = max(1, len(last) // 3)
    first_lag = [r["lag_ms"] for r in last[:third] if r.get("lag_ms") is not None]
    last_lag = [r["lag_ms"] for r in last[-third:] if r.get("lag_ms") is not None]
    span = last[-1]["time"] - last[0]["time"]
    return {
        "frames": len(last),
        "fps": (len(last) - 1) / span if span > 0 else None,
        "latency_ms_p50": float(np.percentile(lat, 50)),
        "latency_ms_p90": float(np.percentile(lat, 90)),
        "queueing_ms_p50": float(np.nanpercentile(lag, 50)),
        "queueing_ms_p90": float(np.nanpercentile(lag, 90)),
        "total_ms_p50": float(np.percentile(total, 50)),
        "total_ms_p90": float(np.percentile(total, 90)),
        "queueing_drift_ms": float(np.median(last_lag) - np.median(first_lag)) if first_lag and last_lag else None,
        "frames_with_face": float(np.mean([r["faces"] > 0 for r in last])),
    }


def main(argv: list[str] | None = None) -> int:
    from fer_core.hardware import cpu_summary

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="how long the camera runs after START")
    ap.add_argument("--model", help="model file (default: the shipped one)")
    ap.add_argument("--fps", type=int, default=15, help="the fake camera's frame rate")
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument("--workdir", default="/tmp/fer-webcam-bench", help="trace, logs and the camera file go here")
    args = ap.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} not found; apt-get install chromium", file=sys.stderr)
        return 2
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    trace = work / "trace.jsonl"
    trace.unlink(missing_ok=True)
    y4m = write_y4m(work / "face.y4m", camera_picture(), frames=args.fps, fps=args.fps)
    env = {"FER_LIVE_TRACE": str(trace)}
    if args.model:
        env["FER_MODEL"] = str(Path(args.model).resolve())
    print(f"CPU: {cpu_summary()}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with streamlit_server(work / "streamlit.log", env) as (url, proc), webcam_page(url, y4m) as page:
        faces, fps, text = read_readout(page)
        t0, cpu0 = time.monotonic(), _cpu_seconds(proc.pid)
        print(f"first readout: {text}")
        while time.monotonic() - t0 < args.seconds:
            time.sleep(min(10.0, args.seconds - (time.monotonic() - t0)))
            _, _, text = read_readout(page, 30_000)
            print(f"  {time.monotonic() - t0:5.0f} s  {text}", flush=True)
        cpu = 100.0 * (_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        page.screenshot(path=str(work / "webcam.png"), full_page=True)
    rows = [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]
    figures = {"cpu": cpu_summary(), "seconds": args.seconds, "camera_fps": args.fps, **summarise(rows)}
    figures["server_cpu_percent"] = cpu
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(
        f"last 60 s: {figures['fps']:.1f} FPS ({figures['frames']} frames analysed, "
        f"{100 * figures['frames_with_face']:.0f}% with a face) from a {args.fps} fps camera\n"
        f"  latency (detect+classify+draw) p50 {figures['latency_ms_p50']:.1f} ms, p90 {figures['latency_ms_p90']:.1f} ms\n"
        f"  queueing before analysis     p50 {figures['queueing_ms_p50']:.1f} ms, p90 {figures['queueing_ms_p90']:.1f} ms"
        f" (drift over the minute {figures['queueing_drift_ms']:+.1f} ms)\n"
        f"  latency + queueing           p50 {figures['total_ms_p50']:.1f} ms, p90 {figures['total_ms_p90']:.1f} ms\n"
        f"  server CPU {cpu:.0f}% of one core (streamlit process, all threads); screenshot {work / 'webcam.png'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
