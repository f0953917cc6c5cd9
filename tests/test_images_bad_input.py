"""Bad and odd picture files: each gets a one-line message (ImageError) or decodes correctly; nothing crashes.

Every file is made here in tmp_path. The same checks run through `Recognizer.predict_file`, the
path the Predict page and the CLI take, so a bad upload never takes the app down.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core.images import MAX_PIXELS, ImageError, decode_image
from fer_core.inference import Recognizer
from tests.test_inference import make_tiny_model


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory) -> Recognizer:
    return Recognizer(make_tiny_model(tmp_path_factory.mktemp("bad-input-model")))


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _jpeg(w: int = 64, h: int = 48) -> bytes:
    rng = np.random.default_rng(0)
    return _save(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), "JPEG", quality=90)


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels, with a tiny (wrong) data chunk: cheap to write."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def _jpeg_with_size(w: int, h: int) -> bytes:
    """A real small JPEG with its frame header (SOF0) patched to claim w x h pixels."""
    data = bytearray(_jpeg())
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", h, w)
    return bytes(data)


# (case id, file name, bytes, expected message fragment) — every one must be refused cleanly
REFUSED = [
    ("zero-byte", "empty.jpg", b"", "empty"),
    ("text-as-jpg", "notes.jpg", b"just some text, not a picture\n" * 10, "not an image"),
    ("html-as-png", "page.png", b"<!doctype html><html><body>hi</body></html>", "not an image"),
    (
        "random-bytes",
        "noise.webp",
        np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "not an image",
    ),
    ("truncated-jpeg", "cut.jpg", _jpeg(640, 480)[:3000], "corrupt or truncated"),
    ("truncated-png", "cut.png", _save(Image.new("RGB", (300, 300), "red"), "PNG")[:60], "corrupt or truncated"),
    ("corrupt-png-data", "bad.png", _png_header_only(64, 64), "corrupt or truncated"),
    ("huge-png-header", "huge.png", _png_header_only(100_000, 100_000), "MP limit"),
    ("huge-jpeg-header", "huge.jpg", _jpeg_with_size(65_000, 65_000), "MP limit"),
]


@pytest.mark.parametrize(("name", "content", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_with_a_one_line_message(tmp_path, recognizer, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    for source in (path, content):
        if source == b"":
            continue  # bytes and path share the check; b"" below
        with pytest.raises(ImageError, match=message) as err:
            decode_image(source)
        assert "\n" not in str(err.value)
    with pytest.raises(ImageError, match=message) as err:
        recognizer.predict_file(content, name=name)
    assert str(err.value).startswith(name) and "\n" not in str(err.value)
    with pytest.raises(ImageError, match=message):
        recognizer.predict_file(path)


def test_huge_image_is_refused_before_decoding(tmp_path):
    """A 10-gigapixel header costs nothing: the size check runs before any pixel is decoded."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="downscale"):
            decode_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # bytes; decoding would need 30 GB


def test_pixel_limit_is_a_parameter():
    content = _save(Image.new("RGB", (200, 100), "blue"), "PNG")
    assert decode_image(content).shape == (100, 200, 3)
    with pytest.raises(ImageError, match="MP limit"):
        decode_image(content, max_pixels=10_000)
    assert MAX_PIXELS >= 24_000_000  # a 24 MP camera photo must pass


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        decode_image(tmp_path / "nope.jpg")


# ----------------------------------------------------------------------------- odd but valid files


def test_16bit_png_is_scaled_to_8bit():
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    im = Image.fromarray(arr)
    assert im.mode == "I;16"
    content = _save(im, "PNG")
    assert Image.open(io.BytesIO(content)).mode.startswith("I")  # a real 16-bit PNG
    rgb = decode_image(content)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 128, 255])


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # no cyan, full magenta + yellow = red
    rgb = decode_image(_save(cmyk, "JPEG", quality=95))
    assert rgb.shape == (32, 32, 3)
    r, g, b = rgb[16, 16].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_rgba_png_is_composited_on_white():
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 255
    arr[:2, :, 3] = 255  # top half opaque red, bottom half fully transparent
    rgb = decode_image(_save(Image.fromarray(arr, "RGBA"), "PNG"))
    np.testing.assert_array_equal(rgb[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(rgb[3, 3], [255, 255, 255])


def test_palette_png_with_transparency():
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    im.putpixel((0, 0), 1)
    rgb = decode_image(_save(im, "PNG", transparency=1))
    np.testing.assert_array_equal(rgb[0, 0], [255, 255, 255])  # the transparent index is white
    np.testing.assert_array_equal(rgb[4, 4], [0, 0, 255])


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue", "green")]
    content = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    rgb = decode_image(content)
    r, g, b = rgb[8, 8].astype(int)
    assert r > 200 and g < 50 and b < 50


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP", "JPEG", "TIFF"])
def test_common_formats_decode(fmt):
    arr = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    rgb = decode_image(_save(Image.fromarray(arr), fmt))
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8


def test_gray_and_bilevel_images_become_rgb():
    gray = decode_image(_save(Image.new("L", (5, 4), 77), "PNG"))
    assert gray.shape == (4, 5, 3) and (gray == 77).all()
    bw = decode_image(_save(Image.new("1", (5, 4), 1), "PNG"))
    assert bw.shape == (4, 5, 3) and (bw == 255).all()


@pytest.mark.parametrize("side", [1, 2, 5, 19])
def test_tiny_images_find_no_face_but_can_be_classified_whole(recognizer, side):
    content = _save(Image.new("RGB", (side, side), (90, 90, 90)), "PNG")
    result = recognizer.predict_file(content, name=f"tiny{side}.png")
    assert result == {"image": f"tiny{side}.png", "faces": []}
    face = recognizer.predict_crop(decode_image(content))
    assert face.box == (0, 0, side, side) and len(face.scores) == 7


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    rgb = decode_image(_save(im, "JPEG", exif=exif.tobytes()))
    assert rgb.shape[:2] == (40, 20)


def test_file_path_and_pathlike(tmp_path):
    p = tmp_path / "ok.png"
    p.write_bytes(_save(Image.new("RGB", (3, 2), "red"), "PNG"))
    assert decode_image(p).shape == decode_image(str(p)).shape == decode_image(Path(p)).shape == (2, 3, 3)
