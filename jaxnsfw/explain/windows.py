"""Sliding-window maps: score every crop window on its own, as if it were the whole photo.

Each window is cut from the original image and given the full reference preprocessing (resized to
256x256, JPEG round trip, centre crop), so its score is exactly what scoring that crop as a file
would give. A window's score is credited only to the pixels the network saw: the centre 224/256 of
the window (geometry.seen_part). Pixels no window's seen part covers (a rim of ~box/16 pixels at
the image border) are NaN: nothing was measured there.
"""

from __future__ import annotations

import numpy as np

from jaxnsfw import preprocess
from jaxnsfw.explain.geometry import average_over_boxes, box_grid, default_stride, seen_part
from jaxnsfw.explain.scoring import ImageScorer, as_scorer, score_variants, source_rgb


def window_scores(rgb: np.ndarray, scorer: ImageScorer, boxes: np.ndarray) -> np.ndarray:
    """(N,) scores of the windows `boxes` of the image, each scored on its own, in batches."""
    def window(i: int) -> np.ndarray:
        top, left, bottom, right = boxes[i]
        return np.ascontiguousarray(rgb[top:bottom, left:right])

    return score_variants(scorer, window, len(boxes))


def window_map(image: preprocess.ImageSource, model, box: int = 64, stride: int | None = None) -> np.ndarray:
    """(H, W) float32 at the image's own resolution: per pixel, the mean score of the windows whose
    seen part covers it (NaN where none does). High: that region looks like the target by itself.

    `model`: a jaxnsfw.Classifier (NSFW probability) or any ImageScorer; `box`, `stride` in source
    pixels as for occlusion_map."""
    rgb = source_rgb(image)
    scorer = as_scorer(model)
    boxes = box_grid(rgb.shape[:2], box, stride or default_stride(box))
    scores = window_scores(rgb, scorer, boxes)
    return average_over_boxes(seen_part(boxes, scorer.geometry), scores, rgb.shape[:2])
