"""Pictures of maps: a colour-mapped overlay on the source image, a side-by-side panel, the raw map.

matplotlib is imported here only (pip install "jaxnsfw[explain]"), and only its object API with the
Agg canvas is used: no pyplot, no global backend or figure state.

Colours: a map with negative values (occlusion: hiding a box can raise the score) is drawn with a
diverging colormap centred on 0; a non-negative one with a sequential colormap from its minimum.
The overlay blends each pixel's colour in proportion to how strong the map is there, so regions
the map says nothing about keep the photo's own colours; NaN (never measured) is left untouched.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image

DIVERGING_CMAP = "RdBu_r"
SEQUENTIAL_CMAP = "inferno"


@dataclasses.dataclass(frozen=True)
class MapScale:
    """How map values become colours: `cmap` over [vmin, vmax]; `signed`: centred on 0."""

    cmap: str
    vmin: float
    vmax: float
    signed: bool

    @classmethod
    def of(cls, values: np.ndarray, cmap: str | None = None) -> "MapScale":
        finite = np.asarray(values, np.float64)[np.isfinite(values)]
        if finite.size == 0:
            finite = np.zeros(1)
        if finite.min() < 0:
            bound = max(float(np.abs(finite).max()), 1e-12)
            return cls(cmap or DIVERGING_CMAP, -bound, bound, True)
        low, high = float(finite.min()), float(finite.max())
        return cls(cmap or SEQUENTIAL_CMAP, low, max(high, low + 1e-12), False)

    def strength(self, values: np.ndarray) -> np.ndarray:
        """0..1 per pixel: |v| / bound for signed maps, position in [vmin, vmax] otherwise; NaN -> 0."""
        if self.signed:
            strength = np.abs(values) / self.vmax
        else:
            strength = (values - self.vmin) / (self.vmax - self.vmin)
        return np.nan_to_num(np.clip(strength, 0, 1), nan=0.0)


def colorize(values: np.ndarray, scale: MapScale) -> np.ndarray:
    """(H, W, 3) float RGB in 0..1 for a map, through the matplotlib colormap."""
    import matplotlib

    normalized = (np.asarray(values, np.float64) - scale.vmin) / (scale.vmax - scale.vmin)
    return matplotlib.colormaps[scale.cmap](np.nan_to_num(normalized, nan=0.0))[..., :3]


def overlay(rgb: np.ndarray, values: np.ndarray, alpha: float = 0.7, cmap: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the map's colours blended onto the image, weighted by the map's strength."""
    if rgb.shape[:2] != values.shape:
        raise ValueError(f"image {rgb.shape[:2]} and map {values.shape} differ in size")
    scale = MapScale.of(values, cmap)
    weight = (alpha * scale.strength(values))[..., None]
    blended = (1 - weight) * (rgb / 255.0) + weight * colorize(values, scale)
    return np.clip(np.rint(blended * 255), 0, 255).astype(np.uint8)


def signal_image(signal: np.ndarray, channels_reversed: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 picture of a signed per-channel signal (guided backprop, deconvnet): grey is
    0, brighter/darker channels are positive/negative, scaled by the largest |value|.
    `channels_reversed`: the model input is BGR (open_nsfw), so flip to RGB for display."""
    signal = np.asarray(signal, np.float64)
    if channels_reversed:
        signal = signal[..., ::-1]
    bound = max(float(np.abs(signal).max()), 1e-12)
    return np.clip(np.rint((0.5 + 0.5 * signal / bound) * 255), 0, 255).astype(np.uint8)


def save_png(path: str | os.PathLike, rgb: np.ndarray, palette: bool = False) -> None:
    """Write an RGB image; `palette` quantizes to 256 colours (several times smaller, for docs)."""
    image = Image.fromarray(rgb)
    if palette:
        image = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, optimize=True)


def panel(rgb: np.ndarray, values: np.ndarray, title: str, signal_rgb: np.ndarray | None = None,
          cmap: str | None = None, width_inches: float = 12.0, dpi: int = 100) -> np.ndarray:
    """(h, w, 3) uint8 figure: the image | the map with a colour bar | the overlay [| the signal],
    with `title` (method, target, score) above."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    scale = MapScale.of(values, cmap)
    pictures = [("image", rgb), ("map", None), ("overlay", overlay(rgb, values, cmap=cmap))]
    if signal_rgb is not None:
        pictures.append(("signal", signal_rgb))
    height, width = values.shape
    columns = len(pictures)
    figure = Figure(figsize=(width_inches, width_inches / columns * height / width + 0.8), dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots(1, columns)
    for ax, (name, picture) in zip(axes, pictures):
        if picture is None:
            shown = ax.imshow(np.ma.masked_invalid(values), cmap=scale.cmap,
                              norm=Normalize(scale.vmin, scale.vmax), interpolation="antialiased")
            figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
        else:
            ax.imshow(picture, interpolation="antialiased")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
