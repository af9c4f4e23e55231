"""The reference preprocessing after decoding, as one jitted, batched JAX program per size bucket.

    decoded uint8 RGB (any size) --host: pad to a bucket, look up resize tables-->
    device: Pillow BILINEAR resize to 256x256 -> libjpeg-turbo JPEG round trip -> centre crop 224
    -> BGR -> minus (104, 117, 123) [-> open_nsfw -> NSFW score]

Images are padded to a few bucket shapes (and batches to a few batch sizes), with the per-image
resize tables passed as arrays, so a stream of mixed sizes compiles a handful of programs instead of
one per image. Pillow's pass order depends on the image's shape, so it is part of the bucket.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from typing import TYPE_CHECKING, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnsfw import batching, constants, preprocess
from jaxnsfw.jaxprep import resize
from jaxnsfw.jaxprep.jpeg import JpegConfig, jpeg_round_trip
from jaxnsfw.jaxprep.surrogate import Mode, to_pixels
from jaxnsfw.options import ScoringOptions

if TYPE_CHECKING:
    from jaxnsfw.classifier import Classifier


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    resize_to: tuple[int, int] = constants.RESIZE           # (height, width), as classify_nsfw.py
    crop: int = constants.CROP
    mean_bgr: tuple[float, float, float] = constants.MEAN_BGR
    jpeg: JpegConfig = JpegConfig()
    # Each image side is padded to the smallest bucket that holds it; longer sides are padded to a
    # multiple of the largest bucket. Resize cost grows with the padded size, so the buckets double.
    side_buckets: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192)
    batch_sizes: tuple[int, ...] = (1, 8, 32, 256)
    max_batch_bytes: int = 1 << 28  # padded uint8 pixels per device batch (smaller batches for big images)


@dataclasses.dataclass(frozen=True, order=True)
class Bucket:
    """The compiled shape an image is padded to, and Pillow's pass order for it."""

    height: int
    width: int
    horizontal_first: bool


def padded_side(size: int, buckets: Sequence[int]) -> int:
    for bucket in buckets:
        if size <= bucket:
            return bucket
    return -(-size // buckets[-1]) * buckets[-1]


def bucket_for(height: int, width: int, config: PipelineConfig = PipelineConfig()) -> Bucket:
    out_height, out_width = config.resize_to
    return Bucket(padded_side(height, config.side_buckets), padded_side(width, config.side_buckets),
                  resize.horizontal_first(height, width, out_height, out_width))


def batch_tables(shapes: Sequence[tuple[int, int]], bucket: Bucket, config: PipelineConfig) -> resize.ResizeTables:
    """Stacked resize tables of images of `shapes`, padded to the bucket's tap counts."""
    out_height, out_width = config.resize_to
    row_taps = resize.taps_for(bucket.height, out_height)
    col_taps = resize.taps_for(bucket.width, out_width)
    tables = [resize.resize_tables(h, w, out_height, out_width, row_taps, col_taps) for h, w in shapes]
    return jax.tree.map(lambda *leaves: np.stack(leaves), *tables)


def pad_batch(images: Sequence[np.ndarray], bucket: Bucket, batch_size: int, dtype=np.uint8) -> np.ndarray:
    """Images of different sizes in one (batch_size, Hb, Wb, 3) zero canvas, top-left aligned; the
    batch size comes from batching.padded_size, the spatial padding from the bucket."""
    batch = np.zeros((batch_size, bucket.height, bucket.width, 3), dtype)
    for slot, image in enumerate(images):
        batch[slot, :image.shape[0], :image.shape[1]] = image
    return batch


# --- device side: pure functions of arrays ----------------------------------------------------------

def resize_padded(images: jax.Array, tables: resize.ResizeTables, horizontal_first: bool,
                  config: PipelineConfig = PipelineConfig(), mode: Mode = Mode.EXACT) -> jax.Array:
    """(N, Hb, Wb, 3) padded pixels + their tables -> (N, 256, 256, 3) after Pillow's resize:
    int32 (bit-identical to Pillow) in EXACT mode, float32 otherwise."""
    pixels = to_pixels(mode, images)
    return jax.vmap(lambda image, table: resize.resize_bilinear(image, table, horizontal_first, mode))(pixels, tables)


def rgb256_from_padded(images: jax.Array, tables: resize.ResizeTables, horizontal_first: bool,
                       config: PipelineConfig = PipelineConfig(), mode: Mode = Mode.EXACT) -> jax.Array:
    """resize_padded, then the JPEG round trip: the 256x256 image classify_nsfw.py crops."""
    return jpeg_round_trip(resize_padded(images, tables, horizontal_first, config, mode), mode, config.jpeg)


def caffe_input_from_rgb256(rgb256: jax.Array, config: PipelineConfig = PipelineConfig()) -> jax.Array:
    """(N, 256, 256, 3) RGB -> Caffe's data blob (N, 224, 224, 3): centre crop, BGR, minus mean."""
    top = (rgb256.shape[1] - config.crop) // 2
    left = (rgb256.shape[2] - config.crop) // 2
    crop = rgb256[:, top:top + config.crop, left:left + config.crop, ::-1]
    return crop.astype(jnp.float32) - jnp.asarray(config.mean_bgr, jnp.float32)


def caffe_input_from_padded(images: jax.Array, tables: resize.ResizeTables, horizontal_first: bool,
                            config: PipelineConfig = PipelineConfig(), mode: Mode = Mode.EXACT) -> jax.Array:
    """(N, Hb, Wb, 3) padded uint8 images + tables -> (N, 224, 224, 3) float32 network input."""
    return caffe_input_from_rgb256(rgb256_from_padded(images, tables, horizontal_first, config, mode), config)


def scores_from_padded(model, variables, images: jax.Array, tables: resize.ResizeTables,
                       horizontal_first: bool, config: PipelineConfig = PipelineConfig(),
                       mode: Mode = Mode.EXACT) -> jax.Array:
    """(N,) NSFW probabilities of padded images: preprocessing and open_nsfw in one program.

    With float32 `images` and mode STRAIGHT_THROUGH (values still exactly Pillow's) or SMOOTH,
    this is differentiable with respect to the source pixels."""
    inputs = caffe_input_from_padded(images, tables, horizontal_first, config, mode)
    return model.apply(variables, inputs).probs[:, 1]


_STATIC = ("horizontal_first", "config", "mode")
caffe_input_from_padded_jit = jax.jit(caffe_input_from_padded, static_argnames=_STATIC)

# DevicePreprocessor compiles the resize per (bucket, batch size) and what follows it per batch size
# only: the JPEG program takes longer to compile than the resize, and does not depend on the source
# size. The intermediate stays on the device.
_resize_padded_jit = jax.jit(resize_padded, static_argnames=_STATIC)
_jpeg_jit = jax.jit(lambda resized, config: jpeg_round_trip(resized, Mode.EXACT, config.jpeg),
                    static_argnames=("config",))
_caffe_input_from_resized_jit = jax.jit(
    lambda resized, config: caffe_input_from_rgb256(jpeg_round_trip(resized, Mode.EXACT, config.jpeg), config),
    static_argnames=("config",))


# --- host side: grouping, padding, batching -----------------------------------------------------------

def _check(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"expected a non-empty uint8 HxWx3 RGB array, got {image.dtype} {image.shape}")
    return image


class DevicePreprocessor:
    """Runs the reference preprocessing on the default JAX device for lists of decoded images: it
    makes 256x256 images (or Caffe input blobs); the network runs in jaxnsfw.Classifier only.

    Reuse one instance: it keeps one compiled program per (bucket, batch size) it has seen."""

    def __init__(self, config: PipelineConfig = PipelineConfig()):
        self.config = config

    def batches(self, images: Sequence[np.ndarray]):
        """Yields (indices, bucket, padded uint8 batch, tables): images grouped by bucket, in
        batches of the configured sizes, the last one of each group padded with zeros."""
        images = [_check(image) for image in images]
        groups: dict[Bucket, list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            groups[bucket_for(image.shape[0], image.shape[1], self.config)].append(index)
        for bucket in sorted(groups):
            image_bytes = bucket.height * bucket.width * 3
            # Big buckets get only the batch sizes that fit the byte budget (at least one image).
            sizes = tuple(b for b in self.config.batch_sizes if b * image_bytes <= self.config.max_batch_bytes) or (1,)
            indices = groups[bucket]
            for rows in batching.chunks(len(indices), max(sizes)):
                chunk = indices[rows]
                batch_size = batching.padded_size(len(chunk), sizes)
                shapes = [images[i].shape[:2] for i in chunk]
                shapes += [shapes[0]] * (batch_size - len(chunk))  # padding slots: any valid tables
                yield (chunk, bucket, pad_batch([images[i] for i in chunk], bucket, batch_size),
                       batch_tables(shapes, bucket, self.config))

    def _run(self, images: Sequence[np.ndarray], after_resize: Callable, out_shape: tuple, dtype) -> np.ndarray:
        out = np.zeros((len(images),) + out_shape, dtype)
        for indices, bucket, batch, tables in self.batches(images):
            resized = _resize_padded_jit(batch, tables, bucket.horizontal_first, self.config)
            out[indices] = np.asarray(after_resize(resized))[:len(indices)]
        return out

    def resized(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 256, 256, 3) uint8: each image after Pillow's BILINEAR resize (before the JPEG)."""
        return self._run(images, lambda resized: resized, self.config.resize_to + (3,), np.uint8)

    def rgb256(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 256, 256, 3) uint8: each image after Pillow's resize and JPEG round trip."""
        run = functools.partial(_jpeg_jit, config=self.config)
        return self._run(images, run, self.config.resize_to + (3,), np.uint8)

    def caffe_inputs(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 224, 224, 3) float32 Caffe input blobs, identical to jaxnsfw.preprocess.preprocess."""
        run = functools.partial(_caffe_input_from_resized_jit, config=self.config)
        return self._run(images, run, (self.config.crop, self.config.crop, 3), np.float32)


@functools.cache
def default_preprocessor() -> DevicePreprocessor:
    return DevicePreprocessor()


def score_decoded(images: Sequence[np.ndarray], classifier: Classifier) -> np.ndarray:
    """NSFW scores of decoded uint8 HxWx3 RGB arrays: the resize and JPEG round trip here, on the
    JAX device instead of in Pillow, then the crop and the network in the classifier."""
    return classifier.score_rgb256(default_preprocessor().rgb256(images))


def decoded_rgb(source: preprocess.ImageSource) -> np.ndarray:
    """The uint8 HxWx3 RGB array the device pipeline starts from: the file decoded and converted
    to RGB by Pillow exactly as jaxnsfw.preprocess does (ImageError for unreadable inputs)."""
    decoded = preprocess.prepare(source, ScoringOptions(device_preprocess=True)).decoded
    assert decoded is not None  # device_preprocess: decoded only
    return decoded[0]


def score_and_gradient(image: np.ndarray, classifier: Classifier, mode: Mode = Mode.STRAIGHT_THROUGH,
                       config: PipelineConfig = PipelineConfig()) -> tuple[float, np.ndarray]:
    """The NSFW score of one decoded uint8 HxWx3 RGB image and its gradient with respect to the
    image's pixels (HxWx3 float32), through the resize, the JPEG round trip and the network.

    STRAIGHT_THROUGH: the score is exactly the reference pipeline's, the gradient passes rounding
    and clipping as if they were the identity; SMOOTH: no rounding anywhere (score and gradient of
    a smoothed pipeline)."""
    image = _check(image)
    bucket = bucket_for(image.shape[0], image.shape[1], config)
    tables = batch_tables([image.shape[:2]], bucket, config)
    padded = jnp.asarray(pad_batch([image], bucket, 1, np.float32))

    def score(pixels):
        return scores_from_padded(classifier.model, classifier.variables, pixels, tables,
                                  bucket.horizontal_first, config, mode)[0]

    with classifier.numerics():  # Classifier(exact=True) needs x64 for its float64 convolutions
        value, gradient = jax.value_and_grad(score)(padded)
    return float(value), np.asarray(gradient[0, :image.shape[0], :image.shape[1]])
