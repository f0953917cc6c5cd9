"""Does levelling the eyes before the 48x48 crop help? FER-2013 val faces rotated, and the shared photos rotated.

Usage::

    python benchmarks/alignment.py [--fer ../shared/fer2013] [--photos ../shared/photos] [--limit 1000]
                                   [--model models/fer_resnet.keras] [--tta none]

1. FER-2013 val (the PublicTest_* files, the first `--limit` by file name): each 48x48 face
   is enlarged to 192 px, framed by 48 px of repeated edge, and turned by -30, -15, 0, +15,
   +30 degrees. The known face box is then cropped three ways: as is ("none"), rotated by
   the eye angle BlazeFace finds on the turned picture ("aligned"; no detection -> as is),
   and rotated back by the true angle ("known angle", the ceiling). Accuracy of each.
2. The shared photos, turned by the same angles about each labelled face: the face is
   detected, classified with and without alignment, and compared with the upright photo's
   prediction (same top emotion, and the total-variation distance of the scores). There is
   no ground-truth emotion for these photos, so agreement with the upright face is the measure.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ANGLES = (-30, -15, 0, 15, 30)
BORDER = 48  # px of repeated edge around the 192 px face, so rotation does not bring in black corners


def turned(gray: np.ndarray, angle: float, centre: tuple[float, float]) -> np.ndarray:
    """The picture turned by `angle` degrees (OpenCV's sign: positive is counter-clockwise) about `centre`."""
    import cv2

    m = cv2.getRotationMatrix2D(centre, angle, 1.0)
    h, w = gray.shape[:2]
    return cv2.warpAffine(gray, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def fer_val(root: Path, limit: int) -> tuple[np.ndarray, list[str]]:
    """(faces (N, 48, 48) uint8, label names) of the first `limit` PublicTest files by name."""
    from fer_core.images import decode_image, to_gray

    files = sorted(root.glob("test/*/PublicTest_*"), key=lambda p: p.name)[:limit]
    faces = np.stack([to_gray(decode_image(p)) for p in files])
    return faces, [p.parent.name for p in files]


def fer_comparison(rec, detector, faces: np.ndarray, labels: list[str]) -> list[dict]:
    """Accuracy per angle for no alignment, BlazeFace alignment and the known angle."""
    import cv2

    from fer_core.inference import crop_face, eye_angle

    size = 192 + 2 * BORDER
    box = (BORDER, BORDER, 192, 192)
    truth = np.array([rec.labels.index(n) for n in labels])
    rows = []
    for angle in ANGLES:
        crops = {"none": [], "aligned": [], "known angle": []}
        found, errors = 0, []
        for face in faces:
            big = cv2.resize(face, (192, 192), interpolation=cv2.INTER_CUBIC)
            pic = turned(np.pad(big, BORDER, mode="edge"), angle, (size / 2, size / 2))
            dets = detector.detect(pic)
            est = 0.0
            if dets:
                centre = np.array([size / 2, size / 2])
                best = min(dets, key=lambda d: np.linalg.norm(np.array(d.box[:2]) + np.array(d.box[2:]) / 2 - centre))
                est = eye_angle(best.landmarks)
                found += 1
                errors.append(abs(est + angle))  # turning by +a tilts the eye line by -a
            crops["none"].append(crop_face(pic, box, 0.0))
            crops["aligned"].append(crop_face(pic, box, 0.0, angle=est))
            crops["known angle"].append(crop_face(pic, box, 0.0, angle=-angle))
        row = {"angle": angle, "detected": found / len(faces), "angle error": float(np.median(errors or [np.nan]))}
        for name, batch in crops.items():
            probs = rec.classify(np.stack(batch))
            row[name] = float(np.mean(np.argmax(probs, axis=1) == truth))
        rows.append(row)
    return rows


def photo_comparison(rec, photos_dir: Path) -> list[dict]:
    """Per angle: agreement of the turned faces' predictions with the upright ones, without and with alignment."""
    from benchmarks.detection import load_labels, match
    from fer_core.images import decode_image, to_gray

    labels = load_labels()
    plain, aligned = rec.with_detector(rec.detector), rec.with_detector(rec.detector)
    plain.align, aligned.align = False, True
    upright = {}
    for name, truths in labels.items():
        rgb = decode_image(photos_dir / name)
        faces = plain.predict_image(rgb)
        for k, t in enumerate(truths):
            hit = [f for f in faces if match([f.box], [t])[0]]
            upright[(name, k)] = hit[0] if hit else None
    rows = []
    for angle in ANGLES:
        if angle == 0:
            continue
        stats = {"none": [0, []], "aligned": [0, []]}
        n = 0
        for name, truths in labels.items():
            rgb = decode_image(photos_dir / name)
            for k, t in enumerate(truths):
                ref = upright[(name, k)]
                if ref is None:
                    continue
                import cv2

                m = cv2.getRotationMatrix2D((float(t.centre[0]), float(t.centre[1])), angle, 1.0)
                pic = cv2.warpAffine(rgb, m, rgb.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                moved = t.moved(m)
                dets = [d for d in rec.detector.detect(pic) if match([d.box], [moved])[0]]
                if not dets:
                    continue
                n += 1
                gray = to_gray(pic)
                for key, r in (("none", plain), ("aligned", aligned)):
                    face = r.faces_from_boxes(gray, [dets[0].box], [dets[0].landmarks or {}])[0]
                    stats[key][0] += face.emotion == ref.emotion
                    stats[key][1].append(0.5 * sum(abs(face.scores[x] - ref.scores[x]) for x in ref.scores))
        row = {"angle": angle, "faces": n}
        for key, (same, tv) in stats.items():
            row[f"{key}: same top emotion"] = f"{same}/{n}"
            row[f"{key}: score distance"] = float(np.mean(tv)) if tv else float("nan")
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fer", default=str(REPO.parent / "shared" / "fer2013"), help="FER-2013 folder (test/<label>/...)")
    p.add_argument("--photos", default=str(REPO.parent / "shared" / "photos"), help="the labelled photos")
    p.add_argument("--limit", type=int, default=1000, help="FER-2013 val faces to use (default 1000)")
    p.add_argument("--model", help="a .keras model with its card (default: the shipped one)")
    p.add_argument("--tta", default="none", choices=("none", "flip", "tencrop"), help="test-time augmentation")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import dashboard  # noqa: F401  (import-order guard before TensorFlow)
    from benchmarks.detection import cpu_description
    from fer_core.faces import create_detector
    from fer_core.inference import Recognizer

    fer_root = Path(args.fer)
    if not any(fer_root.glob("test/*/PublicTest_*")):
        print(f"error: {fer_root}: no test/<label>/PublicTest_* files; pass --fer DIR.")
        return 2
    rec = Recognizer(args.model, tta=args.tta)
    print(f"CPU: {cpu_description()}")
    print(f"model {rec.model_path.name}, tta {rec.tta}, detector for the eyes: BlazeFace full-range")
    faces, labels = fer_val(fer_root, args.limit)
    rows = fer_comparison(rec, create_detector("blazeface", tiles=1), faces, labels)
    print(f"\nFER-2013 val, first {len(faces)} PublicTest faces: accuracy")
    print("| turned by | no alignment | aligned (BlazeFace eyes) | known angle | eyes found | median angle error |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['angle']:+d} deg | {100 * r['none']:.1f}% | {100 * r['aligned']:.1f}% | {100 * r['known angle']:.1f}% "
            f"| {100 * r['detected']:.0f}% | {r['angle error']:.1f} deg |"
        )
    photos = Path(args.photos)
    if photos.is_dir():
        print("\nShared photos turned about each face: agreement with the upright face's prediction")
        print(
            "| turned by | faces | none: same top emotion | aligned: same top emotion | none: score distance | aligned: score distance |"
        )
        print("|---|---|---|---|---|---|")
        for r in photo_comparison(rec, photos):
            print(
                f"| {r['angle']:+d} deg | {r['faces']} | {r['none: same top emotion']} | {r['aligned: same top emotion']} "
                f"| {r['none: score distance']:.3f} | {r['aligned: score distance']:.3f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
