"""Screenshots of every dashboard page in headless Chromium, for docs/dashboard.md.

Usage::

    FER_DATA=/path/to/fer2013 python benchmarks/screenshots.py [--out docs/screenshots] [--pages Train,Evaluate]

Starts `streamlit run Home.py` (benchmarks/webcam_browser.py's server helper), opens each page at
1400 px wide, waits until Streamlit has finished running the script and writes one PNG of the
whole page (up to 5000 px tall). Prints the CPU and how long each page took to settle in the browser.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.webcam_browser import CHROMIUM, streamlit_server  # noqa: E402

PAGES = [("Home", ""), ("Dataset", "Dataset"), ("Train", "Train"), ("Evaluate", "Evaluate"), ("Predict", "Predict")]


def shown(path: Path) -> str:
    """The path as printed: relative to the repository when inside it (--out may be anywhere)."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def settle(page, timeout_s: float = 300) -> None:
    """Wait until the app shows content and its 'running' indicator has been gone for a second."""
    page.wait_for_selector('[data-testid="stAppViewContainer"]', timeout=timeout_s * 1000)
    end = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < end:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.5:
            return
        time.sleep(0.25)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    names = [name for name, _ in PAGES]
    ap.add_argument("--pages", default=",".join(names), help=f"comma-separated, of {','.join(names)} (default: all)")
    args = ap.parse_args(argv)
    wanted = [n.strip() for n in args.pages.split(",") if n.strip()]
    if unknown := sorted(set(wanted) - set(names)):
        ap.error(f"unknown page(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    from playwright.sync_api import sync_playwright

    from fer_core.hardware import cpu_summary

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_summary()}; FER_DATA={os.environ.get('FER_DATA', '(bundled sample)')}")
    with tempfile.TemporaryDirectory() as tmp, streamlit_server(Path(tmp) / "streamlit.log") as (url, _):
        base = url.rsplit("/", 1)[0]
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                for name, path in (p for p in PAGES if p[0] in wanted):
                    t = time.perf_counter()
                    page.goto(f"{base}/{path}", timeout=300_000)
                    settle(page)
                    shot = out / f"{name.lower()}.png"
                    # Streamlit scrolls inside its main container, not the document: grow the
                    # window to the content's height (capped) so the picture holds the whole page.
                    height = page.evaluate(
                        "() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight || 900"
                    )
                    page.set_viewport_size({"width": 1400, "height": max(900, min(int(height) + 40, 5000))})
                    settle(page)
                    page.screenshot(path=str(shot), full_page=True)
                    page.set_viewport_size({"width": 1400, "height": 900})
                    print(f"{name:<9} settled in {time.perf_counter() - t:5.1f} s -> {shown(shot)}")
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
