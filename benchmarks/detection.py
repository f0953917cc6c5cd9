"""Face-detection benchmark: recall, false positives and ms per 640x480 frame for every detector, in one run.

Usage::

    python benchmarks/detection.py [--photos ../shared/photos] [--repeat 3] [--detectors blazeface,haar,...]

The faces of ../shared/photos are hand-labelled in benchmarks/shared_photos_faces.json.
Each photo gives one 640x480 base frame (a 4:3 crop around its faces), and from it the
harder cases a webcam or a phone photo meets:

* original and mirror;
* rotations by -30, -15, +15, +30 degrees about each face in turn (tilted heads);
* down-scaling: the frame shrunk to 1/3 and 1/4 and tiled (small faces; one tile's faces count);
* dark: brightness x0.3 with sensor-like noise;
* a synthetic hand (palm and four fingers, in a skin tone taken from the face) over the
  mouth and chin, and a dark bar over the eyes (occlusion);
* face-free frames: crops of the photos away from the faces, and textures (noise,
  checkerboard, stripes, gradient, blobs), where every detection is a false positive.

A detection finds a labelled face when its centre is within half the face's size of the
face's centre and its size (sqrt of w*h) is 0.5-2x the face's; each face is found at most
once. Faces cut by the frame's border after a rotation are "ignored": finding them counts
neither way. Recall is pooled over all counted faces. The three photos are also run at
full size (the "shared photos" columns). Time is the median wall time of `detect` per
640x480 frame over all frames and `--repeat` passes, on one thread, after a warm-up.
mtcnn and dlib's HOG detector are run when installed (they are not project dependencies).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LABELS = Path(__file__).resolve().parent / "shared_photos_faces.json"
FRAME = (640, 480)
GRAY = (114, 114, 114)
ANGLES = (-30, -15, 15, 30)
SHRINK = (3, 4)


@dataclass
class Truth:
    """A labelled face: centre, size (sqrt of box area) and eye centres, in frame pixels."""

    centre: np.ndarray
    size: float
    eyes: np.ndarray  # (2, 2): subject's right eye, left eye
    ignore: bool = False

    def moved(self, m: np.ndarray, scale: float = 1.0) -> Truth:
        pts = np.vstack([self.centre, self.eyes])
        moved = pts @ m[:, :2].T + m[:, 2]
        return Truth(moved[0], self.size * scale, moved[1:], self.ignore)


@dataclass
class Case:
    condition: str
    image: np.ndarray
    faces: list[Truth] = field(default_factory=list)


def load_labels(path: Path = LABELS) -> dict[str, list[Truth]]:
    """{photo file name: [Truth, ...]} from the hand-labelled JSON."""
    data = json.loads(Path(path).read_text())
    out = {}
    for name, faces in data["photos"].items():
        out[name] = [
            Truth(
                np.array([f["box"][0] + f["box"][2] / 2, f["box"][1] + f["box"][3] / 2], float),
                float(np.sqrt(f["box"][2] * f["box"][3])),
                np.array([f["right_eye"], f["left_eye"]], float),
            )
            for f in faces
        ]
    return out


def match(dets: list[tuple[int, int, int, int]], faces: list[Truth]) -> tuple[int, int, int]:
    """(faces found, counted faces, false positives) for detector boxes (x, y, w, h) against labelled faces."""
    pairs = []
    for i, (x, y, w, h) in enumerate(dets):
        c, s = np.array([x + w / 2, y + h / 2]), np.sqrt(max(w * h, 1))
        for j, f in enumerate(faces):
            dist = np.linalg.norm(c - f.centre)
            if dist <= 0.5 * f.size and 0.5 <= s / f.size <= 2.0:
                pairs.append((dist / f.size, i, j))
    used_d, used_f = set(), set()
    for _, i, j in sorted(pairs):
        if i not in used_d and j not in used_f:
            used_d.add(i)
            used_f.add(j)
    found = sum(1 for j in used_f if not faces[j].ignore)
    counted = sum(1 for f in faces if not f.ignore)
    return found, counted, len(dets) - len(used_d)


def _affine(img: np.ndarray, m: np.ndarray, size=FRAME) -> np.ndarray:
    """Rotate or move without scaling (warpAffine has no area filter: shrinking goes through `_shrink`)."""
    import cv2

    return cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=GRAY)


def _shrink(img: np.ndarray, faces: list[Truth], k: int) -> tuple[np.ndarray, list[Truth]]:
    """The frame shrunk k times and tiled k x k (a crowd of small faces; a plain canvas would upset
    Haar's histogram equalisation). Only the faces of one inner tile are counted, so each
    shrink weighs as much as the other conditions; the rest are ignored."""
    import cv2

    h, w = img.shape[:2]
    sw, sh = w // k, h // k
    tile = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    out = np.full_like(img, GRAY[0])
    moved = []
    for ty in range(k):
        for tx in range(k):
            out[ty * sh : (ty + 1) * sh, tx * sw : (tx + 1) * sw] = tile
            m = np.array([[sw / w, 0, tx * sw], [0, sh / h, ty * sh]])
            for f in faces:
                g = f.moved(m, 1.0 / k)
                g.ignore = f.ignore or (tx, ty) != (k // 2, k // 2)
                moved.append(g)
    return out, moved


def base_frame(rgb: np.ndarray, faces: list[Truth]) -> Case:
    """A 640x480 frame: the largest 4:3 window of the photo centred on its faces, resized."""
    h, w = rgb.shape[:2]
    cw = min(w, h * 4 / 3)
    ch = cw * 3 / 4
    cx, cy = np.mean([f.centre for f in faces], axis=0)
    x0 = float(np.clip(cx - cw / 2, 0, w - cw))
    y0 = float(np.clip(cy - ch / 2, 0, h - ch))
    import cv2

    xi, yi = round(x0), round(y0)
    crop = rgb[yi : yi + round(ch), xi : xi + round(cw)]
    sx, sy = FRAME[0] / crop.shape[1], FRAME[1] / crop.shape[0]
    img = cv2.resize(crop, FRAME, interpolation=cv2.INTER_AREA if sx < 1 else cv2.INTER_CUBIC)
    m = np.array([[sx, 0, -xi * sx], [0, sy, -yi * sy]])
    return Case("original", img, [f.moved(m, float(np.sqrt(sx * sy))) for f in faces])


def _inside(f: Truth, size=FRAME) -> bool:
    r = 0.6 * f.size
    return r <= f.centre[0] <= size[0] - r and r <= f.centre[1] <= size[1] - r


def _down(eyes: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(unit vector along the eyes, unit vector towards the chin, eye distance)."""
    v = eyes[1] - eyes[0]
    d = float(np.linalg.norm(v))
    along = v / d
    return along, np.array([-along[1], along[0]]), d


def hand_over_mouth(img: np.ndarray, f: Truth) -> np.ndarray:
    """Draw a hand (palm and four fingers) over the mouth and chin, in a darkened skin tone of the face."""
    import cv2

    out = img.copy()
    along, down, d = _down(f.eyes)
    mid = f.eyes.mean(0)
    # Skin tone: the median of a patch on the nose bridge, a little darker (a hand in shadow).
    nx, ny = (mid + 0.45 * d * down).astype(int)
    r = max(2, int(0.15 * d))
    patch = img[max(0, ny - r) : ny + r, max(0, nx - r) : nx + r].reshape(-1, 3)
    tone = tuple(int(v) for v in (np.median(patch, axis=0) * 0.9)) if patch.size else (170, 130, 110)
    edge = tuple(int(v * 0.6) for v in tone)
    palm = mid + 1.25 * d * down
    angle = float(np.degrees(np.arctan2(along[1], along[0])))
    axes = (int(0.95 * d), int(0.6 * d))
    cv2.ellipse(out, tuple(palm.astype(int)), axes, angle, 0, 360, tone, -1, cv2.LINE_AA)
    cv2.ellipse(out, tuple(palm.astype(int)), axes, angle, 0, 360, edge, max(1, int(d / 25)), cv2.LINE_AA)
    # Fingers reach across the mouth towards the subject's left cheek, slightly upwards.
    for k in range(4):
        base = palm + (0.3 - 0.28 * k) * d * down
        direction = along * 0.97 - down * 0.25
        tip = base + 1.25 * d * direction
        width = int(0.24 * d)
        cv2.line(out, tuple(base.astype(int)), tuple(tip.astype(int)), edge, width + 2, cv2.LINE_AA)
        cv2.line(out, tuple(base.astype(int)), tuple(tip.astype(int)), tone, width, cv2.LINE_AA)
    return out


def bar_over_eyes(img: np.ndarray, f: Truth) -> np.ndarray:
    """Draw a dark bar (sunglasses, a hand in shadow) over both eyes."""
    import cv2

    out = img.copy()
    along, down, d = _down(f.eyes)
    mid = f.eyes.mean(0)
    hw, hh = 1.1 * d, 0.3 * d
    corners = np.array([mid + sx * hw * along + sy * hh * down for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    cv2.fillConvexPoly(out, corners.astype(np.int32), (35, 35, 40), cv2.LINE_AA)
    return out


def derive(base: Case, seed: int = 0) -> list[Case]:
    """Every harder case of one base frame (see the module docstring)."""
    import cv2

    w, h = FRAME
    img, faces = base.image, base.faces
    cases = [base]
    flip = np.array([[-1.0, 0, w - 1], [0, 1, 0]])
    cases.append(Case("mirror", img[:, ::-1].copy(), [f.moved(flip) for f in faces]))
    for angle in ANGLES:
        for f in faces:
            m = cv2.getRotationMatrix2D((float(f.centre[0]), float(f.centre[1])), angle, 1.0)
            moved = [g.moved(m) for g in faces]
            for g in moved:
                g.ignore = not _inside(g)
            cases.append(Case(f"rotate {angle:+d}", _affine(img, m), moved))
    for k in SHRINK:
        small, moved = _shrink(img, faces, k)
        cases.append(Case(f"small 1/{k}", small, moved))
    rng = np.random.default_rng(seed)
    dark = np.clip(img.astype(np.float32) * 0.3 + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    cases.append(Case("dark", dark, faces))
    hand, bar = img, img
    for f in faces:
        hand, bar = hand_over_mouth(hand, f), bar_over_eyes(bar, f)
    cases.append(Case("hand over mouth", hand, faces))
    cases.append(Case("bar over eyes", bar, faces))
    return cases


def face_free(photos: dict[str, np.ndarray], labels: dict[str, list[Truth]], seed: int = 0) -> list[Case]:
    """640x480 frames without a face: 4:3 crops of the photos below every labelled face, and textures."""
    import cv2

    w, h = FRAME
    out = []
    for name, rgb in photos.items():
        ph, pw = rgb.shape[:2]
        low = int(max(f.centre[1] + f.size for f in labels[name]))  # below the chins
        cw = min(pw, int((ph - low) * 4 / 3))
        if cw < 160:
            continue
        ch = cw * 3 // 4
        for x0 in sorted({0, pw - cw}):
            crop = rgb[ph - ch : ph, x0 : x0 + cw]
            out.append(Case(f"no face: {name} below faces", cv2.resize(crop, FRAME, interpolation=cv2.INTER_AREA)))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    textures = {
        "noise": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "checkerboard": (((xx // 40 + yy // 40) % 2) * 255).astype(np.uint8),
        "stripes": (127 + 120 * np.sin(xx / 7.0 + yy / 13.0)).astype(np.uint8),
        "gradient": (255 * (xx + yy) / (w + h)).astype(np.uint8),
        "blobs": cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (0, 0), 12),
    }
    for name, tex in textures.items():
        if name == "blobs":
            tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
        rgb = tex if tex.ndim == 3 else np.repeat(tex[:, :, None], 3, axis=2)
        out.append(Case(f"no face: {name}", np.ascontiguousarray(rgb)))
    return out


def cpu_description() -> str:
    """CPU model name and its avx2 / avx512* / amx* flags, from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU (no /proc/cpuinfo)"
    model, flags = "unknown", []
    for line in text.splitlines():
        if line.startswith("model name") and model == "unknown":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = [f for f in line.split(":", 1)[1].split() if f == "avx2" or f.startswith(("avx512", "amx"))]
    return f"{model}, {os.cpu_count()} logical cores; flags: {' '.join(flags) or 'no avx2/avx512/amx'}"


# ----------------------------------------------------------------------------- detectors


def _ours(name: str, preset: str = "photo", **kw):
    from fer_core.faces import create_detector

    det = create_detector(name, preset, **kw)
    return lambda rgb: det.boxes(rgb)


def _mtcnn():
    from mtcnn import MTCNN

    det = MTCNN()
    return lambda rgb: [tuple(int(v) for v in r["box"]) for r in det.detect_faces(rgb)]


def _dlib():
    import dlib

    det = dlib.get_frontal_face_detector()

    def run(rgb):
        return [(r.left(), r.top(), r.width(), r.height()) for r in det(rgb, 1)]

    return run


DETECTORS = {
    "blazeface": ("BlazeFace full-range + 2x2 tiles, photo preset (default)", lambda: _ours("blazeface")),
    "blazeface-webcam": ("BlazeFace full-range, webcam preset (no tiles)", lambda: _ours("blazeface", "webcam")),
    "blazeface-whole": ("BlazeFace full-range, no tiles, no size limit", lambda: _ours("blazeface", tiles=1)),
    "blazeface-tiles3": ("BlazeFace full-range + 3x3 tiles", lambda: _ours("blazeface", tiles=3)),
    "blazeface-short": ("BlazeFace short-range, no tiles", lambda: _ours("blazeface", model="short", tiles=1)),
    "haar": ("Haar alt2, photo preset", lambda: _ours("haar")),
    "haar-webcam": ("Haar alt2, webcam preset", lambda: _ours("haar", "webcam")),
    "mtcnn": ("mtcnn 1.0 (TensorFlow)", _mtcnn),
    "dlib-hog": ("dlib HOG, upsample 1", _dlib),
}


@dataclass
class Result:
    found: dict = field(default_factory=dict)  # condition -> [found, counted]
    fp_faces: int = 0
    n_face_frames: int = 0
    fp_free: int = 0
    n_free: int = 0
    shared_found: int = 0
    shared_counted: int = 0
    shared_fp: int = 0
    ms: list = field(default_factory=list)


def evaluate(run, cases: list[Case], free: list[Case], shared: list[Case], repeat: int) -> Result:
    """Run one detector on every case; time it on the 640x480 frames."""
    res = Result()
    run(cases[0].image)  # warm-up (graph tracing, allocation)
    for rep in range(repeat):
        for case in cases + free:
            t0 = time.perf_counter()
            boxes = run(case.image)
            res.ms.append(1000.0 * (time.perf_counter() - t0))
            if rep:
                continue
            found, counted, fp = match(boxes, case.faces)
            if case.faces:
                acc = res.found.setdefault(case.condition, [0, 0])
                acc[0] += found
                acc[1] += counted
                res.fp_faces += fp
                res.n_face_frames += 1
            else:
                res.fp_free += fp
                res.n_free += 1
    for case in shared:
        found, counted, fp = match(run(case.image), case.faces)
        res.shared_found += found
        res.shared_counted += counted
        res.shared_fp += fp
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", default=str(REPO.parent / "shared" / "photos"), help="folder of the labelled photos")
    p.add_argument("--repeat", type=int, default=3, help="timing passes over the frames (default 3)")
    p.add_argument("--detectors", default=",".join(DETECTORS), help=f"comma-separated, from {', '.join(DETECTORS)}")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import dashboard  # noqa: F401  (import-order guard before TensorFlow, see dashboard/__init__.py)
    from fer_core.images import decode_image

    photos_dir = Path(args.photos)
    labels = load_labels()
    missing = [n for n in labels if not (photos_dir / n).is_file()]
    if missing:
        print(f"error: {photos_dir}: {', '.join(missing)} not found; pass --photos DIR with the shared photos.")
        return 2
    photos = {n: decode_image(photos_dir / n) for n in labels}
    cases = [c for n in labels for c in derive(base_frame(photos[n], labels[n]))]
    free = face_free(photos, labels)
    shared = [Case(f"shared {n}", photos[n], labels[n]) for n in labels]
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        print(f"error: unknown detector {unknown[0]!r}; choose from {', '.join(DETECTORS)}.")
        return 2
    try:
        load = os.getloadavg()
        load_txt = f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    except OSError:
        load_txt = "load average unknown"
    n_faces = sum(1 for c in cases for f in c.faces if not f.ignore)
    print(f"CPU: {cpu_description()}; {load_txt}")
    print(
        f"{len(cases)} frames with {n_faces} counted faces, {len(free)} face-free frames (all 640x480); "
        f"3 shared photos at full size with {sum(len(v) for v in labels.values())} faces"
    )
    results = {}
    for name in names:
        title, factory = DETECTORS[name]
        try:
            run = factory()
        except ImportError as exc:
            print(f"{name}: skipped ({exc.name or exc} not installed)")
            continue
        results[name] = (title, evaluate(run, cases, free, shared, args.repeat))

    print()
    print(
        "| detector | recall | false pos. per face frame | false pos. per face-free frame | shared photos: found, false pos. | ms per 640x480 frame (median, p90) |"
    )
    print("|---|---|---|---|---|---|")
    for title, r in results.values():
        found = sum(v[0] for v in r.found.values())
        counted = sum(v[1] for v in r.found.values())
        ms = np.array(r.ms)
        print(
            f"| {title} | {100 * found / counted:.1f}% ({found}/{counted}) | {r.fp_faces / r.n_face_frames:.2f} "
            f"| {r.fp_free / r.n_free:.2f} | {r.shared_found}/{r.shared_counted}, {r.shared_fp} "
            f"| {np.median(ms):.1f}, {np.percentile(ms, 90):.1f} |"
        )
    conditions = list(dict.fromkeys(c.condition for c in cases))
    print()
    print("| recall by condition | " + " | ".join(name for name in results) + " |")
    print("|---|" + "---|" * len(results))
    for cond in conditions:
        cells = []
        for _, r in results.values():
            f, n = r.found.get(cond, [0, 0])
            cells.append(f"{f}/{n}")
        print(f"| {cond} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
