"""How perturbation explanations (occlusion, sliding windows) see a model: images in, scores out.

An ImageScorer is two functions: `prepare` turns one source-resolution RGB image into one model
input (for open_nsfw: the full reference preprocessing), and `score_inputs` scores a stack of
inputs in one batched call (for open_nsfw: Classifier.forward, which pads to a few compiled batch
sizes). Any model with those two functions can be explained, e.g. the toy nets of the tests.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import Callable

import jax
import numpy as np
from PIL import Image

from jaxnsfw import batching, preprocess
from jaxnsfw.constants import CLASS_INDEX
from jaxnsfw.explain.geometry import REFERENCE_GEOMETRY, InputGeometry
from jaxnsfw.protocols import ScoresImages


@dataclasses.dataclass(frozen=True)
class ImageScorer:
    prepare: Callable[[np.ndarray], np.ndarray]  # uint8 (H, W, 3) RGB source image -> one model input
    score_inputs: Callable[[np.ndarray], np.ndarray]  # (N, ...) model inputs -> (N,) scores
    batch_size: int = 64  # images prepared and scored per call; bounds host memory, not the device batch
    geometry: InputGeometry = REFERENCE_GEOMETRY  # which part of an image `prepare` keeps (window maps)


def source_rgb(source: preprocess.ImageSource) -> np.ndarray:
    """The image the explanations are drawn on: uint8 (H, W, 3) RGB, as the reference converts it.

    reference_input(source_rgb(x)) equals preprocess.preprocess(x) bit for bit: the reference
    preprocessing starts with the same convert('RGB'), and converting twice changes nothing."""
    if isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.ndim == 3 and source.shape[2] == 3:
        return source
    name = preprocess.describe(source)
    image = preprocess.open_image(source)
    try:
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB")).copy()
    except (OSError, ValueError) as err:
        raise preprocess.ImageError(f"{name}: {type(err).__name__}: {err}") from err
    finally:
        if image is not source:
            image.close()


def reference_input(rgb: np.ndarray) -> np.ndarray:
    """open_nsfw's input for a source RGB image: 256x256 bilinear, JPEG round trip, crop, BGR, mean."""
    return preprocess.caffe_input(preprocess.reference_rgb256(Image.fromarray(rgb)))


def default_device_batch() -> int | None:
    """Images per forward call. On CPU, 8: XLA already spreads one image over every core, and
    larger batches only lose cache locality (bench/explain_bench.py measures it; see README).
    Elsewhere None: the Classifier's own largest batch."""
    return 8 if jax.default_backend() == "cpu" else None


def classifier_scorer(classifier: ScoresImages, target: str = "nsfw", batch_size: int = 64,
                      device_batch: int | None = -1) -> ImageScorer:
    """Scores with a jaxnsfw.Classifier: the probability of `target` ('nsfw' or 'sfw'), computed
    by Classifier.forward (padded to its compiled batch sizes) `device_batch` images at a time
    (-1: default_device_batch(); None: all `batch_size` prepared images in one forward call)."""
    if target not in CLASS_INDEX:
        raise ValueError(f"target must be one of {sorted(CLASS_INDEX)}, got {target!r}")
    index = CLASS_INDEX[target]
    chunk = default_device_batch() if device_batch == -1 else device_batch

    def score_inputs(inputs: np.ndarray) -> np.ndarray:
        return np.concatenate([classifier.forward(inputs[rows]).probs[:, index]
                               for rows in batching.chunks(len(inputs), chunk or len(inputs))])

    return ImageScorer(reference_input, score_inputs, batch_size)


def as_scorer(model: ImageScorer | ScoresImages) -> ImageScorer:
    """An ImageScorer as given, or the NSFW score of a jaxnsfw.Classifier."""
    return model if isinstance(model, ImageScorer) else classifier_scorer(model)


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def score_variants(scorer: ImageScorer, make_image: Callable[[int], np.ndarray], count: int) -> np.ndarray:
    """Scores of images make_image(0) .. make_image(count - 1), built and prepared on host threads
    (Pillow's resize and JPEG codec release the GIL) and scored `scorer.batch_size` at a time.

    Each variant lives only until it is prepared, so memory stays at a batch of model inputs plus
    one source-size image per thread, whatever the source size."""
    prepare = lambda i: scorer.prepare(make_image(i))  # noqa: E731
    scores = []
    with concurrent.futures.ThreadPoolExecutor(_workers()) as pool:
        for start in range(0, count, scorer.batch_size):
            inputs = np.stack(list(pool.map(prepare, range(start, min(count, start + scorer.batch_size)))))
            scores.append(np.asarray(scorer.score_inputs(inputs), dtype=np.float32).reshape(-1))
    return np.concatenate(scores) if scores else np.zeros((0,), np.float32)
