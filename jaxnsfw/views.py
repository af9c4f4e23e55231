"""The pictures inside one decoded file: the one Yahoo's pipeline scores, and the ones a viewer sees.

`reference` mode scores what classify_nsfw.py scores: the first frame, `convert('RGB')` as stored
(EXIF orientation ignored, alpha dropped so fully transparent pixels show their hidden colour, ICC
profile ignored, 16-bit samples clipped by Pillow to black and white).

`robust` mode is for moderation, where an uploader may hide content from that pipeline. For every
frame it scores the stored pixels as above *and* what a viewer is shown: EXIF orientation applied,
ICC profile converted to sRGB, 16-bit samples scaled to 8 bits, and transparency composited over
white and over black (a browser's page may be either). The maximum over all of them is the verdict.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageCms, ImageOps

from jaxnsfw.constants import MAX_FRAMES, MAX_VIEW_PIXELS, RESIZE
from jaxnsfw.options import Mode

# The most views one frame can give (stored, shown over white, shown over black).
_MOST_VIEWS_PER_FRAME = 3

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_SRGB = ImageCms.createProfile("sRGB")


@dataclass(frozen=True)
class View:
    """One picture to score: which frame, and how it was rendered."""

    frame: int
    rendering: str  # "stored", "shown", "shown over white", "shown over black"
    image: Image.Image  # RGB

    @property
    def name(self) -> str:
        return f"frame {self.frame} {self.rendering}"


def frame_count(image: Image.Image) -> int:
    return max(1, int(getattr(image, "n_frames", 1)))


def frame_budget(size: tuple[int, int], max_frames: int = MAX_FRAMES,
                 max_view_pixels: int = MAX_VIEW_PIXELS) -> int:
    """How many frames of this size robust mode may score: at most `max_frames`, and no more than
    fit `max_view_pixels` when each frame gives its most views (each counted at least 256x256,
    the size every view is brought to), but always one."""
    per_frame = _MOST_VIEWS_PER_FRAME * max(size[0] * size[1], RESIZE[0] * RESIZE[1])
    return max(1, min(max_frames, max_view_pixels // per_frame))


def sampled_frames(count: int, max_frames: int = MAX_FRAMES) -> list[int]:
    """Every frame index, or `max_frames` of them spread evenly when there are more."""
    if count <= max_frames:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, max_frames)})


def has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def scale_sixteen_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale as a viewer shows it (v / 257), where convert('L') would clip at 255."""
    if image.mode in _SIXTEEN_BIT_MODES or (image.mode == "I" and np.asarray(image).max(initial=0) > 255):
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), "L")
    return image


def to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """The image converted from its embedded ICC profile to sRGB, keeping any alpha channel.

    A profile that LittleCMS cannot use leaves the pixels as stored: a viewer would do the same."""
    if not icc_profile:
        return image
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    colour = image.convert("RGB") if image.mode in ("RGBA", "LA", "P", "PA", "1") else image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        converted = ImageCms.profileToProfile(colour, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image
    assert converted is not None  # None only with inPlace=True
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


def reference_view(image: Image.Image) -> View:
    """What classify_nsfw.py scores: the current (first) frame, converted to RGB as stored."""
    return View(0, "stored", image if image.mode == "RGB" else image.convert("RGB"))


def displayed_views(frame: Image.Image, frame_index: int, icc_profile: bytes | None) -> list[View]:
    """The frame as a viewer renders it; two views when transparency makes the background matter."""
    shown = ImageOps.exif_transpose(frame)
    shown = to_srgb(scale_sixteen_bit(shown), icc_profile)
    if not has_transparency(shown):
        return [View(frame_index, "shown", shown.convert("RGB"))]
    rgba = shown.convert("RGBA")
    views = []
    for background_name, background in (("white", (255, 255, 255, 255)), ("black", (0, 0, 0, 255))):
        composite = Image.alpha_composite(Image.new("RGBA", rgba.size, background), rgba)
        views.append(View(frame_index, f"shown over {background_name}", composite.convert("RGB")))
    return views


def robust_views(image: Image.Image, max_frames: int = MAX_FRAMES,
                 max_view_pixels: int = MAX_VIEW_PIXELS) -> Iterator[View]:
    """Every (sampled) frame, as stored and as shown; identical renderings are scored once.

    Lazy: a caller that brings each view to 256x256 before asking for the next holds one frame's
    views at a time, whatever the animation's length."""
    icc_profile = image.info.get("icc_profile")
    budget = frame_budget(image.size, max_frames, max_view_pixels)
    for index in sampled_frames(frame_count(image), budget):
        if index:
            image.seek(index)
        # A copy keeps the frame's pixels and info (EXIF) after the file seeks on.
        frame = image.copy()
        stored = reference_view(frame).image
        yield View(index, "stored", stored)
        for view in displayed_views(frame, index, icc_profile):
            if view.image.size != stored.size or view.image.tobytes() != stored.tobytes():
                yield view


def views(image: Image.Image, mode: Mode | str, max_frames: int = MAX_FRAMES,
          max_view_pixels: int = MAX_VIEW_PIXELS) -> Iterator[View]:
    """The views `mode` scores, one at a time (see robust_views)."""
    if Mode.parse(mode) is Mode.REFERENCE:
        return iter([reference_view(image)])
    return robust_views(image, max_frames, max_view_pixels)
