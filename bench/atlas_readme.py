"""The README's atlas pictures: the reference images laid out by `jaxnsfw.atlas`, and the page.

    python bench/atlas_readme.py     # writes docs/atlas/reference_atlas.jpg, reference_tsne.jpg, page.jpg

Only the reference images whose licence lets the project show them (public domain, CC0, BSD,
Apache, MIT-style: see ../shared/caffe_reference/MANIFEST.tsv) and that are safe content (all of
them are). Paths are relative to ../shared, so the page shows short names. The screenshot is taken
by the headless Chromium the tests use, with the pointer over one tile.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
DOCS = REPO / "docs" / "atlas"
PERMISSIVE = ("public domain", "cc0", "bsd", "apache", "expat", "matplotlib", "no known copyright")


def showable_images() -> list[str]:
    manifest = SHARED / "caffe_reference" / "MANIFEST.tsv"
    with manifest.open(encoding="utf-8") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    return [f"caffe_reference/images/{row['path']}" for row in rows
            if row["license"].lower().startswith(PERMISSIVE)]


def main() -> None:
    from PIL import Image

    from jaxnsfw.atlas import run_job
    from jaxnsfw.atlas.headless import Browser

    DOCS.mkdir(parents=True, exist_ok=True)
    os.chdir(SHARED)
    paths = showable_images()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        run_job(paths, None, out, {"tile": 64, "color_by": "score", "seed": 0, "workers": 2},
                lambda fraction, stage: print(f"\r{stage} {100 * fraction:.0f}%", end="", file=sys.stderr))
        print(file=sys.stderr)
        index = json.loads((out / "atlas.json").read_text())
        Image.open(out / "atlas.png").convert("RGB").save(DOCS / "reference_atlas.jpg", quality=82, optimize=True)
        Image.open(out / "tsne.png").resize((512, 512), Image.Resampling.LANCZOS).save(
            DOCS / "reference_tsne.jpg", quality=82, optimize=True)
        with Browser(width=900, height=600) as browser:
            browser.open(out / "index.html")
            picked = next(i for i in index["images"] if "chelsea" in i["path"]) if any(
                "chelsea" in i["path"] for i in index["images"]) else index["images"][0]
            centre = browser.evaluate(f"window.atlas.cellCentre({picked['cell'][0]}, {picked['cell'][1]})")
            browser.move_mouse(centre["x"], centre["y"])
            shot = out / "page.png"
            shot.write_bytes(browser.screenshot())
            assert browser.console_errors() == [], browser.console_errors()
        Image.open(shot).convert("RGB").save(DOCS / "page.jpg", quality=80, optimize=True)
    left_out = [n for n in index["notes"] if n["note"].startswith("left out")]
    print(json.dumps({"images": len(index["images"]), "left_out": [n["path"] for n in left_out],
                      "grid": index["grid"], "method": index["method"], "seconds": index["seconds"],
                      "quality": index["quality"]}))
    for name in sorted(os.listdir(DOCS)):
        print(f"docs/atlas/{name}: {os.path.getsize(DOCS / name) // 1024} kB")


if __name__ == "__main__":
    main()
