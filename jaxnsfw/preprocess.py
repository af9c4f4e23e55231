"""Yahoo's reference preprocessing (classify_nsfw.py), on the CPU with Pillow.

bytes -> PIL image -> RGB -> 256x256 BILINEAR -> JPEG (Pillow defaults) -> decode -> centre
224x224 crop -> BGR -> float32 minus (104, 117, 123). The JPEG round trip is part of the model's
input distribution: open_nsfw was trained on JPEG-decoded images, and skipping it moves scores.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image

RESIZE = (256, 256)
CROP = 224
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An input that cannot be scored; the message names the input and what was wrong."""


def describe(source: ImageSource) -> str:
    """A short name for an input, for error messages and records."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.width}x{source.height}>"
    if isinstance(source, np.ndarray):
        return f"<array {source.dtype} {source.shape}>"
    return getattr(source, "name", None) or f"<{type(source).__name__}>"


def open_image(source: ImageSource) -> Image.Image:
    """A fully decoded PIL image from any supported source; ImageError on anything unreadable.

    Decoding happens here (not lazily later), so that truncated files, non-images and
    decompression bombs (Pillow's MAX_IMAGE_PIXELS) fail with the input's name attached."""
    name = describe(source)
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[2] != 3 or 0 in source.shape:
            raise ImageError(f"{name}: arrays must be uint8 HxWx3 RGB")
        return Image.fromarray(source, "RGB")
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        raise ImageError(f"{name}: is a directory")
    image = None
    try:
        image = Image.open(io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source)
        image.load()
        return image
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError) as err:
        # UnidentifiedImageError is an OSError; truncated data raises OSError or SyntaxError.
        if image is not None:
            image.close()  # bulk runs must not leak a file handle per bad input
        raise ImageError(f"{name}: {type(err).__name__}: {err}") from err


def reference_rgb256(image: Image.Image) -> np.ndarray:
    """(256, 256, 3) uint8: the image after classify_nsfw.py's resize and JPEG round trip."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    resized = image.resize(RESIZE, resample=Image.BILINEAR)
    buffer = io.BytesIO()
    resized.save(buffer, format="JPEG")
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def caffe_input(rgb256: np.ndarray) -> np.ndarray:
    """Caffe's `data` blob for one image, NHWC without N: centre crop, BGR, minus the mean.

    caffe.io's x/255 then x255 round-trips exactly, so the blob is float32(uint8) - mean."""
    offset = (rgb256.shape[0] - CROP) // 2, (rgb256.shape[1] - CROP) // 2
    crop = rgb256[offset[0]:offset[0] + CROP, offset[1]:offset[1] + CROP]
    return crop[:, :, ::-1].astype(np.float32) - MEAN_BGR


def preprocess(source: ImageSource) -> np.ndarray:
    """Any input -> (224, 224, 3) float32 network input, exactly as the Caffe reference."""
    name = describe(source)
    image = open_image(source)
    try:
        rgb256 = reference_rgb256(image)
    except (OSError, ValueError) as err:
        raise ImageError(f"{name}: {type(err).__name__}: {err}") from err
    finally:
        if image is not source:
            image.close()  # animations keep their file open for seeking; we are done with it
    return caffe_input(rgb256)
