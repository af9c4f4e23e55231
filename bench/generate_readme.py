"""The README's pictures for `inverse` and `evolve`, made by the commands themselves.

    python bench/generate_readme.py [--out docs/generate] [--only inverse,circles,triangles,imitation]

Writes, for the sample image (jaxnsfw/data/chelsea.png, CC0) and for pictures of shapes:
  chelsea_inverse.jpg     the photo, its edit to 0.99 within 2/255, and the change magnified 40x
  circles.png/.gif        50 circles evolved to >= 0.99 with the defaults, and their progress
  triangles.png/.gif      100 triangles, population 100, the same way
  chelsea_circles.png     the photo and 100 circles evolved to imitate it (--target-image)
Each step prints the command's JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "jaxnsfw" / "data" / "chelsea.png"


def jaxnsfw(*argv: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "jaxnsfw", *argv], capture_output=True, text=True, cwd=REPO)
    if done.returncode not in (0, 1):
        raise SystemExit(f"jaxnsfw {' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({"command": "jaxnsfw " + " ".join(argv), **record}), flush=True)
    return record


def side_by_side(pictures: list[np.ndarray], height: int = 256) -> Image.Image:
    resized = [Image.fromarray(p).resize((round(p.shape[1] * height / p.shape[0]), height), Image.LANCZOS)
               for p in pictures]
    panel = Image.new("RGB", (sum(r.width for r in resized) + 8 * (len(resized) - 1), height), "white")
    x = 0
    for picture in resized:
        panel.paste(picture, (x, 0))
        x += picture.width + 8
    return panel


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "generate")
    parser.add_argument("--only", default="inverse,circles,triangles,imitation")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as scratch:
        if "inverse" in wanted:
            edited = Path(scratch) / "chelsea.inverse.png"
            jaxnsfw("inverse", str(SAMPLE), "--target", "0.99", "--out", str(edited))
            before, after = pixels(SAMPLE), pixels(edited)
            change = np.clip(128 + 40 * (after.astype(int) - before), 0, 255).astype(np.uint8)
            # JPEG: an illustration (the exact edit is the PNG the command writes), a fifth of the size.
            side_by_side([before, after, change], height=300).save(args.out / "chelsea_inverse.jpg", quality=85)
        for shape, count, population in (("circles", 50, 50), ("triangles", 100, 100)):
            if shape in wanted:
                gif = Path(scratch) / f"{shape}.gif"
                jaxnsfw("evolve", "--shape", shape, "--count", str(count), "--population", str(population),
                        "--out", str(args.out / f"{shape}.png"), "--progress-gif", str(gif))
                with Image.open(gif) as animation:  # half size: the README shows it small
                    frames = [frame.convert("RGB").resize((128, 128)) for frame in _frames(animation)]
                frames[0].save(args.out / f"{shape}.gif", save_all=True, append_images=frames[1:], duration=120,
                               loop=0)
        if "imitation" in wanted:
            imitation = Path(scratch) / "chelsea_circles.png"
            jaxnsfw("evolve", "--shape", "circles", "--count", "100", "--generations", "400",
                    "--target-image", str(SAMPLE), "--out", str(imitation))
            from jaxnsfw.generate.evolution import target_rgb256

            side_by_side([target_rgb256(str(SAMPLE)), pixels(imitation)]).save(args.out / "chelsea_circles.png")


def _frames(animation: Image.Image):
    for index in range(animation.n_frames):
        animation.seek(index)
        yield animation.copy()


if __name__ == "__main__":
    main()
