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

# Larger images are refused before their pixels are decoded (a 100 MP photo is ~300 MB of RGB).
MAX_PIXELS = 64_000_000
# Pillow's own bomb check would raise a less helpful error first; ours runs before decoding.
Image.MAX_IMAGE_PIXELS = None


class ImageError(ValueError):
    """A user-supplied image that cannot be used; the message says why and what to do."""


def decode_image(source: str | os.PathLike | bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a picture into an RGB uint8 array (H, W, 3).

    Args:
        source: a file path or the file's bytes.
        max_pixels: images with more pixels are refused before decoding.

    Returns:
        The first frame as RGB uint8, EXIF orientation applied.

    Raises:
        ImageError: empty, truncated, unreadable, non-image or too large input.
    """
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
            im = ImageOps.exif_transpose(im)
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
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3), RGBA or gray (H, W) uint8 -> gray uint8 (H, W), ITU-R 601 luma."""
    if image.ndim == 2:
        return image.astype(np.uint8, copy=False)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0].astype(np.uint8, copy=False)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        rgb = image[..., :3].astype(np.float32)
        gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(gray + 0.5, 0, 255).astype(np.uint8)
    raise ImageError(f"Expected a gray or RGB image, got an array of shape {image.shape}.")


def resize_face(gray: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Resize a gray face crop to size x size (area averaging down, bilinear up)."""
    import cv2

    h, w = gray.shape[:2]
    if (h, w) == (size, size):
        return gray
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interp)
