"""The pictures' small rules: score colours, the tile cap for huge grids, a page that no file name
can break out of."""

from __future__ import annotations

import json
import re

from jaxnsfw.atlas import pictures


def test_score_colours_run_from_green_through_yellow_to_red():
    assert pictures.score_colour(0.0) == (46, 160, 67)
    assert pictures.score_colour(0.5) == (240, 200, 67)
    assert pictures.score_colour(1.0) == (240, 0, 0)
    assert pictures.score_colour(float("nan")) == pictures.MISSING_TILE


def test_huge_grids_get_smaller_tiles_so_the_mosaic_stays_within_bounds():
    assert pictures.effective_tile(64, (32, 32)) == 64
    assert pictures.effective_tile(64, (316, 317)) * 317 <= pictures.MAX_MOSAIC_SIDE


def test_no_file_name_can_end_the_pages_script_early():
    hostile = "</script><script>alert(1)</script>.png"
    index = {"grid": [1, 1], "tile": 8, "images": [{"path": hostile, "score": 0.5, "cell": [0, 0]}]}
    page = pictures.page(index, b"\x89PNG")
    assert "</script><script>alert" not in page
    data = re.search(r'<script type="application/json" id="atlas-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data)["images"][0]["path"] == hostile
    assert 'src="data:image/png;base64,' in page and "http" not in page.split("<body>")[1]


def test_a_mosaic_too_large_to_inline_is_shown_from_beside_the_page():
    index = {"grid": [1, 1], "tile": 8, "images": []}
    assert 'src="atlas.png"' in pictures.page(index, None)
