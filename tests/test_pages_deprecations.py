"""Pages use no Streamlit API that is deprecated: a deprecation notice is logged on every run and
floods the server log, and the API goes away in a later release."""

from __future__ import annotations

import logging

import pytest
from streamlit.testing.v1 import AppTest

from .conftest import REPO

UI_FILES = [REPO / "Home.py", *sorted((REPO / "pages").glob("*.py")), *sorted((REPO / "dashboard").glob("*.py"))]
# Webcam needs a WebRTC session that AppTest has not; tests/test_pages_predict.py covers it with a stand-in.
PAGES = ["Home.py", "pages/1_Dataset.py", "pages/2_Train.py", "pages/3_Evaluate.py", "pages/4_Predict.py"]


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_no_use_container_width(path):
    # Deprecated in favour of width="stretch" / width="content".
    assert "use_container_width" not in path.read_text()


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("page", PAGES)
def test_page_run_logs_no_deprecation(page, runs_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    logger = logging.getLogger("streamlit.deprecation_util")  # show_deprecation_warning logs here
    handler = _Collect()
    logger.addHandler(handler)
    try:
        at = AppTest.from_file(str(REPO / page), default_timeout=120).run()
    finally:
        logger.removeHandler(handler)
    assert not at.exception
    assert handler.messages == []
