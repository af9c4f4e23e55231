"""Occlusion sensitivity (Zeiler & Fergus 2014; the Clarifai open_nsfw posts): hide one box at a
time and see how much the score drops.

Where the box is drawn: on the ORIGINAL image, and every occluded variant then goes through the
full reference preprocessing (256x256 resize, JPEG round trip, centre crop). That is the most
faithful choice: the network sees exactly what it would see if the occluded photo were scored,
including how the resize and the JPEG codec smear the box edges, and the map needs no geometry
mapping at all (it is on the source pixels by construction). The cost is one Pillow resize and JPEG
round trip per box, done on host threads while batches of variants are scored together. Boxes in
the rim the centre crop throws away (1/16 of each side) change nothing and get a drop near 0.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from jaxnsfw import preprocess
from jaxnsfw.constants import MEAN_BGR
from jaxnsfw.constants import OCCLUSION_FILLS as FILLS
from jaxnsfw.explain.geometry import average_over_boxes, box_grid, default_stride
from jaxnsfw.explain.scoring import ImageScorer, as_scorer, score_variants, source_rgb

GREY_RGB = (128, 128, 128)
MEAN_RGB = tuple(int(v) for v in MEAN_BGR[::-1])  # the training-set mean the model subtracts


def fill_image(rgb: np.ndarray, fill: str, blur_radius: float) -> np.ndarray:
    """What a hidden pixel becomes, for every pixel of the image (a box copies its part of this).

    'blur' hides detail but keeps colour and layout, so it tests what the fine structure adds
    rather than what any content adds; the constant fills remove everything."""
    if fill == "blur":
        return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(blur_radius)))
    constant = {"grey": GREY_RGB, "mean": MEAN_RGB, "black": (0, 0, 0)}.get(fill)
    if constant is None:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    return np.broadcast_to(np.asarray(constant, np.uint8), rgb.shape)


def occluded_scores(rgb: np.ndarray, scorer: ImageScorer, boxes: np.ndarray, fill: str = "grey",
                    blur_radius: float = 8.0) -> tuple[float, np.ndarray]:
    """(score of the image, (N,) scores with each box hidden), all scored in batches."""
    filler = fill_image(rgb, fill, blur_radius)

    def variant(i: int) -> np.ndarray:
        if i == 0:  # the untouched image rides in the first batch
            return rgb
        top, left, bottom, right = boxes[i - 1]
        hidden = rgb.copy()
        hidden[top:bottom, left:right] = filler[top:bottom, left:right]
        return hidden

    scores = score_variants(scorer, variant, len(boxes) + 1)
    return float(scores[0]), scores[1:]


def occlusion_map(image: preprocess.ImageSource, model, box: int = 64, stride: int | None = None,
                  fill: str = "grey", blur_radius: float | None = None) -> np.ndarray:
    """(H, W) float32 at the image's own resolution: per pixel, the mean over the boxes covering it
    of (score of the image - score with that box hidden). Positive: hiding it lowers the score.

    `model`: a jaxnsfw.Classifier (NSFW probability) or any ImageScorer. `box`, `stride` in source
    pixels (stride default box/4; the last row/column of boxes sits flush with the far edge, so
    every pixel is covered). `blur_radius` (fill='blur') defaults to box/4."""
    rgb = source_rgb(image)
    boxes = box_grid(rgb.shape[:2], box, stride or default_stride(box))
    base, scores = occluded_scores(rgb, as_scorer(model), boxes, fill, blur_radius or box / 4)
    return average_over_boxes(boxes, base - scores, rgb.shape[:2])
