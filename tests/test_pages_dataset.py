"""Page smoke tests: Home and Dataset render without exceptions on the bundled sample."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from .conftest import REPO, SAMPLE


def test_home_renders():
    at = AppTest.from_file(str(REPO / "Home.py"), default_timeout=60).run()
    assert not at.exception
    assert "Facial-emotion-recognition workbench" in at.title[0].value


@pytest.fixture
def sample_env(monkeypatch):
    monkeypatch.setenv("FER_DATA", str(SAMPLE))


def test_dataset_page_on_sample(sample_env):
    at = AppTest.from_file(str(REPO / "pages" / "1_Dataset.py"), default_timeout=120).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["train"] == "350" and metrics["val"] == "210"
    assert len(at.get("plotly_chart")) == 2


def test_dataset_page_rejects_missing_path(sample_env, tmp_path):
    at = AppTest.from_file(str(REPO / "pages" / "1_Dataset.py"), default_timeout=120).run()
    at.text_input[0].set_value(str(tmp_path / "does-not-exist")).run()
    assert not at.exception
    assert any("no such file or folder" in e.value for e in at.error)
    assert {m.label: m.value for m in at.metric}["train"] == "350"  # still on the previous dataset


def test_dataset_page_shows_data_errors(sample_env, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_DATA_ROOTS", str(tmp_path))  # paths outside the allowed folders are refused
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    at = AppTest.from_file(str(REPO / "pages" / "1_Dataset.py"), default_timeout=120).run()
    at.text_input[0].set_value(str(bad)).run()
    assert not at.exception
    assert any("missing column(s) emotion, pixels" in e.value for e in at.error)
