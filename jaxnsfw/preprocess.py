"""Yahoo's reference preprocessing (classify_nsfw.py), on the CPU with Pillow.

bytes -> PIL image -> RGB -> 256x256 BILINEAR -> JPEG (Pillow defaults) -> decode -> centre
224x224 crop -> BGR -> float32 minus (104, 117, 123). The JPEG round trip is part of the model's
input distribution: open_nsfw was trained on JPEG-decoded images, and skipping it moves scores.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np
from PIL import Image

from jaxnsfw import constants, pillow_compat
from jaxnsfw import views as views_lib
from jaxnsfw.constants import CROP, RESIZE
from jaxnsfw.options import Mode, ScoringOptions

MEAN_BGR = np.asarray(constants.MEAN_BGR, dtype=np.float32)  # an array: caffe_input subtracts it per channel

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An input that cannot be scored; the message names the input and what was wrong."""


# Longer than any file name an OS accepts (PATH_MAX is 4096 on Linux), so never mistaken for one.
_LONGEST_PATH = 4096


def check_source(source: ImageSource) -> ImageSource:
    """`source` if it is a kind of input we read; TypeError otherwise (e.g. None), before any I/O.

    Bytes are image data by design; bytes that name an existing file instead are refused with
    ImageError, since decoding them would only report "cannot identify image file"."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source[:_LONGEST_PATH + 1])
        if len(data) <= _LONGEST_PATH and b"\0" not in data and data and os.path.exists(os.fsdecode(data)):
            raise ImageError(f"{os.fsdecode(data)}: bytes are read as image data; "
                             "pass a str or pathlib.Path for a file name")
        return source
    if isinstance(source, (str, os.PathLike, Image.Image, np.ndarray)) or hasattr(source, "read"):
        return source
    raise TypeError(f"expected a path, bytes, file object, PIL image or uint8 array, got {type(source).__name__}")


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


def _bomb_message(err: Exception) -> str:
    return (f"DecompressionBombError: {err} Pillow's limit is Image.MAX_IMAGE_PIXELS = "
            f"{Image.MAX_IMAGE_PIXELS} pixels; raise it (jaxnsfw score --max-pixels) to score larger images")


def open_image(source: ImageSource, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """A fully decoded PIL image from any supported source; ImageError on anything unreadable.

    Decoding happens here (not lazily later), so that truncated files, non-images and
    decompression bombs fail with the input's name attached. Images over Pillow's
    MAX_IMAGE_PIXELS are refused (Pillow itself only warns below twice that limit): a hostile
    file must not make a bulk run allocate gigabytes. `draft_size` lets JPEG decoding scale down
    by 1/2, 1/4 or 1/8 in the DCT while staying at least that large (the opt-in fast mode)."""
    name = describe(source)
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[2] != 3 or 0 in source.shape:
            raise ImageError(f"{name}: arrays must be uint8 HxWx3 RGB")
        return Image.fromarray(source, "RGB")
    image = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if isinstance(source, (str, os.PathLike)):
                check_regular_file(source)
            image = Image.open(io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview))
                               else source)
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", draft_size)
            image.load()
        return image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        if image is not None:
            image.close()
        raise ImageError(f"{name}: {_bomb_message(err)}") from err
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as err:
        # UnidentifiedImageError is an OSError; truncated data raises OSError or SyntaxError.
        if image is not None:
            image.close()  # bulk runs must not leak a file handle per bad input
        detail = err.strerror if isinstance(err, OSError) and err.strerror and err.filename else err
        raise ImageError(f"{name}: {type(err).__name__}: {detail}") from err


def check_regular_file(path: str | os.PathLike) -> None:
    """ImageError unless `path` leads to a regular file, found out with stat, without opening it.

    Opening a FIFO for reading waits for a writer, forever if none comes; a device can stream
    without end; a socket cannot be opened at all. (A file swapped for a FIFO between this check
    and Pillow's open is left to the bulk pipeline's per-file timeout.)"""
    name = os.fsdecode(path)
    mode = os.stat(path).st_mode  # OSError (missing, loop of links, ...) is reported by the caller
    if stat.S_ISDIR(mode):
        raise ImageError(f"{name}: is a directory")
    if not stat.S_ISREG(mode):
        from jaxnsfw.bulk.walk import not_regular_kind

        raise ImageError(f"{name}: NotARegularFile: {not_regular_kind(mode)}; not opened")


def reference_rgb256(image: Image.Image, reducing_gap: float | None = None) -> np.ndarray:
    """(256, 256, 3) uint8: the image after classify_nsfw.py's resize and JPEG round trip.

    The bits are Pillow 13.0.0's whichever Pillow is installed: what the installed one does
    differently goes through an exact port (pillow_compat.py). `reducing_gap` (fast mode only) lets
    Pillow box-reduce large images before the bilinear pass; fast mode promises no parity, so it
    keeps the installed Pillow's resize."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if reducing_gap is None:
        resized = pillow_compat.resize_bilinear(image, RESIZE)
    else:
        resized = image.resize(RESIZE, resample=Image.Resampling.BILINEAR, reducing_gap=reducing_gap)
    return pillow_compat.jpeg_round_trip(resized)


def caffe_input(rgb256: np.ndarray) -> np.ndarray:
    """Caffe's `data` blob for one image, NHWC without N: centre crop, BGR, minus the mean.

    caffe.io's x/255 then x255 round-trips exactly, so the blob is float32(uint8) - mean."""
    offset = (rgb256.shape[0] - CROP) // 2, (rgb256.shape[1] - CROP) // 2
    crop = rgb256[offset[0]:offset[0] + CROP, offset[1]:offset[1] + CROP]
    return crop[:, :, ::-1].astype(np.float32) - MEAN_BGR


def preprocess(source: ImageSource) -> np.ndarray:
    """Any input -> (224, 224, 3) float32 network input, exactly as the Caffe reference."""
    rgb256 = prepare(source).rgb256
    assert rgb256 is not None  # left out only with device_preprocess
    return caffe_input(rgb256[0])


# The opt-in fast decoding: JPEG DCT scaling to >= 256 px and a box reduction before the bilinear
# pass. Scores move slightly (README: "Fast decoding"); reference mode never uses it.
FAST_DRAFT_SIZE = RESIZE
FAST_REDUCING_GAP = 3.0


@dataclass(frozen=True)
class PreparedImage:
    """One input decoded, one row per view: either brought to the network's 256x256 pixels on the
    host (`rgb256`), or only decoded (`decoded`), for the resize and JPEG round trip on the device."""

    name: str
    frames: tuple[int, ...]
    renderings: tuple[str, ...]
    rgb256: np.ndarray | None  # (views, 256, 256, 3) uint8, after the JPEG round trip
    decoded: tuple[np.ndarray, ...] | None = None  # per view: HxWx3 uint8 RGB, as decoded

    @property
    def view_count(self) -> int:
        return len(self.frames)

    @property
    def nbytes(self) -> int:
        arrays = self.decoded if self.decoded is not None else (self.rgb256,)
        return sum(a.nbytes for a in arrays if a is not None)


def prepare(source: ImageSource, options: ScoringOptions | Mode | str = ScoringOptions()) -> PreparedImage:
    """Decode one input and run the reference pixels pipeline on each of its views (see views.py).

    `options`: a ScoringOptions, or just a mode name. The mode is checked before the input is
    opened. With `device_preprocess`, stop after decoding and RGB conversion (jaxnsfw.jaxprep does
    the rest on the device). Each view is brought to 256x256 as soon as it is made, so a long
    animation never holds more than one full-size frame's views at once."""
    if not isinstance(options, ScoringOptions):
        options = ScoringOptions(mode=Mode.parse(options))
    check_source(source)
    name = describe(source)
    image = open_image(source, draft_size=FAST_DRAFT_SIZE if options.fast else None)
    try:
        frames, renderings, pixels = [], [], []
        for view in views_lib.views(image, options.mode, options.max_frames, options.max_view_pixels):
            frames.append(view.frame)
            renderings.append(view.rendering)
            if options.device_preprocess:
                pixels.append(np.asarray(view.image))
            else:
                pixels.append(reference_rgb256(view.image, FAST_REDUCING_GAP if options.fast else None))
        if options.device_preprocess:
            return PreparedImage(name, tuple(frames), tuple(renderings), None, tuple(pixels))
        return PreparedImage(name, tuple(frames), tuple(renderings), np.stack(pixels))
    except (OSError, ValueError, EOFError, MemoryError) as err:  # e.g. a frame that fails to decode on seek
        raise ImageError(f"{name}: {type(err).__name__}: {err}") from err
    finally:
        if image is not source:
            image.close()

