"""What an atlas looks like: the mosaic, the raw t-SNE scatter, the JSON index and the HTML page.

Drawn with Pillow alone. A tile is the image as a viewer sees it (EXIF orientation applied,
transparency over white), centre-cropped to a square; a file that cannot be read any more (moved
since it was embedded) is a grey tile with a cross, and named in atlas.json's notes.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jaxnsfw.atlas.placement import Layout
from jaxnsfw.bulk.records import encode_path

# A mosaic side longer than this (pixels) gets smaller tiles: 100,000 images at 64 px would be a
# 20,000 x 20,000 picture (1.2 GB in memory).
MAX_MOSAIC_SIDE = 16384
# The page carries the mosaic inline (one self-contained file) up to this size; past it, it shows
# atlas.png from beside it.
MAX_INLINE_BYTES = 32 << 20
SCATTER_SIDE = 1024
TILE_CHUNK = 1024  # tiles decoded ahead of the mosaic at most
# tsne.png shows thumbnails up to this many images (dots past it, where they would be a few pixels).
MAX_SCATTER_THUMBNAILS = 2500
BACKGROUND = (24, 24, 24)
MISSING_TILE = (96, 96, 96)
FILES = ("atlas.png", "atlas.json", "index.html", "tsne.png")


@dataclass(frozen=True)
class RenderOptions:
    tile: int = 64
    color_by: str | None = None  # "score": a thin border per tile, green (0) -> yellow -> red (1)


def score_colour(score: float) -> tuple[int, int, int]:
    """Green at 0, yellow at 0.5, red at 1 (grey when there is no score)."""
    if score is None or not np.isfinite(score):
        return MISSING_TILE
    s = float(np.clip(score, 0.0, 1.0))
    if s < 0.5:
        return int(round(46 + (240 - 46) * s * 2)), int(round(160 + (200 - 160) * s * 2)), 67
    return 240, int(round(200 * (1 - s) * 2)), int(round(67 * (1 - s) * 2))


def effective_tile(tile: int, grid: tuple[int, int]) -> int:
    return max(1, min(tile, MAX_MOSAIC_SIDE // max(grid)))


def load_tile(path: str, tile: int):
    """The image at `path` as a tile x tile RGB picture (see the module docstring); raises on failure."""
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        opened.draft("RGB", (tile * 2, tile * 2))  # JPEG: decode at a reduced scale, much faster
        image: Image.Image = ImageOps.exif_transpose(opened)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image)
        return ImageOps.fit(image.convert("RGB"), (tile, tile), Image.Resampling.BILINEAR)


def _tile_or_why(path: str, tile: int):
    try:
        return load_tile(path, tile)
    except Exception as err:  # noqa: BLE001 -- one unreadable file must not stop the picture
        return f"{type(err).__name__}: {err}"


def _tiles(paths: Sequence[str], tile: int):
    """Each path's tile (or why it could not be read), in order. Decoding runs in threads (Pillow
    decodes without the GIL), a chunk at a time so that memory stays bounded."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for start in range(0, len(paths), TILE_CHUNK):
            yield from pool.map(_tile_or_why, paths[start:start + TILE_CHUNK], [tile] * TILE_CHUNK)


def draw_mosaic(paths: Sequence[str], scores: np.ndarray, layout: Layout, options: RenderOptions,
                progress: Callable[[float], None] | None = None):
    """(the mosaic as a PIL image, the tile size used, [(path, why) for tiles that could not be read])."""
    from PIL import Image, ImageDraw

    rows, cols = layout.grid
    tile = effective_tile(options.tile, layout.grid)
    mosaic = Image.new("RGB", (cols * tile, rows * tile), BACKGROUND)
    draw = ImageDraw.Draw(mosaic)
    border = max(1, tile // 32) if options.color_by == "score" and tile >= 8 else 0
    unreadable: list[tuple[str, str]] = []
    for i, (path, (row, col), loaded) in enumerate(zip(paths, layout.cells, _tiles(paths, tile))):
        x, y = int(col) * tile, int(row) * tile
        if isinstance(loaded, str):
            unreadable.append((path, loaded))
            draw.rectangle((x, y, x + tile - 1, y + tile - 1), fill=MISSING_TILE)
            draw.line((x, y, x + tile - 1, y + tile - 1), fill=BACKGROUND)
            draw.line((x, y + tile - 1, x + tile - 1, y), fill=BACKGROUND)
        else:
            mosaic.paste(loaded, (x, y))
        if border:
            draw.rectangle((x, y, x + tile - 1, y + tile - 1), outline=score_colour(scores[i]), width=border)
        if progress is not None and (i % 64 == 0 or i == len(paths) - 1):
            progress((i + 1) / len(paths))
    return mosaic, tile, unreadable


def draw_scatter(points: np.ndarray, scores: np.ndarray, side: int = SCATTER_SIDE,
                 thumbnail: Callable[[int], object] | None = None):
    """The raw 2-D embedding on a square canvas: each image as a small thumbnail framed by its score
    colour (up to MAX_SCATTER_THUMBNAILS images, when `thumbnail(i)` gives image i's tile), else a
    dot coloured by score."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", (side, side), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if len(points) == 0:
        return canvas
    count = len(points)
    with_thumbnails = thumbnail is not None and count <= MAX_SCATTER_THUMBNAILS
    size = int(np.clip(side / (1.6 * np.sqrt(count)), 8, 64)) if with_thumbnails else 0
    margin = side * 0.04 + size / 2
    low, high = points.min(axis=0), points.max(axis=0)
    scale = (side - 2 * margin) / max(float((high - low).max()), 1e-12)
    radius = float(np.clip(side / (3 * np.sqrt(count)), 1.5, 6.0))
    centre = (low + high) / 2
    for i, ((x, y), score) in enumerate(zip(points, scores)):
        px, py = side / 2 + (x - centre[0]) * scale, side / 2 - (y - centre[1]) * scale
        if with_thumbnails:
            assert thumbnail is not None
            left, top = int(px - size / 2), int(py - size / 2)
            canvas.paste(thumbnail(i).resize((size, size)), (left, top))  # type: ignore[attr-defined]
            draw.rectangle((left, top, left + size - 1, top + size - 1), outline=score_colour(score),
                           width=max(1, size // 24))
        else:
            draw.ellipse((px - radius, py - radius, px + radius, py + radius), fill=score_colour(score))
    return canvas


def atlas_index(paths: Sequence[str], scores: np.ndarray, layout: Layout, tile: int,
                notes: Sequence[dict], seconds: dict[str, float],
                quality: dict[str, float | None] | None = None) -> dict:
    """The content of atlas.json: every placed image once, with its t-SNE point and grid cell."""
    images = []
    for path, score, point, cell in zip(paths, scores, layout.tsne, layout.cells):
        text, raw = encode_path(path)
        entry: dict[str, object] = {"path": text, "score": None if not np.isfinite(score) else float(score),
                                    "tsne": [round(float(point[0]), 5), round(float(point[1]), 5)],
                                    "cell": [int(cell[0]), int(cell[1])]}
        if raw is not None:
            entry["path_bytes"] = raw
        images.append(entry)
    return {"images": images, "grid": list(layout.grid), "tile": tile, "method": layout.method,
            "projection": layout.projection, "seconds": seconds, "quality": quality or {}, "notes": list(notes)}


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>jaxnsfw atlas</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
html, body { margin: 0; height: 100%; background: #181818; color: #ddd; font: 13px system-ui, sans-serif; }
#view { position: fixed; inset: 0; overflow: hidden; cursor: grab; touch-action: none; }
#view.dragging { cursor: grabbing; }
#mosaic { position: absolute; left: 0; top: 0; transform-origin: 0 0; image-rendering: pixelated;
          user-select: none; -webkit-user-drag: none; }
#tip { position: fixed; pointer-events: none; background: rgba(0,0,0,.85); padding: 4px 7px; border-radius: 3px;
       white-space: nowrap; display: none; max-width: 80vw; overflow: hidden; text-overflow: ellipsis; }
#bar { position: fixed; left: 8px; bottom: 8px; background: rgba(0,0,0,.6); padding: 3px 7px; border-radius: 3px; }
</style></head>
<body>
<div id="view"><img id="mosaic" alt="atlas mosaic" src="__SRC__"></div>
<div id="tip"></div>
<div id="bar">__SUMMARY__ &middot; wheel: zoom &middot; drag: pan &middot; double-click: fit</div>
<script type="application/json" id="atlas-data">__DATA__</script>
<script>
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("atlas-data").textContent);
  const view = document.getElementById("view"), img = document.getElementById("mosaic");
  const tip = document.getElementById("tip");
  const rows = data.grid[0], cols = data.grid[1], tile = data.tile;
  const occupant = new Int32Array(rows * cols).fill(-1);
  data.images.forEach(function (image, i) { occupant[image.cell[0] * cols + image.cell[1]] = i; });
  let scale = 1, tx = 0, ty = 0;
  function apply() { img.style.transform = "translate(" + tx + "px," + ty + "px) scale(" + scale + ")"; }
  function fit() {
    const w = cols * tile, h = rows * tile;
    scale = Math.min(view.clientWidth / w, view.clientHeight / h);
    tx = (view.clientWidth - w * scale) / 2; ty = (view.clientHeight - h * scale) / 2; apply();
  }
  function cellAt(clientX, clientY) {
    const x = (clientX - tx) / scale, y = (clientY - ty) / scale;
    const col = Math.floor(x / tile), row = Math.floor(y / tile);
    if (row < 0 || col < 0 || row >= rows || col >= cols) return -1;
    return occupant[row * cols + col];
  }
  function show(event) {
    const i = cellAt(event.clientX, event.clientY);
    if (i < 0) { tip.style.display = "none"; tip.textContent = ""; return; }
    const image = data.images[i];
    tip.textContent = image.path + "  \\u2014  score " + (image.score === null ? "n/a" : image.score.toFixed(4));
    tip.style.display = "block";
    tip.style.left = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 4) + "px";
    tip.style.top = Math.min(event.clientY + 14, window.innerHeight - tip.offsetHeight - 4) + "px";
  }
  let drag = null;
  view.addEventListener("pointerdown", function (e) {
    drag = {x: e.clientX, y: e.clientY, tx: tx, ty: ty}; view.classList.add("dragging"); });
  window.addEventListener("pointerup", function () { drag = null; view.classList.remove("dragging"); });
  view.addEventListener("pointermove", function (e) {
    if (drag) { tx = drag.tx + e.clientX - drag.x; ty = drag.ty + e.clientY - drag.y; apply(); }
    show(e);
  });
  view.addEventListener("pointerleave", function () { tip.style.display = "none"; });
  view.addEventListener("wheel", function (e) {
    e.preventDefault();
    const factor = Math.exp(-e.deltaY * 0.0015), next = Math.max(0.02, Math.min(64, scale * factor));
    tx = e.clientX - (e.clientX - tx) * next / scale; ty = e.clientY - (e.clientY - ty) * next / scale;
    scale = next; apply(); show(e);
  }, {passive: false});
  view.addEventListener("dblclick", fit);
  window.addEventListener("resize", fit);
  // For scripts and tests: where a cell's centre is on the screen now.
  window.atlas = {data: data, cellCentre: function (row, col) {
    return {x: tx + (col + 0.5) * tile * scale, y: ty + (row + 0.5) * tile * scale}; }};
  fit();
})();
</script>
</body></html>
"""


def page(index: dict, mosaic_png: bytes | None, mosaic_name: str = "atlas.png") -> str:
    """index.html: the mosaic (inline as a data: URL up to MAX_INLINE_BYTES, else `mosaic_name`
    beside the page), pan and zoom, and the path and score of the tile under the pointer. No
    external resources."""
    if mosaic_png is not None and len(mosaic_png) <= MAX_INLINE_BYTES:
        src = "data:image/png;base64," + base64.b64encode(mosaic_png).decode("ascii")
    else:
        src = html.escape(mosaic_name, quote=True)
    data = {"grid": index["grid"], "tile": index["tile"],
            "images": [{"path": i["path"], "score": i["score"], "cell": i["cell"]} for i in index["images"]]}
    # Inside <script>, "</" could end the element early; "<\/" reads the same to JSON.parse.
    text = json.dumps(data, ensure_ascii=True).replace("</", "<\\/")
    summary = html.escape(f"{len(index['images'])} images, {index['grid'][1]}x{index['grid'][0]} grid")
    return _PAGE.replace("__SRC__", src).replace("__SUMMARY__", summary).replace("__DATA__", text)


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def render(paths: Sequence[str], scores: np.ndarray, layout: Layout, out_dir: str | os.PathLike,
           options: RenderOptions = RenderOptions(), notes: Sequence[dict] = (),
           seconds: dict[str, float] | None = None, quality: dict[str, float | None] | None = None,
           progress: Callable[[float], None] | None = None) -> list[str]:
    """Write atlas.png, atlas.json, index.html and tsne.png into `out_dir` (made if missing) for the
    images `paths` with `scores`, placed by `layout`. Returns the names written. `notes`: entries
    for atlas.json (images left out and why); unreadable tiles are added to them."""
    import time

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    scores = np.asarray(scores, np.float64)
    mosaic, tile, unreadable = draw_mosaic(paths, scores, layout, options, progress)
    mosaic_png = png_bytes(mosaic)
    (out / "atlas.png").write_bytes(mosaic_png)
    def tile_of(i: int):
        row, col = (int(v) for v in layout.cells[i])
        return mosaic.crop((col * tile, row * tile, (col + 1) * tile, (row + 1) * tile))

    draw_scatter(layout.tsne, scores, thumbnail=tile_of).save(out / "tsne.png")
    all_notes = [*notes, *({"path": encode_path(p)[0], "note": f"shown as a grey tile: {why}"}
                           for p, why in unreadable)]
    timing = dict(seconds or {})
    timing["render"] = round(time.perf_counter() - started, 3)
    index = atlas_index(paths, scores, layout, tile, all_notes, timing, quality)
    (out / "atlas.json").write_text(json.dumps(index, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (out / "index.html").write_text(page(index, mosaic_png), encoding="utf-8")
    return list(FILES)
