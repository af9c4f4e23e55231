"""How an input is read: the scoring mode (one enum) and the per-call options (one frozen dataclass).

Every entry point (nsfw_score, Classifier.score/verdict/scores, FileScorer, the bulk CLI, the
worker processes) takes a `ScoringOptions`, or a mode name that `Mode.parse` checks before any
file is opened.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from jaxnsfw.constants import MAX_FRAMES, MAX_VIEW_PIXELS


class Mode(str, enum.Enum):
    """`reference`: Yahoo's pipeline exactly. `robust`: the maximum over what the file holds and
    what a viewer is shown (EXIF orientation, alpha over white/black, ICC, 16-bit, every frame)."""

    REFERENCE = "reference"
    ROBUST = "robust"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: "Mode | str") -> "Mode":
        """A Mode from its name; ValueError naming the valid ones for anything else."""
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(repr(m.value) for m in cls)
            raise ValueError(f"unknown mode {value!r}: expected one of {names}") from None


MODE_NAMES = tuple(m.value for m in Mode)


@dataclass(frozen=True)
class ScoringOptions:
    """How each input is decoded and brought to the network's pixels.

    `fast`: JPEG DCT scaling and a box pre-reduction (not the reference pipeline; scores move).
    `max_frames`: robust mode scores at most this many frames per animation, spread evenly.
    `max_view_pixels`: robust mode decodes at most this many pixels per file (frames sampled to fit).
    `max_pixels`: Pillow's decompression-bomb limit; None keeps Pillow's default.
    `device_preprocess`: the CPU only decodes; the resize and JPEG round trip run in jaxprep."""

    mode: Mode = Mode.REFERENCE
    fast: bool = False
    max_frames: int = MAX_FRAMES
    max_view_pixels: int = MAX_VIEW_PIXELS
    max_pixels: int | None = None
    device_preprocess: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode.parse(self.mode))
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {self.max_frames}")
        if self.max_view_pixels < 1:
            raise ValueError(f"max_view_pixels must be at least 1, got {self.max_view_pixels}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ValueError(f"max_pixels must be at least 1, got {self.max_pixels}")
        if self.fast and self.device_preprocess:
            raise ValueError("fast and device_preprocess do not go together (the device resize is the reference one)")

    def with_changes(self, **changes) -> "ScoringOptions":
        return replace(self, **changes)
