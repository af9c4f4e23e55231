"""A loaded model: the weights on the device and a forward pass compiled once per batch size.

Batches are padded up to a few fixed sizes, so any number of images compiles at most
len(BATCH_SIZES) programs instead of one per distinct count.
"""

from __future__ import annotations

import functools
import os
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from jaxnsfw import checkpoint, preprocess
from jaxnsfw.model import ModelOutput, OpenNSFW

BATCH_SIZES = (1, 8, 32)


def _padded_size(count: int) -> int:
    return next(size for size in BATCH_SIZES if size >= count)


class Classifier:
    """open_nsfw with its weights loaded; reuse one instance for many images."""

    def __init__(self, weights: str | os.PathLike | None = None, exact: bool = False):
        """`weights`: a checkpoint written by `python -m convert` (default: the shipped one).
        `exact`: accumulate convolutions in float64 (about 1.7x slower on CPU) so that scores stay
        within 1e-6 of Caffe even for flat, ill-conditioned images; the default float32 path is
        within 1e-6 on every reference image but a flat 1x1 one (1.7e-6; see README)."""
        variables, self.config, self.metadata = checkpoint.read_checkpoint(weights)
        self.exact = exact
        self.model = OpenNSFW(self.config, conv_accumulation="float64" if exact else "float32")
        self.variables = jax.device_put(variables)
        self._apply = jax.jit(self.model.apply)

    def _run(self, inputs: jax.Array) -> ModelOutput:
        if self.exact:
            with jax.enable_x64(True):
                return self._apply(self.variables, inputs)
        return self._apply(self.variables, inputs)

    def forward(self, inputs: np.ndarray) -> ModelOutput:
        """ModelOutput (embedding, logits, probs) for (N, 224, 224, 3) Caffe input blobs."""
        inputs = np.asarray(inputs, dtype=np.float32)
        outputs = []
        for start in range(0, len(inputs), BATCH_SIZES[-1]):
            chunk = inputs[start:start + BATCH_SIZES[-1]]
            padded = np.zeros((_padded_size(len(chunk)),) + chunk.shape[1:], np.float32)
            padded[:len(chunk)] = chunk
            result = self._run(jnp.asarray(padded))
            outputs.append(jax.tree.map(lambda a, n=len(chunk): np.asarray(a[:n]), result))
        return ModelOutput(*(np.concatenate(parts) for parts in zip(*outputs)))

    def score_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """NSFW probabilities (float32) for preprocessed inputs."""
        return self.forward(inputs).probs[:, 1]

    def score(self, source: preprocess.ImageSource) -> float:
        """The NSFW probability of one image (path, bytes, file object, PIL image or uint8 array)."""
        return float(self.score_inputs(preprocess.preprocess(source)[None])[0])

    def scores(self, sources: Iterable[preprocess.ImageSource]) -> np.ndarray:
        """NSFW probabilities for many images, in order; raises ImageError on the first bad one."""
        inputs = [preprocess.preprocess(source) for source in sources]
        if not inputs:
            return np.zeros((0,), np.float32)
        return self.score_inputs(np.stack(inputs))


@functools.cache
def default_classifier() -> Classifier:
    """The shipped open_nsfw weights, loaded once per process."""
    return Classifier()


def nsfw_score(source: preprocess.ImageSource) -> float:
    """The probability (0..1) that an image is NSFW, as Yahoo's Caffe model computes it."""
    return default_classifier().score(source)


def nsfw_scores(sources: Iterable[preprocess.ImageSource]) -> np.ndarray:
    return default_classifier().scores(sources)
