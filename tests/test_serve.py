"""The HTTP API through FastAPI's TestClient (in process, no socket), plus a bounded schemathesis fuzz run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fer_core.card import load_card, make_card, save_card  # noqa: E402
from fer_core.constants import EMOTIONS  # noqa: E402
from fer_core.images import decode_image, to_gray  # noqa: E402
from fer_core.inference import Recognizer  # noqa: E402
from fer_core.serve import ServeLimits, _Workers, create_app  # noqa: E402
from tests.conftest import SAMPLE, SHARED_PHOTOS, needs_shared_photos  # noqa: E402

# A FER-2013 sample face the Haar detector finds once it is enlarged and framed.
SAMPLE_FACE = SAMPLE / "test" / "happy" / "PublicTest_2392481.jpg"


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def framed_face_png() -> bytes:
    """The sample face enlarged to 200 px on a 400x320 gray canvas (one detectable face)."""
    import cv2

    face = cv2.resize(to_gray(decode_image(SAMPLE_FACE)), (200, 200), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((320, 400), 128, np.uint8)
    canvas[60:260, 100:300] = face
    return _png(canvas)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained ResNet-10 (width 8) with its card: the API's plumbing does not need accuracy."""
    from fer_core.model import create_model

    path = tmp_path_factory.mktemp("serve-model") / "tiny.keras"
    create_model("resnet10", width=8, input_shape=(44, 44, 1)).save(path)
    save_card(path, make_card(name="tiny", class_names=EMOTIONS, crop_size=44, tta="none"))
    return path


@pytest.fixture(scope="module")
def recognizer(tiny_model) -> Recognizer:
    return Recognizer(tiny_model)


LIMITS = ServeLimits(max_upload_bytes=2_000_000, max_pixels=4_000_000, workers=2, max_waiting=4)


@pytest.fixture(scope="module")
def client(recognizer):
    with TestClient(create_app(recognizer, limits=LIMITS), raise_server_exceptions=False) as c:
        yield c


def _post(client, data: bytes, name: str = "face.png", ctype: str = "image/png"):
    return client.post("/predict", files={"file": (name, data, ctype)})


def _assert_error(r, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    for w in words:
        assert w in detail, detail


# ----------------------------------------------------------------------------- good input


def test_good_image_matches_the_recognizer(client, recognizer):
    data = framed_face_png()
    r = _post(client, data, name="framed.png")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == "framed.png"
    assert len(body["faces"]) == 1
    face = body["faces"][0]
    x, y, w, h = face["box"]
    assert 80 <= x <= 130 and 40 <= y <= 90 and 150 <= w <= 230  # around the pasted 200 px face
    assert set(face["scores"]) == set(EMOTIONS)
    assert face["emotion"] == max(face["scores"], key=face["scores"].get)
    assert abs(sum(face["scores"].values()) - 1) < 1e-3
    # The same JSON as `python -m fer_core predict` builds through Recognizer.predict_file.
    assert body == recognizer.predict_file(data, name="framed.png")


def test_no_face_is_an_empty_list(client):
    r = _post(client, _png(np.full((240, 320, 3), 200, np.uint8)), name="wall.png")
    assert r.status_code == 200
    assert r.json() == {"image": "wall.png", "faces": []}


def test_upload_path_is_reduced_to_its_file_name(client):
    r = _post(client, _png(np.zeros((64, 64), np.uint8)), name="../../etc/passwd.png")
    assert r.status_code == 200 and r.json()["image"] == "passwd.png"


@needs_shared_photos()
@pytest.mark.shared
@pytest.mark.parametrize("name, faces", [("two_people.jpg", 2), ("kit_with_rose.jpg", 2), ("biden.jpg", 1)])
def test_shared_photos_face_counts(client, name, faces):
    r = _post(client, (SHARED_PHOTOS / name).read_bytes(), name=name, ctype="image/jpeg")
    assert r.status_code == 200, r.text
    assert len(r.json()["faces"]) == faces


# ----------------------------------------------------------------------------- bad input


def test_corrupt_file(client):
    data = framed_face_png()
    _assert_error(_post(client, data[: len(data) // 2]), 400, "face.png", "corrupt")


def test_empty_file(client):
    _assert_error(_post(client, b""), 400, "empty")


def test_not_an_image(client):
    _assert_error(_post(client, b"hello, I am text", name="notes.txt", ctype="text/plain"), 400, "not an image")


def test_oversized_body_is_refused_before_reading(client):
    big = b"\0" * (LIMITS.max_upload_bytes + 1)
    _assert_error(_post(client, big), 413, "larger than")


def test_oversized_chunked_body_is_refused(client):
    """Without Content-Length the cap is enforced while the body streams in."""

    def chunks():
        for _ in range(40):
            yield b"x" * 100_000  # 4 MB in all, twice the cap

    r = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=abc"})
    _assert_error(r, 413, "larger than")


def test_too_many_pixels(recognizer):
    limits = ServeLimits(max_upload_bytes=2_000_000, max_pixels=10_000, workers=1, max_waiting=0)
    with TestClient(create_app(recognizer, limits=limits), raise_server_exceptions=False) as c:
        _assert_error(_post(c, _png(np.zeros((200, 200), np.uint8))), 400, "MP", "downscale")
        assert _post(c, _png(np.zeros((100, 100), np.uint8))).status_code == 200


def test_wrong_content_type(client):
    _assert_error(client.post("/predict", json={"file": "face.png"}), 415, "multipart/form-data")
    _assert_error(client.post("/predict", content=b"\x89PNG", headers={"content-type": "image/png"}), 415)


def test_missing_field(client):
    r = client.post("/predict", files={"image": ("face.png", framed_face_png(), "image/png")})
    _assert_error(r, 422, "file", "multipart/form-data")


def test_field_is_text_not_a_file(client):
    _assert_error(client.post("/predict", data={"file": "hello"}, files={"x": ("a", b"b")}), 422, "file")


def test_wrong_method_and_path_are_json(client):
    assert client.get("/predict").status_code == 405
    r = client.get("/nope")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_unexpected_failure_is_a_plain_500(tiny_model, monkeypatch):
    rec = Recognizer(tiny_model)

    def boom(rgb):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(rec, "predict_image", boom)
    with TestClient(create_app(rec, limits=ServeLimits(workers=1)), raise_server_exceptions=False) as c:
        r = _post(c, framed_face_png())
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error; the server log has the details."}


# ----------------------------------------------------------------------------- health, schema, pool


def test_health(client, tiny_model):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    card = load_card(tiny_model)
    assert body["status"] == "ok"
    assert body["model"] == card["name"] == "tiny"
    assert body["version"] == card["created"]
    assert body["labels"] == list(EMOTIONS)
    assert body["limits"]["max_upload_bytes"] == LIMITS.max_upload_bytes


def test_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == {"/predict", "/health"}
    body = schema["paths"]["/predict"]["post"]["requestBody"]
    assert "multipart/form-data" in body["content"]
    assert {"400", "413", "415", "422", "503"} <= set(schema["paths"]["/predict"]["post"]["responses"])


def test_worker_pool_admits_a_bounded_number(recognizer):
    workers = _Workers(recognizer, size=2, max_waiting=3)
    try:
        assert [workers.try_admit() for _ in range(6)] == [True] * 5 + [False]
        workers.release()
        assert workers.try_admit()
    finally:
        workers.shutdown()


def test_busy_server_answers_503(recognizer):
    """With the only slot taken, the next request is turned away at once, not queued forever."""
    with TestClient(
        create_app(recognizer, limits=ServeLimits(workers=1, max_waiting=0)), raise_server_exceptions=False
    ) as c:
        workers = c.app.fastapi.state.workers
        assert workers.try_admit()  # occupy the single slot the way an in-flight request does
        try:
            r = _post(c, framed_face_png())
            _assert_error(r, 503, "busy")
            assert r.headers["retry-after"] == "1"
        finally:
            workers.release()
        assert _post(c, framed_face_png()).status_code == 200


# ----------------------------------------------------------------------------- fuzz


def test_schema_fuzz_finds_no_server_error(recognizer):
    """schemathesis generates valid and invalid requests from the OpenAPI schema (in process,
    bounded to a few dozen per operation and mode); none may get a 5xx, every answer is JSON."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    app = create_app(recognizer, limits=LIMITS)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen: list[int] = []
    for operation in schema.get_all_operations():
        op = operation.ok()
        for mode in GenerationMode:
            if mode is GenerationMode.NEGATIVE and op.method.upper() == "GET":
                continue  # /health takes no input, so there is nothing invalid to generate

            @settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def check(case):
                response = case.call()
                seen.append(response.status_code)
                assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:200])
                json.loads(response.text)

            check()
    print("fuzz statuses", sorted(set(seen)), len(seen))
    assert len(seen) >= 20
    assert any(400 <= s < 500 for s in seen)  # the negative mode reached the error paths


def test_byte_fuzz_of_image_uploads(client):
    """Mangled real images (truncated, bit-flipped, spliced headers) never produce a 5xx."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    good = [framed_face_png(), SAMPLE_FACE.read_bytes()]

    @st.composite
    def mangled(draw):
        data = bytearray(draw(st.sampled_from(good)))
        for _ in range(draw(st.integers(0, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        cut = draw(st.integers(0, len(data)))
        return bytes(data[:cut]) + draw(st.binary(max_size=64))

    statuses: list[int] = []

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=mangled())
    def check(data):
        r = _post(client, data, name="fuzz.png")
        statuses.append(r.status_code)
        assert r.status_code in (200, 400), r.text[:200]
        assert isinstance(r.json(), dict)

    check()
    assert 400 in statuses
