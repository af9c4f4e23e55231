"""jaxnsfw: Yahoo's open_nsfw classifier in JAX/Flax, faithful to the Caffe original.

    >>> import jaxnsfw
    >>> jaxnsfw.nsfw_score("photo.jpg")      # 0..1, same as Caffe's prob[1]
"""

from __future__ import annotations

from jaxnsfw.lazy import lazy_exports

# The classifier (and with it JAX) is imported on first use, so that the preprocessing worker
# processes of a bulk run, which only decode images, start without loading JAX.
_LAZY = {
    "Classifier": "jaxnsfw.classifier",
    "nsfw_score": "jaxnsfw.classifier",
    "nsfw_scores": "jaxnsfw.classifier",
    "ResNetConfig": "jaxnsfw.config",
    "ImageError": "jaxnsfw.preprocess",
    "Mode": "jaxnsfw.options",
    "ScoringOptions": "jaxnsfw.options",
    "FileScorer": "jaxnsfw.bulk",
}

__all__ = sorted(_LAZY)
__version__ = "0.1.0"


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
