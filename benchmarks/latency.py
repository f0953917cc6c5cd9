"""Inference latency: a 640x480 webcam-like frame end to end, and per-photo time against `fer`.

Usage::

    python benchmarks/latency.py [--photos ../shared/photos] [--model models/fer_resnet.keras] [--frames 200]

1. Live frame: the top of biden.jpg cropped to 4:3 and resized to 640x480 (one face, about
   200 px tall, as in front of a laptop camera), drifting a few pixels per frame, run through
   the Webcam page's pipeline (`fer_core.video.LiveAnnotator` with a `TrackingDetector`:
   detect, classify with tta "none", draw). Median, 90th percentile and mean over `--frames`
   frames; then the same with a full-frame search every frame, and each stage alone.
2. Photos: every photo in `--photos` through `Recognizer.predict_file` (photo detector, the
   card's TTA) and, when the `fer` package is importable, through `fer.fer.FER().detect_emotions`
   on the same decoded pixels, in the same process, alternating. Face counts are printed too.

This prints figures; it is not a test. The machine's load average is printed with them,
because on a shared 2-core box a background job changes every number.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def webcam_frame(photos: Path):
    """A 640x480 RGB frame with one face: the top of biden.jpg, cropped to 4:3."""
    import cv2

    from fer_core.images import decode_image

    rgb = decode_image(photos / "biden.jpg")
    h, w = rgb.shape[:2]
    top = rgb[: min(h, round(w * 3 / 4))]
    return cv2.resize(top, (640, 480), interpolation=cv2.INTER_AREA)


class Timings(list):
    """Wall-clock milliseconds per call, with the process CPU milliseconds (all threads) beside them."""

    cpu: list[float]


def timed(fn, n: int, warmup: int = 5) -> Timings:
    """Milliseconds per call of fn() over n calls after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = Timings()
    out.cpu = []
    for _ in range(n):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        out.append(1000.0 * (time.perf_counter() - t0))
        out.cpu.append(1000.0 * (time.process_time() - c0))
    return out


def alternating(fns: list, n: int) -> list[Timings]:
    """Time several callables in turn, n rounds after one warm-up each, so load changes hit all alike."""
    for fn in fns:
        fn()
    out = [Timings() for _ in fns]
    for t in out:
        t.cpu = []
    for _ in range(n):
        for fn, t in zip(fns, out, strict=True):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            t.append(1000.0 * (time.perf_counter() - t0))
            t.cpu.append(1000.0 * (time.process_time() - c0))
    return out


def summary(ms: Timings) -> str:
    q = statistics.quantiles(ms, n=10) if len(ms) >= 10 else [max(ms)] * 9
    return (
        f"median {statistics.median(ms):6.1f} ms   p90 {q[8]:6.1f} ms   mean {statistics.fmean(ms):6.1f} ms   "
        f"(CPU median {statistics.median(ms.cpu):5.1f} ms)"
    )


def load_fer():
    """fer's FER detector with its own Haar file (its default path breaks under OpenCV 5), or None."""
    from benchmarks.fer_peer import with_fer

    def detector(FER, cascade: Path):
        return FER(cascade_file=str(cascade)) if cascade.is_file() else FER()

    return with_fer("haarcascade_frontalface_default.xml", detector, "comparison skipped")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", default=str(REPO.parent / "shared" / "photos"))
    ap.add_argument("--model", default=None, help="default: models/fer_resnet.keras")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=9, help="runs per photo")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import cv2
    import keras
    import numpy as np

    from fer_core.constants import DEFAULT_DETECTOR
    from fer_core.drawing import annotate
    from fer_core.faces import TrackingDetector, create_detector
    from fer_core.hardware import cpu_summary
    from fer_core.images import decode_image, to_gray
    from fer_core.inference import Recognizer
    from fer_core.video import LiveAnnotator

    photos = Path(args.photos)
    if not (photos / "biden.jpg").is_file():
        print(f"{photos}: needs the shared photos (biden.jpg, ...); pass --photos DIR", file=sys.stderr)
        return 2
    print(f"CPU: {cpu_summary()}")
    print(
        f"cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.2f}  opencv {cv2.__version__} threads "
        f"{cv2.getNumThreads()}  keras {keras.__version__}"
    )

    # ---- 1. live frame
    live = Recognizer(args.model, tta="none", detector=create_detector(DEFAULT_DETECTOR, "webcam"))
    print(
        f"model {live.model_path}  crop {live.crop_size}  card tta {live.card.get('tta')}  "
        f"photo tta {live.card.get('photo_tta')}  detector {live.detector!r}  runtime {live.engine.runtime_for(1)}"
    )
    frame = webcam_frame(photos)
    gray = to_gray(frame)
    # The face drifts right and back, 0-24 px, so tracking has to follow it.
    drift = [np.roll(frame, 4 * abs(6 - i % 12), axis=1) for i in range(12)]
    step = iter(range(10**9))
    tracked = LiveAnnotator(
        live.with_detector(TrackingDetector(create_detector(DEFAULT_DETECTOR, "webcam"))), smooth=0.3
    )
    full = LiveAnnotator(live, smooth=0.3)
    print(f"\n640x480 frame, {len(live.predict_image(frame))} face(s), {args.frames} frames, tta none")
    ms = timed(lambda: tracked(drift[next(step) % 12]), args.frames)
    print(f"  end to end, as the Webcam page     {summary(ms)}")
    ms = timed(lambda: full(drift[next(step) % 12]), args.frames)
    print(f"  end to end, full search each frame {summary(ms)}")
    print(f"  detect only                        {summary(timed(lambda: live.detector.boxes(frame), args.frames))}")
    boxes = live.detector.boxes(frame)
    print(
        f"  classify only ({len(boxes)} face)           "
        f"{summary(timed(lambda: live.faces_from_boxes(gray, boxes), args.frames))}"
    )
    faces = live.faces_from_boxes(gray, boxes)
    print(f"  draw only                          {summary(timed(lambda: annotate(frame, faces), args.frames))}")
    fer = load_fer()
    if fer is not None:
        bgr_frame = np.ascontiguousarray(frame[..., ::-1])
        n_fer = len(fer.detect_emotions(bgr_frame))
        fer_ms = timed(lambda: fer.detect_emotions(bgr_frame), min(args.frames, 50))
        print(f"  fer.detect_emotions ({n_fer} face)     {summary(fer_ms)}  (detect+classify, no drawing)")

    # ---- 2. photos, side by side with fer
    rec = Recognizer(args.model)
    fast = rec.with_detector(rec.detector)
    fast.tta = "none"
    files = sorted(p for p in photos.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    print(
        f"\nper photo, wall ms, median of {args.repeat} (ours: photo detector with the card's tta {rec.tta}, and tta none)"
    )
    header = f"  {'photo':<20} {'size':>10} {'ours ms':>9} {'faces':>6} {'tta none':>9}"
    if fer is not None:
        header += f" {'fer ms':>9} {'faces':>6} {'speed-up':>9}"
    print(header)
    ours_all, fer_all = [], []
    for p in files:
        rgb = decode_image(p)
        bgr = np.ascontiguousarray(rgb[..., ::-1])  # fer takes OpenCV's BGR order
        fns = [lambda rgb=rgb: rec.predict_image(rgb), lambda rgb=rgb: fast.predict_image(rgb)]
        if fer is not None:
            fns.append(lambda bgr=bgr: fer.detect_emotions(bgr))
        ours, ours_none, *rest = alternating(fns, args.repeat)
        n_ours = len(rec.predict_image(rgb))
        line = f"  {p.name:<20} {rgb.shape[1]:>4}x{rgb.shape[0]:<5} {statistics.median(ours):9.1f} {n_ours:6d}"
        line += f" {statistics.median(ours_none):9.1f}"
        ours_all.append(statistics.median(ours))
        if fer is not None:
            theirs = rest[0]
            n_fer = len(fer.detect_emotions(bgr))
            fer_all.append(statistics.median(theirs))
            line += f" {statistics.median(theirs):9.1f} {n_fer:6d} {statistics.median(theirs) / statistics.median(ours):8.1f}x"
        print(line)
    if fer_all:
        print(f"  total: ours {sum(ours_all):.0f} ms, fer {sum(fer_all):.0f} ms ({sum(fer_all) / sum(ours_all):.1f}x)")
    print(f"\nload average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
