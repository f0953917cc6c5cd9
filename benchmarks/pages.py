"""How fast each dashboard page answers, through Streamlit's AppTest, on a real dataset.

Usage::

    FER_DATA=/path/to/fer2013 python benchmarks/pages.py [--data PATH] [--photos DIR] [--json OUT]

Each page is opened once (first interaction: the page's first run in a fresh session, its
caches as a running server would have them after any earlier page) and then used once the
way a user would (second interaction): change the sample seed on Dataset, switch the compare
metric on Train, switch the confusion matrix to row-normalised on Evaluate, add one more
photo on Predict, move a live setting on Webcam. Pages run in one process, in the order
a user meets them, sharing caches like one server does. The decode cache of the dataset
(~/.cache/fer-workbench, or $FER_CACHE) is used if warm; run twice to see the warm figures.

Prints the CPU (figures from different CPUs are not comparable) and one line per page.
This prints figures; it is not a test (the page tests assert behaviour, not speed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
SHARED = Path(os.environ.get("FER_SHARED", REPO.parent / "shared"))


def _timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _check(at, page: str) -> None:
    if at.exception:
        raise RuntimeError(f"{page}: {at.exception[0].message}")


def _photo_bytes(folder: Path, n: int) -> list[tuple[str, bytes, str]]:
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        from fer_core.images import decode_image  # noqa: F401 - a bundled face when no photos are given

        files = sorted((REPO / "data" / "sample" / "test" / "happy").glob("*.jpg"))
    picked = [files[i % len(files)] for i in range(n)]
    return [(f"{i}_{p.name}", p.read_bytes(), "image/jpeg") for i, p in enumerate(picked)]


def interactions(photos: Path) -> list[tuple[str, str, callable]]:
    """(page file, what the second interaction does, function(at) doing it)."""

    def predict_slider(at):
        next(s for s in at.slider if s.label.startswith("Seconds between")).set_value(1.0)
        return at.run()

    return [
        ("Home.py", "rerun", lambda at: at.run()),
        ("pages/1_Dataset.py", "sample seed 0 -> 7", lambda at: at.number_input[0].set_value(7).run()),
        ("pages/2_Train.py", "compare metric -> val_loss", lambda at: at.selectbox[-1].set_value("val_loss").run()),
        (
            "pages/3_Evaluate.py",
            "confusion matrix -> row-normalised",
            lambda at: at.radio[0].set_value("row-normalised (recall)").run(),
        ),
        ("pages/4_Predict.py", "video interval slider moved, 2 photos on the page", predict_slider),
    ]
    # The Webcam page needs a real WebRTC session (AppTest has none): benchmarks/webcam_browser.py times it.


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("FER_DATA", str(SHARED / "fer2013")))
    ap.add_argument("--photos", default=str(SHARED / "photos"), help="photos for the Predict page")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    os.environ["FER_DATA"] = args.data

    import dashboard  # noqa: F401, I001  (first: import-order guard)
    from streamlit.testing.v1 import AppTest

    from fer_core.hardware import cpu_summary

    print(f"CPU: {cpu_summary()}")
    print(f"data: {args.data}; load average {os.getloadavg()[0]:.1f} at start")
    rows = []
    for page, what, second in interactions(Path(args.photos)):
        at = AppTest.from_file(str(REPO / page), default_timeout=900)
        first_s, at = _timed(at.run)
        _check(at, page)
        if page.endswith("Predict.py"):  # the first use of Predict is uploading photos
            at.file_uploader[0].set_value(_photo_bytes(Path(args.photos), 2))
            first_s, at = _timed(at.run)
            _check(at, page)
            what = "video interval slider moved (first: 2 photos uploaded)"
        second_s, at = _timed(lambda at=at, second=second: second(at))
        _check(at, page)
        rows.append({"page": page, "first_s": round(first_s, 2), "second_s": round(second_s, 2), "second": what})
        print(f"{page:<22} first {first_s:6.2f} s   second {second_s:6.2f} s   ({what})", flush=True)
        if page.endswith("Predict.py"):  # a new photo costs that photo only, not all of them again
            at.file_uploader[0].set_value(_photo_bytes(Path(args.photos), 3))
            more_s, at = _timed(at.run)
            _check(at, page)
            rows.append({"page": page, "first_s": round(more_s, 2), "second_s": None, "second": "3rd photo added"})
            print(f"{'  3rd photo added':<22} {more_s:6.2f} s (analyses the new photo only)", flush=True)
        if page.endswith("Train.py"):  # the warm-start list follows the network chosen above the form
            width_s, at = _timed(
                lambda at=at: next(s for s in at.select_slider if s.label == "Width").set_value(24).run()
            )
            _check(at, page)
            rows.append({"page": page, "first_s": None, "second_s": round(width_s, 2), "second": "width 32 -> 24"})
            print(f"{'  width 32 -> 24':<22} second {width_s:6.2f} s (the warm-start list follows)", flush=True)
        if page.endswith("Evaluate.py"):  # Grad-CAM on the gallery's faces: one batch the first time, cached after
            cam_s, at = _timed(lambda at=at: at.toggle(key="eval_cam_all").set_value(True).run())
            _check(at, page)
            again_s, at = _timed(at.run)
            n = sum(1 for img in at.image)
            rows.append({"page": page, "first_s": round(cam_s, 2), "second_s": round(again_s, 2), "second": "Grad-CAM"})
            print(
                f"{'  Grad-CAM, ' + str(n) + ' faces':<22} first {cam_s:6.2f} s   second {again_s:6.2f} s", flush=True
            )
    worst = max((r for r in rows if r["second_s"] is not None), key=lambda r: r["second_s"])
    print(f"slowest second interaction: {worst['page']} {worst['second_s']:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_summary(), "data": args.data, "pages": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
