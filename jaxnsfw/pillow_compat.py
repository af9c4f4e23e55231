"""Pillow 13.0.0's reference pixels from whichever Pillow is installed.

Parity with Caffe is defined by Pillow 13.0.0's output (it made the reference). Other Pillows
decode and JPEG round-trip the same bits, but before 13 Pillow always resized horizontally first,
while 13 runs the vertical pass first when the height shrinks by more than twice as many pixels as
the width, which changes the bits of such (tall) images. Rather than pin Pillow (and silently
replace a user's), the installed Pillow is checked once per process against known answers that
Pillow 13.0.0 gave on small synthetic images, and only what it gets wrong goes through an exact
port: the resize through resize_numpy.py (NumPy, no JAX), the JPEG round trip through jaxprep's
(which imports JAX, so only when needed).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import warnings

import numpy as np
import PIL
from PIL import Image

from jaxnsfw import resize_numpy
from jaxnsfw.bilinear_tables import horizontal_first

REFERENCE_PILLOW = "13.0.0"  # the Pillow whose output defines parity, and that made the answers below
ANSWER_SIZE = (256, 256)     # every known answer is of a resize to, or a JPEG round trip at, 256x256

# Tests set this to send everything through the exact ports, as if the installed Pillow were wrong.
FORCE_EXACT = False


class PillowFidelityWarning(UserWarning):
    """The installed Pillow differs from Pillow 13.0.0 somewhere; the exact ports stand in."""


@dataclasses.dataclass(frozen=True)
class PillowFidelity:
    """Which of the reference pipeline's Pillow operations give Pillow 13.0.0's bits."""

    resize_horizontal_first: bool  # resizes that Pillow 13 runs horizontal pass first
    resize_vertical_first: bool    # resizes that Pillow 13 runs vertical pass first (tall images)
    jpeg: bool                     # save as JPEG with the defaults, then decode

    @property
    def exact(self) -> bool:
        return self.resize_horizontal_first and self.resize_vertical_first and self.jpeg

    def resizes_exactly(self, in_height: int, in_width: int, out_height: int, out_width: int) -> bool:
        if horizontal_first(in_height, in_width, out_height, out_width):
            return self.resize_horizontal_first
        return self.resize_vertical_first


NONE_EXACT = PillowFidelity(resize_horizontal_first=False, resize_vertical_first=False, jpeg=False)


@dataclasses.dataclass(frozen=True)
class KnownAnswer:
    """Pillow 13.0.0's output on `synthetic_image(height, width, seed)`, as `digest()`."""

    height: int
    width: int
    seed: int
    sha256: str

    @property
    def horizontal_first(self) -> bool:
        return horizontal_first(self.height, self.width, *ANSWER_SIZE)


# Resizes to 256x256 on both sides of the pass-order rule (340x300 is horizontal first, 350x300
# vertical first), shrinking, enlarging and both at once; noise makes the two orders differ.
RESIZE_ANSWERS: tuple[KnownAnswer, ...] = (
    KnownAnswer(40, 70, 1, "f1011f721b845b9946c83061fcab4fc3b3def3cda0a30de217a13643a00ae013"),    # enlarged both ways
    KnownAnswer(60, 500, 2, "1e944f914f7953759e7bfa6012f56b24fbc8fbcd88f471f8d8b6e7b7448e5358"),   # wide
    KnownAnswer(280, 280, 3, "a4bacdd18ce83d63a0b8c071830f914ea87200c0398db8affbc885968c2847d1"),  # square
    # horizontal first: 84 rows < 2 x 44 columns
    KnownAnswer(340, 300, 4, "ea18c5378f876ac2c6abb9a5a7c06220aaf5da6dd037d8fed870949de1c66c1d"),
    # vertical first: 94 rows > 2 x 44 columns
    KnownAnswer(350, 300, 5, "ab684db32623b4d7d5d5e057539039f939b8b02fbf7d7671e45421f59e1e6748"),
    # vertical first: 44 rows > 2 x 1 column
    KnownAnswer(300, 257, 6, "9940a0e086accf514691dc0db958089bb1df389b1a24f3063333626182937794"),
    # vertical first, the width enlarged
    KnownAnswer(700, 120, 7, "92340d07e5be493dfc7857a49499c4929fef042e6256d13a55f73755c4909345"),
)
# The JPEG round trip of a 256x256 image (the pipeline's only JPEG size).
JPEG_ANSWER = KnownAnswer(256, 256, 8, "26cc3a16b02c14610a5d333d69d58dc1b187c00f3815c0d3824928696e4c98a6")


def synthetic_image(height: int, width: int, seed: int) -> np.ndarray:
    """(height, width, 3) uint8: hashed noise averaged with diagonal ramps.

    Integer arithmetic only (no random generator whose stream might change with NumPy), so the
    known answers stay valid for any NumPy."""
    y = np.arange(height, dtype=np.uint32)[:, None]
    x = np.arange(width, dtype=np.uint32)[None, :]
    # A multiplicative hash of (y, x, seed); uint32 arithmetic wraps, as the hash wants. Its three
    # low bytes are the three channels' noise.
    h = (y * np.uint32(73856093)) ^ (x * np.uint32(19349663)) ^ np.uint32((seed * 2654435761) & 0xFFFFFFFF)
    h = (h ^ (h >> np.uint32(13))) * np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    noise = h.astype("<u4").view(np.uint8).reshape(height, width, 4)[..., :3]  # little-endian on any host
    # uint8 arithmetic wraps modulo 256, as intended for the ramps.
    ramp = (x * 255 // max(width - 1, 1) + y * 255 // max(height - 1, 1)).astype(np.uint8)
    ramps = ramp[..., None] + np.array([0, 85, 170], np.uint8)
    return noise // 2 + ramps // 2


def digest(pixels: np.ndarray) -> str:
    """sha256 of a uint8 array's shape and bytes."""
    pixels = np.ascontiguousarray(pixels, np.uint8)
    return hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()


def pillow_jpeg_round_trip(image: Image.Image) -> np.ndarray:
    """classify_nsfw.py's JPEG round trip with the installed Pillow: save with the defaults, decode."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def _pillow_resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize(size[::-1], Image.Resampling.BILINEAR))


def measure_fidelity() -> PillowFidelity:
    """The installed Pillow against the known answers: a few small resizes and one 256x256 JPEG."""
    def matches(answer: KnownAnswer, operation) -> bool:
        return digest(operation(synthetic_image(answer.height, answer.width, answer.seed))) == answer.sha256

    def resize_matches(order: bool) -> bool:
        return all(matches(a, lambda rgb: _pillow_resize(rgb, ANSWER_SIZE))
                   for a in RESIZE_ANSWERS if a.horizontal_first == order)

    jpeg = matches(JPEG_ANSWER, lambda rgb: pillow_jpeg_round_trip(Image.fromarray(rgb)))
    return PillowFidelity(resize_matches(True), resize_matches(False), jpeg)


@functools.cache
def installed_fidelity() -> PillowFidelity:
    """measure_fidelity(), once per process, warning once if anything needs an exact port."""
    fidelity = measure_fidelity()
    if not fidelity.exact:
        wrong = [part for part, right in [
            ("resizes Pillow 13 runs horizontal pass first", fidelity.resize_horizontal_first),
            ("resizes Pillow 13 runs vertical pass first (tall images)", fidelity.resize_vertical_first),
        ] if not right]
        ports = ["resize_numpy's port of Pillow 13's resize"] if wrong else []
        if not fidelity.jpeg:
            wrong.append("the JPEG round trip")
            ports.append("jaxprep's port of its JPEG round trip, which imports JAX")
        warnings.warn(f"Pillow {PIL.__version__} differs from Pillow {REFERENCE_PILLOW}, which defines parity "
                      f"with Caffe, in {' and '.join(wrong)}; jaxnsfw uses {' and '.join(ports)} there instead "
                      f"(same bits, slower).", PillowFidelityWarning, stacklevel=2)
    return fidelity


def trusted_fidelity() -> PillowFidelity:
    """What the reference pipeline may take from the installed Pillow: nothing when FORCE_EXACT."""
    return NONE_EXACT if FORCE_EXACT else installed_fidelity()


def resize_bilinear(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Pillow 13.0.0's `image.resize(size, BILINEAR)` of an RGB image; size is (width, height)."""
    width, height = size
    if trusted_fidelity().resizes_exactly(image.height, image.width, height, width):
        return image.resize(size, resample=Image.Resampling.BILINEAR)
    return Image.fromarray(resize_numpy.resize_bilinear(np.asarray(image), (height, width)))


@functools.cache
def _exact_jpeg():
    # JAX is imported here, on first need only: worker processes with a faithful Pillow never load it.
    import jax
    import jax.numpy as jnp

    from jaxnsfw.jaxprep.jpeg import jpeg_round_trip

    round_trip = jax.jit(jpeg_round_trip)
    return lambda rgb: np.asarray(round_trip(jnp.asarray(rgb, jnp.int32))).astype(np.uint8)


def jpeg_round_trip(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8: Pillow 13.0.0's JPEG round trip of an RGB image whose sides are multiples of 16."""
    if trusted_fidelity().jpeg:
        return pillow_jpeg_round_trip(image)
    return _exact_jpeg()(np.asarray(image))
