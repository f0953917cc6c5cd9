"""Decoding images from files or bytes, robustly, and turning them into model input.

Every path that reads a user's picture goes through `decode_image`, so odd files
(CMYK JPEG, 16-bit or palette PNG, animated GIF, truncated or fake files, huge images)
are handled in one place with a one-line message.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fer_core.constants import IMAGE_SIZE
from fer_core.errors import FerError

# Larger images are refused before their pixels are decoded (a 100 MP photo is ~300 MB of RGB).
MAX_PIXELS = 64_000_000
# The cap for pictures uploaded over the network (the API and the dashboard's Predict page):
# 40 MP covers current phone cameras; a 40 MP RGB decode is ~120 MB.
UPLOAD_MAX_PIXELS = 40_000_000
# The cap for uploaded files in bytes (API request bodies, dashboard uploads in .streamlit/config.toml):
# 10 MB holds any phone photo (a 12 MP JPEG is 3-6 MB).
UPLOAD_MAX_BYTES = 10_000_000
# Pixels per band when copying or converting a picture (bounds the scratch memory to ~12 bytes x this).
_GRAY_BAND_PIXELS = 1 << 20
# Pillow's own bomb check would raise a less helpful error first; ours runs before decoding.
Image.MAX_IMAGE_PIXELS = None


class ImageError(FerError, ValueError):
    """A user-supplied image that cannot be used; the message says why and what to do."""


def decode_image(
    source: str | os.PathLike | bytes, *, max_pixels: int = MAX_PIXELS, name: str | None = None
) -> np.ndarray:
    """Decode a picture into an RGB uint8 array (H, W, 3).

    Args:
        source: a file path or the file's bytes.
        max_pixels: images with more pixels are refused before decoding.
        name: what to call the picture in error messages (default: the path, or "upload"
            for bytes), e.g. the file name a user uploaded.

    Returns:
        The first frame as RGB uint8, EXIF orientation applied.

    Raises:
        ImageError: empty, truncated, unreadable, non-image or too large input.
    """
    if name is None:
        name = str(source) if not isinstance(source, bytes | bytearray) else "upload"
    if isinstance(source, bytes | bytearray):
        if len(source) == 0:
            raise ImageError(f"{name}: the file is empty (0 bytes).")
        fp = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{name}: no such file.")
        try:
            if path.stat().st_size == 0:
                raise ImageError(f"{name}: the file is empty (0 bytes).")
            fp = path.open("rb")
        except OSError as exc:  # permission denied, an I/O error, ...
            raise ImageError(f"{name}: the file cannot be read ({exc.strerror or exc}).") from None
    try:
        with fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                im = Image.open(fp)
            except UnidentifiedImageError:
                raise ImageError(f"{name}: not an image file (or a format Pillow cannot read).") from None
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(
                    f"{name}: {w}x{h} is {w * h / 1e6:.0f} MP, above the {max_pixels / 1e6:.0f} MP limit; "
                    "downscale it first."
                )
            if w < 1 or h < 1:
                raise ImageError(f"{name}: the image has no pixels ({w}x{h}).")
            im.seek(0)  # animated GIF / APNG / multi-page TIFF: first frame
            im.load()
            ImageOps.exif_transpose(im, in_place=True)  # in place: no second full-size copy
            return _to_rgb(im)
    except (ImageError, MemoryError):
        raise
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, ZeroDivisionError) as exc:
        raise ImageError(f"{name}: the image is corrupt or truncated ({exc}).") from None
    except NotImplementedError as exc:  # a variant Pillow cannot decode (e.g. an exotic DDS pixel format)
        raise ImageError(f"{name}: this image variant is not supported ({exc}); convert it to PNG or JPEG.") from None


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Convert any Pillow mode (1, L, P, LA, RGBA, CMYK, I;16, I, F, ...) to RGB uint8."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if im.mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        elif hi <= lo:
            hi = lo + 1.0
        arr = np.clip((arr - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    if im.mode in ("L", "1"):  # gray: one byte per pixel until the final RGB array
        return np.repeat(_as_array(im.convert("L"))[..., None], 3, axis=2)
    return _as_array(im.convert("RGB"))


def _as_array(im: Image.Image) -> np.ndarray:
    """A Pillow image as a uint8 array, copied in bands of rows: `np.asarray(im)` goes through
    a full-size bytes object first, one more copy of the picture at the peak."""
    w, h = im.size
    bands = len(im.getbands())
    out = np.empty((h, w, bands) if bands > 1 else (h, w), np.uint8)
    step = max(1, _GRAY_BAND_PIXELS // max(1, w))
    for y in range(0, h, step):
        out[y : y + step] = np.asarray(im.crop((0, y, w, min(h, y + step))), dtype=np.uint8)
    return out


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3), RGBA or gray (H, W) uint8 -> gray uint8 (H, W), ITU-R 601 luma."""
    if image.ndim == 2:
        return image.astype(np.uint8, copy=False)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0].astype(np.uint8, copy=False)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        # In bands of rows: converting a 60 MP photo to float32 at once took ~1 GB of scratch
        # memory; per band it is a few MB, with the same result.
        out = np.empty(image.shape[:2], np.uint8)
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        step = max(1, _GRAY_BAND_PIXELS // max(1, image.shape[1]))
        for y in range(0, image.shape[0], step):
            gray = image[y : y + step, :, :3].astype(np.float32) @ weights
            out[y : y + step] = np.clip(gray + 0.5, 0, 255).astype(np.uint8)
        return out
    raise ImageError(f"Expected a gray or RGB image, got an array of shape {image.shape}.")


def resize_face(gray: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Resize a gray face crop to size x size (area averaging down, bilinear up)."""
    import cv2

    h, w = gray.shape[:2]
    if (h, w) == (size, size):
        return gray
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interp)
