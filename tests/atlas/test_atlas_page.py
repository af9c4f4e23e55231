"""The atlas page in a real headless browser (Debian's chromium): it loads with no console errors,
shows the mosaic, and the tooltip names the right file for the tile under the pointer, before and
after zooming."""

from __future__ import annotations

import json

import pytest
from atlas_helpers import images_parquet

from jaxnsfw.atlas import run_job
from jaxnsfw.atlas.headless import Browser, find_chromium

pytest.importorskip("openTSNE")
if find_chromium() is None:
    pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    out = tmp_path_factory.mktemp("atlas")
    run_job(None, images_parquet(), out, {"tile": 32, "color_by": "score"}, lambda f, s: None)
    return out, json.loads((out / "atlas.json").read_text())


def tooltip_at_cell(browser: Browser, row: int, col: int) -> str:
    centre = browser.evaluate(f"window.atlas.cellCentre({row}, {col})")
    browser.move_mouse(centre["x"], centre["y"])
    return browser.evaluate("document.getElementById('tip').textContent")


def test_the_page_shows_the_mosaic_and_names_the_tile_under_the_pointer(atlas):
    out, index = atlas
    with Browser() as browser:
        browser.open(out / "index.html")
        rows, cols = index["grid"]
        assert browser.evaluate("document.getElementById('mosaic').complete") is True
        assert browser.evaluate("document.getElementById('mosaic').naturalWidth") == cols * 32
        assert browser.evaluate("document.getElementById('mosaic').src.startsWith('data:image/png')")
        for image in index["images"][:4] + index["images"][-2:]:
            text = tooltip_at_cell(browser, *image["cell"])
            assert text.startswith(image["path"] + " ") and f"score {image['score']:.4f}" in text
        occupied = {tuple(i["cell"]) for i in index["images"]}
        empty = next((r, c) for r in range(rows) for c in range(cols) if (r, c) not in occupied)
        assert tooltip_at_cell(browser, *empty) == ""  # an empty cell names nothing

        # Zoom in around the middle with the wheel: the tooltip still follows the tiles.
        browser.call("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": 500, "y": 375, "deltaX": 0,
                                                  "deltaY": -400})
        assert browser.evaluate("document.getElementById('mosaic').style.transform").count("scale") == 1
        width, height = browser.width, browser.height
        on_screen = [i for i in index["images"]
                     if 0 < (c := browser.evaluate(f"window.atlas.cellCentre({i['cell'][0]}, {i['cell'][1]})"))["x"]
                     < width and 0 < c["y"] < height]
        assert 0 < len(on_screen) < len(index["images"])  # zoomed in: some tiles left the screen
        for image in on_screen[:3]:
            assert tooltip_at_cell(browser, *image["cell"]).startswith(image["path"] + " ")
        assert browser.console_errors() == []
        assert browser.screenshot()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not browser.running()  # the browser is gone
