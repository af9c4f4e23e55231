"""The README's explanation pictures: every method on the bundled sample image, into docs/explain/.

    python bench/explain_readme.py

Panels are written with a 256-colour palette to stay small (each well under 150 KB); the raw maps
are not committed (`jaxnsfw explain` writes them as .npy).
"""

from __future__ import annotations

from pathlib import Path

from jaxnsfw import Classifier
from jaxnsfw.cli import sample_image_path
from jaxnsfw.explain.command import ExplainOptions, explain_image, write_explanation
from jaxnsfw.explain.scoring import reference_input, source_rgb

DOCS = Path(__file__).resolve().parent.parent / "docs" / "explain"

# (file stem, options, what the panel shows)
PANELS = [
    ("occlusion", ExplainOptions(method="occlusion", box=64, stride=16)),
    ("windows", ExplainOptions(method="windows", box=128, stride=16)),
    ("saliency", ExplainOptions(method="saliency")),
    ("guided", ExplainOptions(method="guided")),
    ("deconvnet_relu_stage1_block3_ch5", ExplainOptions(method="deconvnet", target="channel",
                                                         layer="relu_stage1_block3", channel=5)),
    ("gradcam_nsfw", ExplainOptions(method="gradcam", target="nsfw")),
    ("gradcam_sfw", ExplainOptions(method="gradcam", target="sfw")),
]


def main() -> None:
    image = sample_image_path()
    rgb = source_rgb(image)
    classifier = Classifier()
    score = float(classifier.forward(reference_input(rgb)[None]).probs[0, 1])
    for stem, options in PANELS:
        explanation = explain_image(rgb, classifier, options)
        geometry = f", box {options.box} stride {options.stride}" if options.method in ("occlusion", "windows") else ""
        title = f"{image.name}: {options.method} ({options.describe_target()}{geometry}), NSFW score {score:.4g}"
        paths = write_explanation(DOCS, f"chelsea.{stem}", rgb, explanation, title, palette=True)
        Path(paths["map"]).unlink()  # the raw map stays out of the repository
        Path(paths["overlay"]).unlink()  # the panel has the overlay
        size = Path(paths["panel"]).stat().st_size
        print(f"{paths['panel']}: {size / 1024:.0f} KB; map min {explanation.values.min():.3g} "
              f"max {explanation.values.max():.3g}")


if __name__ == "__main__":
    main()
