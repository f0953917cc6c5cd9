"""The dashboard package's process-wide settings for Streamlit."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def test_script_runs_leave_keras_alone(monkeypatch):
    """Streamlit would call keras.backend.clear_session() after every run (a full GC, ~360 ms with
    TensorFlow loaded, once a second on the Webcam page); the dashboard package turns that off."""
    import keras

    import dashboard  # noqa: F401

    calls = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: calls.append(a))
    at = AppTest.from_string("import dashboard\nimport streamlit as st\nst.write('ran')").run()
    assert not at.exception and at.markdown[0].value == "ran"
    at.run()
    assert calls == []
