"""The `jaxnsfw explain` command.

    jaxnsfw explain IMAGE --out DIR [--method occlusion|windows|deconvnet|guided|saliency|gradcam]
                    [--box 64] [--stride N] [--fill grey|mean|black|blur] [--blur-radius R]
                    [--target nsfw|sfw|channel] [--layer NAME] [--channel K] [--batch-size 64]

Writes DIR/<stem>.<method>.npy (the raw H x W map, float32, at the image's resolution),
<stem>.<method>.overlay.png and <stem>.<method>.panel.png, and prints one JSON line naming them with
the image's NSFW score. Exit status: 0 written, 1 unreadable image or weights, 2 usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# Building the parser must stay cheap (it runs for every `jaxnsfw` command), so JAX, Flax, NumPy and
# the explanation modules are imported only when `explain` runs; the names it offers come from the
# JAX-free constants module, which the explanation modules read too.
from jaxnsfw import arguments
from jaxnsfw.constants import CLASS_INDEX, PERTURBATION_METHODS
from jaxnsfw.constants import EXPLAIN_METHODS as METHODS
from jaxnsfw.constants import GRADCAM_DEFAULT_LAYER as DEFAULT_LAYER
from jaxnsfw.constants import GRADIENT_METHODS as GRADIENT_METHODS  # re-exported: tests read command.GRADIENT_METHODS
from jaxnsfw.constants import OCCLUSION_FILLS as FILLS

if TYPE_CHECKING:  # annotations only: NumPy is imported when `explain` runs
    import numpy as np


class UsageError(ValueError):
    """Options that do not go together; the command exits 2."""


@dataclasses.dataclass(frozen=True)
class ExplainOptions:
    method: str = "gradcam"
    box: int = 64
    stride: int | None = None  # default box / 4
    fill: str = "grey"
    blur_radius: float | None = None
    target: str = "nsfw"  # nsfw | sfw | channel
    layer: str | None = None  # channel target's layer; Grad-CAM's feature layer
    channel: int | None = None
    batch_size: int = 64

    def gradient_target(self):
        """The backprop.Target of a gradient method."""
        from jaxnsfw.explain.backprop import Target

        if self.target == "channel":
            if self.method == "gradcam":
                raise UsageError("--target channel is for saliency, guided and deconvnet; "
                                 "Grad-CAM explains nsfw or sfw")
            if self.layer is None or self.channel is None:
                raise UsageError("--target channel needs --layer NAME and --channel K")
            return Target(self.layer, self.channel)
        return Target(None, CLASS_INDEX[self.target])

    def describe_target(self) -> str:
        if self.method in PERTURBATION_METHODS:
            return f"{self.target} probability"
        return self.gradient_target().describe()


@dataclasses.dataclass(frozen=True)
class Explanation:
    values: "np.ndarray"  # (H, W) float32 on the source image
    signal: "np.ndarray | None" = None  # (H, W, C) saliency/guided/deconvnet signal on the source, model channel order


def explain_image(rgb, classifier, options: ExplainOptions) -> Explanation:
    """One explanation of a source RGB image (uint8 H x W x 3) with a jaxnsfw.Classifier."""
    from jaxnsfw.explain.backprop import classifier_network, gradient_explanation, signal_to_source
    from jaxnsfw.explain.gradcam import gradcam_map
    from jaxnsfw.explain.occlusion import occlusion_map
    from jaxnsfw.explain.scoring import classifier_scorer
    from jaxnsfw.explain.windows import window_map

    if options.method in PERTURBATION_METHODS:
        if options.target not in CLASS_INDEX:
            raise UsageError(f"{options.method} explains a class probability: --target nsfw or sfw")
        scorer = classifier_scorer(classifier, options.target, options.batch_size)
        if options.method == "occlusion":
            return Explanation(occlusion_map(rgb, scorer, options.box, options.stride, options.fill,
                                             options.blur_radius))
        return Explanation(window_map(rgb, scorer, options.box, options.stride))
    target = options.gradient_target()
    network = dataclasses.replace(classifier_network(classifier), batch_size=1)
    if options.method == "gradcam":
        return Explanation(gradcam_map(rgb, network, options.layer or DEFAULT_LAYER, target))
    values, signal = gradient_explanation(rgb, network, options.method, target)
    return Explanation(values, signal_to_source(signal, rgb.shape[:2], network.geometry))


def add_explain_command(subparsers) -> argparse.ArgumentParser:
    """Register `explain` on the `jaxnsfw` command's subparsers (argparse add_subparsers())."""
    parser = subparsers.add_parser(
        "explain", help="maps of what the network looks at in an image",
        description="Occlusion and sliding-window maps, saliency, guided backprop, deconvnet and Grad-CAM "
                    "of one image, drawn at the image's own resolution.")
    parser.add_argument("image", metavar="IMAGE", help="the image to explain")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the .npy map and the PNGs")
    parser.add_argument("--method", choices=METHODS, default="gradcam", help="default: gradcam")
    parser.add_argument("--box", type=arguments.positive_int, default=64,
                        help="occlusion/window box size in image pixels (default 64)")
    parser.add_argument("--stride", type=arguments.positive_int, help="box step in image pixels (default box/4)")
    parser.add_argument("--fill", choices=FILLS, default="grey", help="what hides an occluded box (default grey)")
    parser.add_argument("--blur-radius", type=float, help="Gaussian radius for --fill blur (default box/4)")
    parser.add_argument("--target", choices=("nsfw", "sfw", "channel"), default="nsfw",
                        help="what to explain: the class (probability for occlusion/windows, logit for gradient "
                             "methods) or, for saliency/guided/deconvnet, --channel of --layer at its strongest")
    parser.add_argument("--layer", help=f"the channel target's layer (Caffe name, e.g. relu_stage1_block3); for "
                                        f"gradcam the feature layer (default {DEFAULT_LAYER})")
    parser.add_argument("--channel", type=int, help="channel of --layer for --target channel")
    parser.add_argument("--batch-size", type=arguments.positive_int, default=64,
                        help="occluded/window images prepared and scored per call (default 64)")
    parser.add_argument("--weights", help="checkpoint written by `python -m convert` (default: shipped)")
    parser.add_argument("--cmap", help="matplotlib colormap (default: RdBu_r for signed maps, inferno otherwise)")
    parser.set_defaults(run=run_explain)
    return parser


def options_from(args: argparse.Namespace) -> ExplainOptions:
    return ExplainOptions(method=args.method, box=args.box, stride=args.stride, fill=args.fill,
                          blur_radius=args.blur_radius, target=args.target, layer=args.layer, channel=args.channel,
                          batch_size=args.batch_size)


def write_explanation(out: Path, stem: str, rgb, explanation: Explanation, title: str,
                      cmap: str | None = None, palette: bool = False) -> dict[str, str]:
    """DIR/<stem>.npy, <stem>.overlay.png, <stem>.panel.png; returns their paths. Without
    matplotlib (the `explain` extra) only the .npy map is written."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"{stem}.{suffix}" for kind, suffix in
             (("map", "npy"), ("overlay", "overlay.png"), ("panel", "panel.png"))}
    np.save(paths["map"], explanation.values)
    if not matplotlib_available():
        return {"map": str(paths["map"])}
    from jaxnsfw.explain import render

    render.save_png(paths["overlay"], render.overlay(rgb, explanation.values, cmap=cmap), palette)
    signal = None if explanation.signal is None else render.signal_image(explanation.signal)
    render.save_png(paths["panel"], render.panel(rgb, explanation.values, title, signal, cmap=cmap), palette)
    return {kind: str(path) for kind, path in paths.items()}


def prepare_output_folder(out: Path) -> None:
    """--out made (with its parents) and writable, or UsageError saying what is wrong with it."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {out}: cannot make the folder: {err.strerror or err}") from None
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out {out}: the folder is not writable")


def matplotlib_available() -> bool:
    """Whether the pictures can be drawn (matplotlib comes with `pip install "jaxnsfw[explain]"`)."""
    return importlib.util.find_spec("matplotlib") is not None


MISSING_MATPLOTLIB = ('matplotlib is not installed, so only the .npy map will be written; '
                      'pip install "jaxnsfw[explain]" for the overlay and panel PNGs')


def run_explain(args: argparse.Namespace, classifier=None) -> int:
    """The `explain` command; `classifier` (tests) replaces loading --weights."""
    from jaxnsfw.explain.geometry import default_stride
    from jaxnsfw.explain.scoring import reference_input, source_rgb
    from jaxnsfw.preprocess import ImageError

    options = options_from(args)
    try:
        if options.method not in PERTURBATION_METHODS:
            options.gradient_target()  # check the target options before any work
        if options.method in PERTURBATION_METHODS and options.target == "channel":
            raise UsageError(f"{options.method} explains a class probability: --target nsfw or sfw")
        prepare_output_folder(Path(args.out))  # before any work: a bad --out must not cost the map
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not matplotlib_available():
        print(f"warning: {MISSING_MATPLOTLIB}", file=sys.stderr)  # said before the map is computed
    try:
        rgb = source_rgb(args.image)
    except ImageError as err:
        print(json.dumps({"path": args.image, "error": str(err)}), flush=True)
        return 1
    if classifier is None:
        from jaxnsfw.classifier import Classifier

        classifier = Classifier(args.weights)
    score = float(classifier.forward(reference_input(rgb)[None]).probs[0, CLASS_INDEX["nsfw"]])
    try:
        explanation = explain_image(rgb, classifier, options)
    except ValueError as err:  # UsageError, or an unknown --layer or channel found while tracing
        print(f"error: {err}", file=sys.stderr)
        return 2
    stride = options.stride or default_stride(options.box)
    geometry = f", box {options.box} stride {stride}" if options.method in PERTURBATION_METHODS else ""
    title = f"{Path(args.image).name}: {options.method} ({options.describe_target()}{geometry}), NSFW score {score:.4g}"
    try:
        paths = write_explanation(Path(args.out), f"{Path(args.image).stem}.{options.method}", rgb, explanation,
                                  title, args.cmap)
    except OSError as err:
        print(f"error: cannot write the explanation into {args.out}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(json.dumps({"path": args.image, "method": options.method, "target": options.describe_target(),
                      "score": score, **paths}), flush=True)
    return 0
