"""What the rest of the package needs of a classifier, as a typing.Protocol.

bulk (batches prepared files: `max_batch_size`, `verdicts`) and explain (scores model inputs:
`forward`) are written against this, not against jaxnsfw.Classifier, so that a stand-in with the
same three members (a test double, another backend) fits. No JAX here: bulk's decoding worker
processes import this module and must start without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:
    from jaxnsfw.classifier import Verdict
    from jaxnsfw.model import ModelOutput
    from jaxnsfw.preprocess import PreparedImage


class ScoresPrepared(Protocol):
    """What bulk scoring needs: verdicts for prepared images, batched up to `max_batch_size`."""

    @property
    def max_batch_size(self) -> int:
        """The most views sent to the device at once; callers batch up to this."""
        ...

    def verdicts(self, prepared: Sequence[PreparedImage], embeddings: bool = False) -> list[Verdict]:
        """One Verdict per prepared image, in order, every view scored (`embeddings`: each with the
        embedding of its scoring view; bulk asks for them only when embedding, so a stand-in that
        only scores may leave the keyword out)."""
        ...



class RunsForward(Protocol):
    """What explanations need: the network's outputs for Caffe input blobs."""

    def forward(self, inputs: np.ndarray) -> ModelOutput:
        """The network's outputs (embedding, logits, probs) for (N, 224, 224, 3) Caffe input blobs."""
        ...


class ScoresImages(ScoresPrepared, RunsForward, Protocol):
    """A loaded model that scores prepared images and model inputs in device batches
    (jaxnsfw.Classifier is one)."""
