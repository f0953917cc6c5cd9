"""``python -m fer_core predict``: JSON shape, face counts on the shared photos, videos, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fer_core.blazeface import KEYPOINTS
from fer_core.cli import main
from fer_core.constants import EMOTIONS
from tests.conftest import REPO, SHARED_PHOTOS, needs_shared_photos
from tests.test_inference import make_tiny_model, write_video

PHOTO_FACES = {"two_people.jpg": 2, "kit_with_rose.jpg": 2, "biden.jpg": 1}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("cli-model"))


def _check_entry(entry: dict) -> None:
    assert set(entry) >= {"image", "faces"}
    for f in entry["faces"]:
        assert set(f) == {"box", "emotion", "scores", "landmarks"}
        assert set(f["landmarks"]) in (set(KEYPOINTS), set())  # BlazeFace's six points, or none (Haar)
        assert all(len(p) == 2 and all(isinstance(v, float) for v in p) for p in f["landmarks"].values())
        assert len(f["box"]) == 4 and all(isinstance(v, int) for v in f["box"])
        assert list(f["scores"]) == list(EMOTIONS) and f["emotion"] in EMOTIONS
        assert sum(f["scores"].values()) == pytest.approx(1.0, abs=1e-3)


@needs_shared_photos()
def test_shared_photos_face_counts_through_the_command(tmp_path):
    """The real command in a fresh process, with the shipped model when there is one."""
    out = tmp_path / "out.json"
    photos = [str(SHARED_PHOTOS / name) for name in PHOTO_FACES]
    cmd = [sys.executable, "-m", "fer_core", "predict", *photos, "--json", str(out)]
    shipped = REPO / "models" / "fer_resnet.keras"
    if not shipped.is_file():
        cmd += ["--model", str(make_tiny_model(tmp_path / "m"))]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert [r["image"] for r in results] == photos
    assert {os.path.basename(r["image"]): len(r["faces"]) for r in results} == PHOTO_FACES
    for r in results:
        _check_entry(r)
    assert "2 faces" in proc.stdout and "1 face:" in proc.stdout


@needs_shared_photos()
def test_detector_choice_and_haar_only_settings(tiny_model, capsys, tmp_path):
    photo = str(SHARED_PHOTOS / "kit_with_rose.jpg")
    out = tmp_path / "h.json"
    assert (
        main(
            [
                "predict",
                photo,
                "--model",
                str(tiny_model),
                "--detector",
                "haar",
                "--max-side",
                "600",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    (entry,) = json.loads(out.read_text())
    assert len(entry["faces"]) == 2 and all(f["landmarks"] == {} for f in entry["faces"])
    capsys.readouterr()
    assert main(["predict", photo, "--model", str(tiny_model), "--max-side", "600"]) == 2
    assert "--max-side applies to --detector haar only" in capsys.readouterr().err


def test_no_face_is_a_plain_result(tmp_path, tiny_model, capsys):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 150), (180, 170, 160)).save(blank)
    out = tmp_path / "r.json"
    assert main(["predict", str(blank), "--model", str(tiny_model), "--json", str(out)]) == 0
    assert json.loads(out.read_text()) == [{"image": str(blank), "faces": []}]
    assert "no face found" in capsys.readouterr().out


def test_whole_image_mode_classifies_a_fer_crop(tiny_model, capsys):
    crop = next((REPO / "data" / "sample").rglob("*.jpg"))  # a 48x48 face: too small to detect
    assert main(["predict", str(crop), "--model", str(tiny_model)]) == 0
    assert "no face found" in capsys.readouterr().out
    assert main(["predict", str(crop), "--model", str(tiny_model), "--whole-image"]) == 0
    assert "1 face:" in capsys.readouterr().out


@needs_shared_photos()
def test_video_gives_one_entry_per_analysed_frame(tmp_path, tiny_model, capsys):
    import cv2

    from fer_core.images import decode_image

    face = decode_image(SHARED_PHOTOS / "biden.jpg")
    face = cv2.resize(face[: face.shape[1] * 3 // 4], (320, 240), interpolation=cv2.INTER_AREA)
    video = write_video(tmp_path / "clip.mp4", [face] * 10 + [np.zeros_like(face)] * 10, fps=10)
    out = tmp_path / "v.json"
    assert main(["predict", str(video), "--model", str(tiny_model), "--every", "0.5", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [r["frame"] for r in results] == [0, 5, 10, 15]
    assert [r["time"] for r in results] == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=0.05)
    assert [len(r["faces"]) for r in results] == [1, 1, 0, 0]
    for r in results:
        _check_entry(r)
        assert r["image"] == str(video)
    assert "4 frames analysed, 2 with a face" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jpg", b"", "empty"),
        ("fake.png", b"GIF89a? no, just text", "not an image"),
        ("fake.mp4", b"not a video at all", "not a video"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, tiny_model, capsys, name, content, message):
    bad = tmp_path / name
    bad.write_bytes(content)
    assert main(["predict", str(bad), "--model", str(tiny_model)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_missing_file_and_missing_model(tmp_path, tiny_model, capsys):
    assert main(["predict", str(tmp_path / "nope.jpg"), "--model", str(tiny_model)]) == 2
    assert "no such file" in capsys.readouterr().err
    img = tmp_path / "a.png"
    Image.new("RGB", (10, 10)).save(img)
    assert main(["predict", str(img), "--model", str(tmp_path / "none.keras")]) == 2
    assert "no model file" in capsys.readouterr().err
