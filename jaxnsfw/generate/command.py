"""The `jaxnsfw inverse` command.

    jaxnsfw inverse IMAGE --target T --out OUT.png [--max-change K] [--steps N] [--seed S]
                    [--tolerance 0.01] [--jpeg-gradient near_boundary|straight_through|cubic]
                    [--weights FILE]

Edits IMAGE's pixels by at most K grey levels (default 2) until the reference score of OUT.png, as
written and read back, is within the tolerance of T. Prints one JSON line: path, out, target,
start_score, score (jaxnsfw.nsfw_score(OUT.png)), max_change (0..255), psnr, ssim, steps, seconds,
reached. Exit status: 0 target reached, 1 not reached (the closest image is still written) or
unreadable weights, 2 usage error (bad target, budget or OUT, unreadable IMAGE).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Building the parser must stay cheap (it runs for every `jaxnsfw` command): JAX and the search
# are imported only when `inverse` runs.


def add_inverse_command(subparsers) -> argparse.ArgumentParser:
    """Register `inverse` on the `jaxnsfw` command's subparsers (argparse add_subparsers())."""
    parser = subparsers.add_parser(
        "inverse", help="edit an image, within a few grey levels, until it scores a target",
        description="Optimizes IMAGE's own pixels through the exact reference preprocessing and the network, "
                    "changing none by more than --max-change grey levels, until OUT.png scores --target.")
    parser.add_argument("image", metavar="IMAGE", help="the image to edit")
    parser.add_argument("--target", type=float, required=True, metavar="T", help="the NSFW score to reach, 0..1")
    parser.add_argument("--out", required=True, metavar="OUT.png", help="where to write the edited image (PNG)")
    parser.add_argument("--max-change", type=int, default=2, metavar="K",
                        help="L-infinity budget: no pixel channel changes by more than K of 255 (default 2)")
    parser.add_argument("--steps", type=int, default=100, metavar="N", help="at most N gradient steps (default 100)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="picks among equally good edits (default 0)")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="success when |score - T| <= this (default 0.01)")
    parser.add_argument("--jpeg-gradient", default="near_boundary",
                        choices=["near_boundary", "straight_through", "cubic"],
                        help="the gradient through JPEG's quantization: near_boundary (default) counts only "
                             "coefficients a small change can requantize; straight_through treats JPEG as lossless")
    parser.add_argument("--weights", help="checkpoint written by `python -m convert` (default: shipped)")
    parser.set_defaults(run=run_inverse)
    return parser


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_inverse(args: argparse.Namespace, classifier=None) -> int:
    """The `inverse` command; `classifier` (tests) replaces loading --weights."""
    from jaxnsfw.generate.search import InverseConfig, check_target, inverse_rgb
    from jaxnsfw.jaxprep.pipeline import decoded_rgb
    from jaxnsfw.jaxprep.quantize import QuantizationGradient
    from jaxnsfw.preprocess import ImageError

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        return _usage_error(f"--out must name a .png file (the edit is only exact in a lossless format), got {out}")
    if not out.parent.is_dir():
        return _usage_error(f"--out: the folder {out.parent} does not exist")
    try:
        config = InverseConfig(max_change=args.max_change, steps=args.steps, seed=args.seed, tolerance=args.tolerance,
                               quantization_gradient=QuantizationGradient(args.jpeg_gradient))
        target = check_target(args.target)
    except ValueError as err:
        return _usage_error(str(err))
    try:
        rgb = decoded_rgb(args.image)
    except ImageError as err:
        return _usage_error(str(err))
    if classifier is None:
        from jaxnsfw.classifier import Classifier, default_classifier

        classifier = default_classifier() if args.weights is None else Classifier(args.weights)
    result = inverse_rgb(rgb, target, config, classifier, out, args.image)
    print(json.dumps(result.record()), flush=True)
    return 0 if result.reached else 1
