"""``python -m fer_core predict IMAGE_OR_VIDEO... [--model PATH] [--json OUT]``.

Output (``--json``): a list with, per image, ``{"image": path, "faces": [{"box": [x, y, w, h],
"emotion": name, "scores": {name: p}, "landmarks": {name: [x, y]}}]}``; per video, one such entry per analysed frame,
with ``"time"`` (seconds) and ``"frame"`` (index) added. An input that cannot be read gets
``{"image": path, "error": message, "faces": []}``; the others are still analysed.

Exit code: 0 when every input was read, 1 when some were not, 2 when none was.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fer_core.cli.common import add_json_option, add_model_option, add_tta_option, raise_json_is_folder, write_json
from fer_core.constants import DEFAULT_DETECTOR
from fer_core.errors import UsageError
from fer_core.faces import DETECTORS, create_detector
from fer_core.images import ImageError, decode_image
from fer_core.inference import Recognizer
from fer_core.video import VideoError, analyse_video, is_video


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``predict`` sub-command."""
    p = subparsers.add_parser("predict", help="find faces and their emotions in images or videos")
    p.add_argument(
        "inputs", nargs="+", metavar="IMAGE_OR_VIDEO", help="image (jpg, png, ...) or video (mp4, webm, avi)"
    )
    add_model_option(p)
    add_json_option(p, "the results")
    add_tta_option(p, default=None)
    p.add_argument("--every", type=float, default=0.5, help="videos: seconds between analysed frames (default 0.5)")
    p.add_argument(
        "--detector",
        choices=tuple(DETECTORS),
        default=DEFAULT_DETECTOR,
        help=f"face detector (default {DEFAULT_DETECTOR})",
    )
    p.add_argument("--min-face", type=float, help="smallest face, fraction of the shorter side (default: the preset's)")
    p.add_argument(
        "--max-side", type=int, help="haar only: search photos at this working size (px); raise it for small faces"
    )
    p.add_argument(
        "--align",
        action=argparse.BooleanOptionalAction,
        help="rotate each face so its eyes are level before classifying (default on; needs blazeface)",
    )
    p.add_argument("--whole-image", action="store_true", help="treat each image as one face crop (no detection)")
    p.set_defaults(func=cmd_predict)
    return p


def cmd_predict(args) -> int:
    """Run the recogniser on every input; print a summary and optionally write JSON."""
    missing = [p for p in args.inputs if not Path(p).is_file()]
    if len(missing) == len(args.inputs):  # nothing to do: say so before loading the model
        raise UsageError(
            f"{missing[0]}: no such file." + (f" ({len(missing) - 1} more missing)" if len(missing) > 1 else "")
        )
    if args.every < 0:
        raise UsageError(f"--every must be 0 or more seconds. Received: {args.every}")
    if args.max_side is not None and args.detector != "haar":
        raise UsageError(f"--max-side applies to --detector haar only. Received: --detector {args.detector}")
    if args.json and Path(args.json).is_dir():
        raise_json_is_folder(args.json, "predictions.json")
    detector = create_detector(args.detector, min_face=args.min_face, max_side=args.max_side)
    rec = Recognizer(args.model, tta=args.tta, detector=detector, align=args.align)
    results: list[dict] = []
    failed = 0
    for path in args.inputs:
        # One bad file must not cost the others their results: its error is printed, kept in
        # the JSON as {"image", "error", "faces": []}, and the exit code says some failed.
        try:
            if is_video(path):
                entries = analyse_video(path, rec, every=args.every)
                with_face = sum(1 for e in entries if e["faces"])
                print(f"{path}: {len(entries)} frames analysed, {with_face} with a face")
                results.extend(entries)
                continue
            if args.whole_image:
                entry = {"image": path, "faces": [rec.predict_crop(decode_image(path)).to_json()]}
            else:
                entry = rec.predict_file(path)
        except (ImageError, VideoError) as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            results.append({"image": path, "error": str(exc), "faces": []})
            continue
        print(_summary(entry))
        results.append(entry)
    if args.json:
        write_json(args.json, results)
    sys.stdout.flush()
    if failed and len(args.inputs) > 1:
        print(f"error: {failed} of {len(args.inputs)} inputs could not be read (listed above).", file=sys.stderr)
    return 0 if not failed else 2 if failed == len(args.inputs) else 1


def _summary(entry: dict) -> str:
    faces = entry["faces"]
    if not faces:
        return f"{entry['image']}: no face found"
    parts = [f"{f['emotion']} {100 * f['scores'][f['emotion']]:.0f}% at {f['box']}" for f in faces]
    return f"{entry['image']}: {len(faces)} face{'s' if len(faces) != 1 else ''}: " + "; ".join(parts)
