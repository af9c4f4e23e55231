"""A loaded model: the weights on the device(s) and a forward pass compiled once per batch size.

Batches are padded up to a few fixed sizes, so any number of images compiles at most
len(batch_sizes) programs instead of one per distinct count. With several devices, every batch
is split across them along the batch axis (the weights are replicated) and comes back in order.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from PIL import Image

from jaxnsfw import batching, checkpoint, preprocess
from jaxnsfw.constants import RESIZE
from jaxnsfw.jaxprep.pipeline import caffe_input_from_rgb256
from jaxnsfw.model import ModelOutput, OpenNSFW
from jaxnsfw.model import fold_batch_norm as fold_batch_norm_variables
from jaxnsfw.options import Mode, ScoringOptions

DEFAULT_BATCH_SIZE = 32


def bulk_batch_size() -> int:
    """Images per device batch for bulk runs. On a CPU, 8: XLA's cost per image grows with the batch
    there, and a short batch keeps the decoding workers and the forward pass overlapped
    (bench/bulk_batch_sizes.py measures it end to end; README, "Speed"). On an accelerator, 32."""
    return 8 if jax.default_backend() == "cpu" else 32


@dataclass(frozen=True)
class Verdict:
    """An image's score: the highest over its views, and the view (frame, rendering) that gave it."""

    score: float
    frame: int
    rendering: str
    view_scores: np.ndarray  # every view's score, in PreparedImage order
    # The global-pool features (1024,) of the view that gave the score, when asked for
    # (verdicts(..., embeddings=True)); None otherwise.
    embedding: np.ndarray | None = None


def scoring_options(mode: Mode | str = Mode.REFERENCE, fast: bool = False, device_preprocess: bool = False,
                    options: ScoringOptions | None = None) -> ScoringOptions:
    """The ScoringOptions of a call that names its options one by one or passes them whole.

    The mode is checked here, before any input is opened, so that a misspelt mode fails at once."""
    mode = Mode.parse(mode)
    if options is None:
        return ScoringOptions(mode=mode, fast=fast, device_preprocess=device_preprocess)
    if (mode, fast, device_preprocess) != (Mode.REFERENCE, False, False):
        raise ValueError("pass either options=ScoringOptions(...) or mode/fast/device_preprocess, not both")
    return options


def check_many(sources: Iterable[preprocess.ImageSource]) -> Iterable[preprocess.ImageSource]:
    """`sources` if it is a collection of inputs; TypeError for a single input passed by mistake (a
    path string would otherwise be read one character at a time)."""
    if isinstance(sources, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)) or \
            (isinstance(sources, np.ndarray) and sources.ndim != 4):
        raise TypeError(f"expected an iterable of images (e.g. a list of paths), got a single "
                        f"{type(sources).__name__}; pass a list, or use nsfw_score/Classifier.score for one image")
    if not isinstance(sources, Iterable):
        raise TypeError(f"expected an iterable of images (e.g. a list of paths), got {type(sources).__name__}")
    return sources


class Classifier:
    """open_nsfw with its weights loaded; reuse one instance for many images."""

    def __init__(self, weights: str | os.PathLike | None = None, exact: bool = False,
                 batch_size: int = DEFAULT_BATCH_SIZE, devices: Sequence[jax.Device] | None = None,
                 fold_batch_norm: bool | None = None):
        """`weights`: a checkpoint written by `python -m convert` (default: the shipped one).
        `exact`: accumulate convolutions in float64 (slower on CPU) so that only Caffe's own
        rounding is left, even for flat, ill-conditioned images where float32 sums cancel badly
        (README, "Parity with Caffe", has the measured distances and the cost).
        `batch_size`: the largest batch sent to the devices at once.
        `devices`: where to run (default: all local devices; batches are split across them).
        `fold_batch_norm` (default: on unless `exact`): BatchNorm and Scale folded into each
        convolution's kernel and bias in float64 at load time. It is faster and closer to Caffe
        than running the layers one by one in float32 (README, "Parity with Caffe");
        `exact` keeps Caffe's layers for its float64 path."""
        variables, self.config, self.metadata = checkpoint.read_checkpoint(weights)
        self.exact = exact
        self.folded = (not exact) if fold_batch_norm is None else fold_batch_norm
        if self.folded:
            variables = fold_batch_norm_variables(variables, self.config)
        self.devices = tuple(devices or jax.local_devices())
        self.batch_sizes = batching.compiled_batch_sizes(batch_size, len(self.devices))
        self.model = OpenNSFW(self.config, conv_accumulation="float64" if exact else "float32",
                              folded_batch_norm=self.folded)
        mesh = Mesh(np.array(self.devices), ("batch",))
        self._batch_sharding = NamedSharding(mesh, PartitionSpec("batch"))
        replicated = NamedSharding(mesh, PartitionSpec())
        self.variables = jax.device_put(variables, replicated)

        def score_rgb256(variables, rgb256):
            return self.model.apply(variables, caffe_input_from_rgb256(rgb256)).probs[:, 1]

        def embed_rgb256(variables, rgb256):
            output = self.model.apply(variables, caffe_input_from_rgb256(rgb256))
            return output.probs[:, 1], output.embedding

        self._apply = jax.jit(self.model.apply, in_shardings=(replicated, self._batch_sharding),
                              out_shardings=self._batch_sharding)
        self._score_rgb256 = jax.jit(score_rgb256, in_shardings=(replicated, self._batch_sharding),
                                     out_shardings=self._batch_sharding)
        self._embed_rgb256 = jax.jit(embed_rgb256, in_shardings=(replicated, self._batch_sharding),
                                     out_shardings=self._batch_sharding)
        # A single image is not padded to one per device: it runs on the first device alone.
        self._one_device = self.devices[0]
        self._one_device_variables = jax.device_put(variables, self._one_device) if len(self.devices) > 1 else None
        self._single = {self._apply: jax.jit(self.model.apply), self._score_rgb256: jax.jit(score_rgb256),
                        self._embed_rgb256: jax.jit(embed_rgb256)}

    @property
    def max_batch_size(self) -> int:
        return self.batch_sizes[-1]

    def numerics(self) -> contextlib.AbstractContextManager:
        """The JAX settings this classifier's programs run under: `exact` accumulates in float64,
        which needs x64 on while tracing and running. Every caller of the network enters this."""
        return jax.enable_x64(True) if self.exact else contextlib.nullcontext()

    def _in_padded_chunks(self, function, batch: np.ndarray) -> list:
        """`function` over `batch` in chunks padded to the compiled sizes; results trimmed, on host."""
        results = []
        for rows in batching.chunks(len(batch), self.max_batch_size):
            chunk = batch[rows]
            with self.numerics():
                if len(chunk) == 1 and self._one_device_variables is not None:
                    result = self._single[function](self._one_device_variables, jax.device_put(chunk, self._one_device))
                else:
                    padded = batching.pad_to(chunk, batching.padded_size(len(chunk), self.batch_sizes))
                    result = function(self.variables, jax.device_put(padded, self._batch_sharding))
            # n=len(chunk) binds this chunk's size at once (B023); it is no shared mutable default (B008).
            results.append(jax.tree.map(lambda a, n=len(chunk): np.asarray(a[:n]), result))  # noqa: B008
        return results

    def forward(self, inputs: np.ndarray) -> ModelOutput:
        """ModelOutput (embedding, logits, probs) for (N, 224, 224, 3) Caffe input blobs."""
        inputs = np.asarray(inputs, dtype=np.float32)
        if len(inputs) == 0:
            c = self.config
            return ModelOutput(np.zeros((0, c.stage_widths[-1] * c.expansion), np.float32),
                               np.zeros((0, c.num_classes), np.float32), np.zeros((0, c.num_classes), np.float32))
        return ModelOutput(*(np.concatenate(parts) for parts in zip(*self._in_padded_chunks(self._apply, inputs))))

    def score_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """NSFW probabilities (float32) for preprocessed inputs."""
        return np.asarray(self.forward(inputs).probs[:, 1])

    def score_rgb256(self, rgb256: np.ndarray) -> np.ndarray:
        """NSFW probabilities for (N, 256, 256, 3) uint8 images after the resize and JPEG round trip
        (crop and normalization run on the device)."""
        rgb256 = _checked_rgb256(rgb256)
        if len(rgb256) == 0:
            return np.zeros((0,), np.float32)
        return np.concatenate(self._in_padded_chunks(self._score_rgb256, rgb256))

    def embed_rgb256(self, rgb256: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(NSFW probabilities (N,), global-pool embeddings (N, 1024)) for images as score_rgb256 takes
        them: one pass of the network gives both."""
        rgb256 = _checked_rgb256(rgb256)
        if len(rgb256) == 0:
            c = self.config
            return np.zeros((0,), np.float32), np.zeros((0, c.stage_widths[-1] * c.expansion), np.float32)
        scores, embeddings = zip(*self._in_padded_chunks(self._embed_rgb256, rgb256))
        return np.concatenate(scores), np.concatenate(embeddings)

    def _rgb256_rows(self, prepared: Sequence[preprocess.PreparedImage]) -> np.ndarray:
        """Every view's 256x256 pixels, in order. Views only decoded (device preprocessing) go
        through Pillow's resize and libjpeg's round trip as JAX programs, all in one call."""
        decoded = [image for p in prepared if p.rgb256 is None for image in p.decoded or ()]
        if decoded:
            from jaxnsfw.jaxprep.pipeline import default_preprocessor

            on_device = iter(default_preprocessor().rgb256(decoded))
        rows: list[np.ndarray] = []
        for p in prepared:
            rows.extend(p.rgb256 if p.rgb256 is not None else (next(on_device) for _ in p.decoded or ()))
        return np.stack(rows)

    def verdicts(self, prepared: Sequence[preprocess.PreparedImage], embeddings: bool = False) -> list[Verdict]:
        """Score every view of every prepared image in shared device batches. `embeddings`: each
        verdict also carries the global-pool features of the view that gave its score."""
        if not prepared:
            return []
        rows = self._rgb256_rows(prepared)
        view_scores, view_embeddings = self.embed_rgb256(rows) if embeddings else (self.score_rgb256(rows), None)
        verdicts, start = [], 0
        for p in prepared:
            scores = view_scores[start:start + p.view_count]
            best = int(np.argmax(scores))
            embedding = None if view_embeddings is None else view_embeddings[start + best]
            start += p.view_count
            verdicts.append(Verdict(float(scores[best]), p.frames[best], p.renderings[best], scores, embedding))
        return verdicts

    def verdict(self, source: preprocess.ImageSource, mode: Mode | str = Mode.REFERENCE, fast: bool = False,
                device_preprocess: bool = False, *, options: ScoringOptions | None = None) -> Verdict:
        """The highest score over an image's views and which view produced it (see jaxnsfw.views).

        Arguments as for `score`, whose number this is."""
        options = scoring_options(mode, fast, device_preprocess, options)
        return self.verdicts([preprocess.prepare(source, options)])[0]

    def score(self, source: preprocess.ImageSource, mode: Mode | str = Mode.REFERENCE, fast: bool = False,
              device_preprocess: bool = False, *, options: ScoringOptions | None = None) -> float:
        """The NSFW probability of one image (path, bytes, file object, PIL image or uint8 array).

        mode "reference": Yahoo's pipeline exactly; "robust": the maximum over what the file holds
        and what a viewer is shown (EXIF orientation, alpha backgrounds, ICC, 16-bit, all frames).
        `fast`: faster, slightly different decoding. `device_preprocess`: only decoding on the CPU;
        the resize and JPEG round trip run bit-exactly in JAX on the device (jaxnsfw.jaxprep).
        `options`: all of these (and the frame and pixel limits) as one ScoringOptions, instead."""
        return self.verdict(source, mode, fast, device_preprocess, options=options).score

    def scores(self, sources: Iterable[preprocess.ImageSource], mode: Mode | str = Mode.REFERENCE,
               fast: bool = False, device_preprocess: bool = False, *,
               options: ScoringOptions | None = None) -> np.ndarray:
        """NSFW probabilities for many images, in order; raises ImageError on the first bad one.

        Images are decoded one device batch at a time, so memory does not grow with the count."""
        options = scoring_options(mode, fast, device_preprocess, options)
        check_many(sources)
        results: list[float] = []
        pending, pending_views = [], 0
        for source in sources:
            pending.append(preprocess.prepare(source, options))
            pending_views += pending[-1].view_count
            if pending_views >= self.max_batch_size:
                results.extend(v.score for v in self.verdicts(pending))
                pending, pending_views = [], 0
        results.extend(v.score for v in self.verdicts(pending))
        return np.asarray(results, dtype=np.float32)

    def warm_up(self) -> None:
        """Compile every batch shape now, so that later calls never wait on the compiler."""
        for size in self.batch_sizes:
            self.score_rgb256(np.zeros((size, *RESIZE, 3), np.uint8))
        self.score_rgb256(np.zeros((1, *RESIZE, 3), np.uint8))


def _checked_rgb256(rgb256: np.ndarray) -> np.ndarray:
    rgb256 = np.asarray(rgb256)
    if rgb256.dtype != np.uint8 or rgb256.shape[1:] != (*RESIZE, 3):
        raise ValueError(f"expected (N, 256, 256, 3) uint8, got {rgb256.dtype} {rgb256.shape}")
    return rgb256


@functools.cache
def default_classifier() -> Classifier:
    """The shipped open_nsfw weights, loaded once per process."""
    return Classifier()


def nsfw_score(source: preprocess.ImageSource, mode: Mode | str = Mode.REFERENCE, device_preprocess: bool = False,
               *, options: ScoringOptions | None = None) -> float:
    """The probability (0..1) that an image is NSFW, as Yahoo's Caffe model computes it
    (mode="robust": the maximum over what the file holds and what a viewer is shown)."""
    options = scoring_options(mode, False, device_preprocess, options)  # both checked before loading the weights
    preprocess.check_source(source)
    return default_classifier().score(source, options=options)


def nsfw_scores(sources: Iterable[preprocess.ImageSource], mode: Mode | str = Mode.REFERENCE,
                device_preprocess: bool = False, *, options: ScoringOptions | None = None) -> np.ndarray:
    """Scores for many images, in input order, batched on the device."""
    options = scoring_options(mode, False, device_preprocess, options)
    return default_classifier().scores(check_many(sources), options=options)
