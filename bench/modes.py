"""Reference vs robust mode side by side on real files (the table in the README).

    python bench/modes.py [FOLDER ...]   # default: ../shared/caffe_reference/images/edge, tests/data/images

Prints a markdown table: each file's reference score, robust score, and the view that gave it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jaxnsfw
from jaxnsfw import bulk, preprocess
from jaxnsfw.options import ScoringOptions

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FOLDERS = [REPO.parent / "shared" / "caffe_reference" / "images" / "edge", REPO / "tests" / "data" / "images"]


def main(folders: list[str]) -> None:
    classifier = jaxnsfw.Classifier()
    print("| file | reference | robust | views scored | robust view |")
    print("| --- | --- | --- | --- | --- |")
    seen = set()
    for item in bulk.walk_inputs([str(f) for f in folders if Path(f).is_dir()]):
        name = Path(item.path).name
        if name in seen:
            continue
        seen.add(name)
        try:
            reference = classifier.score(item.path)
            robust_image = preprocess.prepare(item.path, ScoringOptions(mode="robust"))
        except preprocess.ImageError as err:
            print(f"| {name} | error: {str(err).split(': ', 1)[1][:60]} | | | |")
            continue
        verdict = classifier.verdicts([robust_image])[0]
        marker = " **(higher)**" if verdict.score > reference + 1e-6 else ""
        print(f"| {name} | {reference:.6f} | {verdict.score:.6f}{marker} | {len(robust_image.rgb256)} | "
              f"frame {verdict.frame} {verdict.rendering} |")


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT_FOLDERS)
