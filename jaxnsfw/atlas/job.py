"""An atlas as one call with progress reporting: what the `atlas` command and the HTTP service run.

    run_job(image_paths, embeddings_file, out_dir, options, progress) -> ["atlas.png", ...]

Exactly one of `image_paths` (files and folders, embedded here with the bulk pipeline) and
`embeddings_file` (.parquet or .npz from `jaxnsfw embed`) is given. `options` (all optional):
grid ("WxH"), tile (int), perplexity (float), seed (int), color_by ("score" or None), and, for
image paths, recursive (bool) and workers (int). `progress(fraction, stage)` is called as it goes,
the fraction never decreasing. Inputs that could not be read are left out and named in atlas.json's
notes. AtlasInputError for bad input (nothing to lay out, a grid too small, a file without
embeddings, unknown options); AtlasExtraMissing when the `atlas` extra is not installed.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from jaxnsfw.atlas.errors import AtlasInputError, require_extra

Progress = Callable[[float, str], None]

# Where each stage's progress falls within 0..1 (images to embed / an embeddings file).
_STAGES_FROM_IMAGES = {"embed": (0.0, 0.55), "tsne": (0.55, 0.8), "grid": (0.8, 0.9), "render": (0.9, 1.0)}
_STAGES_FROM_FILE = {"read": (0.0, 0.05), "tsne": (0.05, 0.6), "grid": (0.6, 0.8), "render": (0.8, 1.0)}


@dataclass(frozen=True)
class AtlasOptions:
    grid: str | None = None  # "WxH" (columns x rows); default: the smallest near-square grid
    tile: int = 64
    perplexity: float = 30.0
    seed: int = 0
    color_by: str | None = None  # "score" or None
    recursive: bool = False
    workers: int | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, object]) -> "AtlasOptions":
        """Checked options; AtlasInputError naming the first bad one."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise AtlasInputError(f"unknown atlas options {unknown}; known: {sorted(known)}")
        values = {k: v for k, v in options.items() if v is not None}
        try:
            made = cls(grid=None if values.get("grid") is None else str(values["grid"]),
                       tile=int(values.get("tile", 64)),  # type: ignore[call-overload]
                       perplexity=float(values.get("perplexity", 30.0)),  # type: ignore[arg-type]
                       seed=int(values.get("seed", 0)),  # type: ignore[call-overload]
                       color_by=None if values.get("color_by") is None else str(values["color_by"]),
                       recursive=bool(values.get("recursive", False)),
                       workers=None if values.get("workers") is None else int(values["workers"]))  # type: ignore
        except (TypeError, ValueError) as err:
            raise AtlasInputError(f"bad atlas option: {err}") from None
        if made.tile < 1:
            raise AtlasInputError(f"tile must be at least 1 pixel, got {made.tile}")
        if not made.perplexity > 0:
            raise AtlasInputError(f"perplexity must be more than 0, got {made.perplexity}")
        if made.color_by not in (None, "score"):
            raise AtlasInputError(f"color_by must be 'score' or None, got {made.color_by!r}")
        if made.grid is not None:
            from jaxnsfw.atlas import placement
            from jaxnsfw.atlas.placement import GridError

            try:
                placement.parse_grid(made.grid)
            except GridError as err:
                raise AtlasInputError(str(err)) from None
        return made


class _StageProgress:
    """Maps each stage's own 0..1 onto its share of the whole, never going back."""

    def __init__(self, progress: Progress | None, stages: dict[str, tuple[float, float]]):
        self.progress, self.stages, self.last = progress, stages, 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        start, end = self.stages[stage]
        self.last = max(self.last, start + (end - start) * min(max(fraction, 0.0), 1.0))
        if self.progress is not None:
            self.progress(self.last, stage)


@functools.cache
def _shared_classifier():
    """One classifier per process (a service runs many jobs; each batch shape compiles once)."""
    from jaxnsfw.classifier import Classifier, bulk_batch_size

    return Classifier(batch_size=bulk_batch_size())


def _embed_images(paths: Sequence[str | os.PathLike], options: AtlasOptions, report: _StageProgress):
    from jaxnsfw.atlas.embedding import embed
    from jaxnsfw.bulk.pipeline import FileScorer
    from jaxnsfw.bulk.walk import walk_inputs

    total = max(1, sum(1 for _ in walk_inputs(paths, options.recursive)))
    done = 0

    def counted(record) -> None:
        nonlocal done
        done += 1
        report("embed", done / total)

    report("embed", 0.0)
    workers = options.workers if options.workers is not None else min(4, os.cpu_count() or 1)
    with FileScorer(_shared_classifier(), workers=workers) as scorer:
        return embed(paths, options.recursive, scorer=scorer, on_record=counted)


def run_job(image_paths: Sequence[str | Path] | None, embeddings_file: str | Path | None, out_dir: str | Path,
            options: Mapping[str, object], progress: Progress | None) -> list[str]:
    """Make an atlas in `out_dir` (see the module docstring); returns the names of the files written."""
    if (image_paths is None) == (embeddings_file is None):
        raise AtlasInputError("give either image paths or an embeddings file, not both or neither")
    settings = AtlasOptions.from_mapping(options or {})
    require_extra()
    from jaxnsfw.atlas import placement
    from jaxnsfw.atlas.embedding import read_embeddings
    from jaxnsfw.atlas.pictures import RenderOptions, render
    from jaxnsfw.atlas.placement import GridError, Layout, PlacementConfig

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if image_paths is not None:
        if isinstance(image_paths, (str, os.PathLike)):
            raise AtlasInputError("image_paths is a list of files and folders, not one path")
        if len(image_paths) == 0:
            raise AtlasInputError("no images given")
        report = _StageProgress(progress, _STAGES_FROM_IMAGES)
        table = _embed_images(image_paths, settings, report)
        seconds["embed"] = round(time.perf_counter() - started, 3)
    else:
        assert embeddings_file is not None
        report = _StageProgress(progress, _STAGES_FROM_FILE)
        report("read", 0.0)
        table = read_embeddings(embeddings_file)
        seconds["read"] = round(time.perf_counter() - started, 3)
        report("read", 1.0)
    notes = [{"path": r.path, "note": f"left out: {r.error}"} for r in table.records if r.error is not None]
    usable = table.usable()
    if not usable.records:
        source = "the images given" if image_paths is not None else os.fsdecode(embeddings_file)  # type: ignore
        why = f" ({len(notes)} could not be read)" if notes else ""
        raise AtlasInputError(f"nothing to lay out: no image with an embedding in {source}{why}")
    count = len(usable.records)
    grid = placement.default_grid(count) if settings.grid is None else placement.parse_grid(settings.grid)
    try:
        placement.check_grid(grid, count)
    except GridError as err:
        raise AtlasInputError(str(err)) from None
    config = PlacementConfig(perplexity=settings.perplexity, seed=settings.seed)
    report("tsne", 0.0)
    stage = time.perf_counter()
    points, projection = placement.tsne(usable.embeddings, config.perplexity, config.seed, config.threads)
    seconds["tsne"] = round(time.perf_counter() - stage, 3)
    report("grid", 0.0)
    stage = time.perf_counter()
    cells, method = placement.assign(points, grid, config)
    seconds["grid"] = round(time.perf_counter() - stage, 3)
    report("grid", 1.0)
    placed = Layout(points, cells, grid, method, projection, dict(seconds))
    # 1 for a random layout, lower the better neighbours in the grid are neighbours in the network's eyes.
    ratio = placement.neighbour_distance_ratio(usable.embeddings, cells, grid, settings.seed)
    quality = {"neighbour_distance_ratio": round(ratio, 4) if math.isfinite(ratio) else None}  # None: no neighbours
    files = render(usable.paths, usable.scores, placed, out_dir,
                   RenderOptions(tile=settings.tile, color_by=settings.color_by), notes, seconds, quality,
                   progress=lambda fraction: report("render", fraction))
    report("render", 1.0)
    return files
