"""Caffe -> Flax conversion for open_nsfw (needs protobuf; the jaxnsfw runtime does not)."""

from convert.errors import ConversionError

__all__ = ["ConversionError"]
