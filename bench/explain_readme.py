"""The README's explanation pictures: every method on the bundled sample image, into docs/explain/.

    python bench/explain_readme.py

Panels are written with a 256-colour palette to stay small (each well under 150 KB); the raw maps
are not committed (`jaxnsfw explain` writes them as .npy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxnsfw import Classifier
from jaxnsfw.cli import sample_image_path
from jaxnsfw.explain.command import ExplainOptions, explain_image, write_explanation
from jaxnsfw.explain.scoring import reference_input, source_rgb
from jaxnsfw.model import layer_outputs

DOCS = Path(__file__).resolve().parent.parent / "docs" / "explain"

DECONVNET_LAYER = "relu_stage1_block3"  # the end of the second stage: mid-level features, 28x28

# (file stem, options); the deconvnet panel is added in main(), for the image's strongest channel.
PANELS = [
    ("occlusion", ExplainOptions(method="occlusion", box=64, stride=16)),
    ("windows", ExplainOptions(method="windows", box=128, stride=16)),
    ("saliency", ExplainOptions(method="saliency")),
    ("guided", ExplainOptions(method="guided")),
    ("gradcam_nsfw", ExplainOptions(method="gradcam", target="nsfw")),
    ("gradcam_sfw", ExplainOptions(method="gradcam", target="sfw")),
]


def main() -> None:
    image = sample_image_path()
    rgb = source_rgb(image)
    classifier = Classifier()
    score = float(classifier.forward(reference_input(rgb)[None]).probs[0, 1])
    # Zeiler & Fergus project a strong activation: take the channel of the layer that fires hardest.
    _, layers = layer_outputs(classifier.model, classifier.variables, reference_input(rgb)[None])
    channel = int(np.asarray(layers[DECONVNET_LAYER])[0].max(axis=(0, 1)).argmax())
    deconvnet = ExplainOptions(method="deconvnet", target="channel", layer=DECONVNET_LAYER, channel=channel)
    for stem, options in PANELS[:4] + [(f"deconvnet_{DECONVNET_LAYER}_ch{channel}", deconvnet)] + PANELS[4:]:
        explanation = explain_image(rgb, classifier, options)
        geometry = f", box {options.box} stride {options.stride}" if options.method in ("occlusion", "windows") else ""
        title = f"{image.name}: {options.method} ({options.describe_target()}{geometry}), NSFW score {score:.4g}"
        paths = write_explanation(DOCS, f"chelsea.{stem}", rgb, explanation, title, palette=True)
        Path(paths["map"]).unlink()  # the raw map stays out of the repository
        Path(paths["overlay"]).unlink()  # the panel has the overlay
        size = Path(paths["panel"]).stat().st_size
        print(f"{paths['panel']}: {size / 1024:.0f} KB; map min {np.nanmin(explanation.values):.3g} "
              f"max {np.nanmax(explanation.values):.3g}")


if __name__ == "__main__":
    main()
