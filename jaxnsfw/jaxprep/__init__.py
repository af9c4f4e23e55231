"""The reference preprocessing (Pillow resize + libjpeg-turbo JPEG round trip) as jitted, batched,
differentiable JAX. See pipeline.py for the API; the stages live in resize, colour, sampling, dct,
quantize and jpeg, each exact on int32 with a smooth stand-in for gradients (surrogate.py)."""

from jaxnsfw.jaxprep.jpeg import JpegConfig, jpeg_round_trip
from jaxnsfw.jaxprep.pipeline import (
    Bucket,
    DevicePreprocessor,
    PipelineConfig,
    bucket_for,
    caffe_input_from_padded,
    decoded_rgb,
    rgb256_from_padded,
    score_and_gradient,
    score_decoded,
    scores_from_padded,
)
from jaxnsfw.jaxprep.resize import ResizeTables, resize_bilinear, resize_tables
from jaxnsfw.jaxprep.surrogate import Mode

__all__ = [
    "Bucket", "DevicePreprocessor", "JpegConfig", "Mode", "PipelineConfig", "ResizeTables", "bucket_for",
    "caffe_input_from_padded", "decoded_rgb", "jpeg_round_trip", "resize_bilinear", "resize_tables",
    "rgb256_from_padded", "score_and_gradient", "score_decoded", "scores_from_padded",
]
