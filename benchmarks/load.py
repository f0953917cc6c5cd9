"""Load benchmark for ``python -m fer_core serve``: concurrent ``POST /predict`` on loopback.

Starts the server as a subprocess on 127.0.0.1 (a free port), warms it up, then sends
requests from `--concurrency` clients until `--requests` are done or `--duration` seconds
pass, whichever comes first. Prints requests/s, p50/p99 latency, the error count and the
server's resident memory (RSS) after warm-up, half-way and at the end, so a leak shows as
growth between the last two. It prints figures; it is not a test.

    .venv/bin/python benchmarks/load.py                      # shared photos if present
    .venv/bin/python benchmarks/load.py --model runs/x/model.keras --concurrency 4 --requests 100
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED_PHOTOS = Path(os.environ.get("FER_SHARED", REPO.parent / "shared")) / "photos"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def payloads(images: list[str]) -> list[tuple[str, bytes]]:
    """The uploads to cycle through: given files, else the shared photos, else a framed sample face."""
    paths = [Path(p) for p in images] or sorted(SHARED_PHOTOS.glob("*.jpg"))
    if paths:
        return [(p.name, p.read_bytes()) for p in paths]
    import cv2
    import numpy as np
    from PIL import Image

    face = cv2.imread(str(REPO / "data/sample/test/happy/PublicTest_2392481.jpg"), cv2.IMREAD_GRAYSCALE)
    canvas = np.full((320, 400), 128, np.uint8)
    canvas[60:260, 100:300] = cv2.resize(face, (200, 200), interpolation=cv2.INTER_CUBIC)
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    return [("framed_face.png", buf.getvalue())]


def start_server(port: int, model: str | None, workers: int | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fer_core", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if model:
        cmd += ["--model", model]
    if workers:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    # A file, not a pipe: an unread pipe fills up and would block the server's logging.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the server runs
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
    proc.log = log
    return proc


def wait_ready(proc: subprocess.Popen, base: str, timeout: float = 180.0) -> dict:
    import httpx2 as httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc.log.seek(0)
            err = proc.log.read().decode(errors="replace").strip().splitlines()
            raise SystemExit(f"error: the server exited ({proc.returncode}): {err[-1] if err else 'no output'}")
        try:
            r = httpx.get(base + "/health", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"error: the server did not answer /health within {timeout:.0f} s.")


async def run_load(base: str, uploads, concurrency: int, total: int, duration: float, on_half) -> dict:
    import httpx2 as httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    half_done = False
    stop_at = time.monotonic() + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal sent, half_done
            while sent < total and time.monotonic() < stop_at:
                name, data = uploads[sent % len(uploads)]
                sent += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/predict", files={"file": (name, data, "application/octet-stream")})
                    key = None if r.status_code == 200 else f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                if key:
                    errors[key] = errors.get(key, 0) + 1
                if not half_done and len(latencies) >= total // 2:
                    half_done = True
                    on_half()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"latencies": latencies, "errors": errors, "wall": wall}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model for the server (default: the shipped model)")
    p.add_argument("--image", action="append", default=[], help="upload this file (repeatable)")
    p.add_argument("--concurrency", type=int, default=8, help="simultaneous clients (default 8)")
    p.add_argument("--requests", type=int, default=300, help="measured requests at most (default 300)")
    p.add_argument("--duration", type=float, default=90.0, help="measured seconds at most (default 90)")
    p.add_argument("--warmup", type=int, default=6, help="unmeasured requests first (default 6)")
    p.add_argument("--workers", type=int, help="server inference threads (default: the server's)")
    args = p.parse_args(argv)
    if args.concurrency < 1 or args.requests < 1 or args.duration <= 0:
        p.error("--concurrency and --requests must be 1 or more, --duration above 0")

    from fer_core.hardware import cpu_summary

    print(f"CPU: {cpu_summary()}")
    uploads = payloads(args.image)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t_start = time.monotonic()
    proc = start_server(port, args.model, args.workers)
    try:
        health = wait_ready(proc, base)
        print(
            f"server pid {proc.pid} on {base}: model {health['model']} ({health['version']}), "
            f"ready in {time.monotonic() - t_start:.1f} s, limits {health['limits']}"
        )
        print(f"uploads: {', '.join(f'{n} ({len(d) / 1e3:.0f} kB)' for n, d in uploads)}")
        asyncio.run(run_load(base, uploads, 1, args.warmup, 120, lambda: None))
        rss = {"after warm-up": rss_mb(proc.pid)}
        samples: list[float] = []

        async def sampled():
            async def sample():
                while True:
                    samples.append(rss_mb(proc.pid))
                    await asyncio.sleep(0.5)

            task = asyncio.create_task(sample())
            try:
                return await run_load(
                    base,
                    uploads,
                    args.concurrency,
                    args.requests,
                    args.duration,
                    lambda: rss.__setitem__("half-way", rss_mb(proc.pid)),
                )
            finally:
                task.cancel()

        result = asyncio.run(sampled())
        rss["end"] = rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    lat = result["latencies"]
    n, errs = len(lat), sum(result["errors"].values())
    print(f"requests: {n} in {result['wall']:.1f} s with {args.concurrency} clients -> {n / result['wall']:.2f} req/s")
    print(
        f"latency: p50 {1000 * percentile(lat, 50):.0f} ms, p99 {1000 * percentile(lat, 99):.0f} ms, "
        f"max {1000 * max(lat, default=float('nan')):.0f} ms"
    )
    print(f"errors: {errs}" + (f" {result['errors']}" if errs else ""))
    print(
        "server RSS MB: "
        + ", ".join(f"{k} {v:.0f}" for k, v in rss.items())
        + f"; peak while loaded {max(samples, default=float('nan')):.0f}"
        + f"; growth half-way -> end {rss['end'] - rss.get('half-way', rss['end']):+.1f}"
    )
    return 0 if errs == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
