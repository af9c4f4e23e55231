"""jaxnsfw: Yahoo's open_nsfw classifier in JAX/Flax, faithful to the Caffe original.

    >>> import jaxnsfw
    >>> jaxnsfw.nsfw_score("photo.jpg")      # 0..1, same as Caffe's prob[1]
"""

from jaxnsfw.classifier import Classifier, nsfw_score, nsfw_scores
from jaxnsfw.config import ResNetConfig
from jaxnsfw.preprocess import ImageError

__all__ = ["Classifier", "ImageError", "ResNetConfig", "nsfw_score", "nsfw_scores"]
__version__ = "0.1.0"
