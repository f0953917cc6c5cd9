"""Dashboard exposure: localhost by default, upload caps like the API's, dataset paths
confined to allowed folders, two uploads with the same name."""

from __future__ import annotations

import io
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from .conftest import REPO, SAMPLE, make_tiny_model


def test_streamlit_config_binds_localhost_with_the_apis_upload_cap():
    from fer_core.images import UPLOAD_MAX_BYTES

    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "localhost"
    assert cfg["server"]["maxUploadSize"] * 1_000_000 == UPLOAD_MAX_BYTES
    # What `streamlit run Home.py` really resolves from the repo folder.
    shown = subprocess.run(
        [sys.executable, "-m", "streamlit", "config", "show"], capture_output=True, text=True, cwd=REPO, timeout=60
    ).stdout
    assert 'address = "localhost"' in shown and "maxUploadSize = 10\n" in shown


def test_serve_uses_the_same_caps():
    pytest.importorskip("fastapi")
    from fer_core.images import UPLOAD_MAX_BYTES, UPLOAD_MAX_PIXELS
    from fer_core.serve import ServeLimits

    assert ServeLimits().max_upload_bytes == UPLOAD_MAX_BYTES and ServeLimits().max_pixels == UPLOAD_MAX_PIXELS


def test_dataset_box_refuses_folders_outside_the_allowed_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_DATA", str(SAMPLE))
    monkeypatch.delenv("FER_DATA_ROOTS", raising=False)
    private = tmp_path / "private" / "secret"
    private.mkdir(parents=True)
    Image.new("L", (48, 48)).save(private / "photo-of-someone.png")
    at = AppTest.from_file(str(REPO / "pages" / "1_Dataset.py"), default_timeout=120).run()
    at.text_input[0].set_value(str(tmp_path / "private")).run()
    assert not at.exception
    assert any("outside the folders this dashboard may read" in e.value for e in at.error)
    shown = " ".join(str(m.value) for m in at.markdown) + " ".join(str(c.value) for c in at.caption)
    assert "photo-of-someone" not in shown
    assert {m.label: m.value for m in at.metric}["train"] == "350"  # still on the sample
    # Allowed once the folder is named in FER_DATA_ROOTS.
    monkeypatch.setenv("FER_DATA_ROOTS", str(tmp_path))
    from dashboard.widgets import data_path_allowed

    assert data_path_allowed(tmp_path / "private") and not data_path_allowed("/etc")


def _face_png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_two_uploads_with_the_same_name(tmp_path, monkeypatch):
    import dashboard.resources as resources

    monkeypatch.setattr(resources, "DEFAULT_MODEL", make_tiny_model(tmp_path / "m"))
    at = AppTest.from_file(str(REPO / "pages" / "4_Predict.py"), default_timeout=180).run()
    at.checkbox[0].check().run()  # already-cropped faces: one face per upload
    at.file_uploader[0].set_value(
        [("face.png", _face_png(1), "image/png"), ("face.png", _face_png(2), "image/png")]
    ).run()
    assert not at.exception
    assert [s.value for s in at.subheader][:2] == ["face.png", "face.png (2)"]
    assert list(at.dataframe[0].value["image"]) == ["face.png", "face.png (2)"]
