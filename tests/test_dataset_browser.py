"""In a real browser: the Dataset page's path box, typed into like a user would (a folder that is
not a dataset, then a good one), ends on the good dataset with the good path still in the box.

Needs Debian's `chromium` and Python playwright; skipped with a reason where Chromium is absent.
"""

from __future__ import annotations

import pytest

from benchmarks.webcam_browser import CHROMIUM, streamlit_server
from tests.conftest import SAMPLE
from tests.test_dataset_chooser import write_kaggle

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]


def _type_path(page, path: str) -> None:
    box = page.get_by_role("textbox", name="Path to a dataset")
    box.fill(path)
    box.press("Enter")


@pytest.mark.timeout(300)
def test_bad_path_then_good_path_in_a_real_browser(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    not_a_dataset = tmp_path / "photos"
    not_a_dataset.mkdir()
    (not_a_dataset / "notes.txt").write_text("no images")
    good = write_kaggle(tmp_path / "mini", per_class=5)
    env = {"FER_DATA": str(SAMPLE), "FER_DATA_ROOTS": str(tmp_path), "FER_CACHE": str(tmp_path / "cache")}
    with streamlit_server(tmp_path / "streamlit.log", env) as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.goto(url.rsplit("/", 1)[0] + "/Dataset", timeout=90_000)
            expect(page.get_by_text(f"{SAMPLE} — format: kaggle")).to_be_visible(timeout=90_000)

            _type_path(page, str(not_a_dataset))
            expect(page.get_by_text("Still showing").first).to_be_visible(timeout=60_000)
            expect(page.get_by_text(f"{SAMPLE} — format: kaggle")).to_be_visible()
            expect(page.get_by_role("textbox", name="Path to a dataset")).to_have_value(str(not_a_dataset))

            _type_path(page, str(good))
            expect(page.get_by_text(f"{good} — format: kaggle")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Still showing")).to_have_count(0)
            expect(page.get_by_role("textbox", name="Path to a dataset")).to_have_value(str(good))
            train = page.locator('[data-testid="stMetric"]').filter(has_text="train").first
            expect(train).to_contain_text("15")  # 5 faces x 3 classes
        finally:
            browser.close()
