"""The `jaxnsfw` command.

    jaxnsfw score [PATH ...] [-r] [--exact] [--weights FILE]

Prints one JSON line per input, {"path", "score"} or {"path", "error"}, in input order. With no
PATH it scores the bundled sample image. Exit status: 0 all scored, 1 some failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

SAMPLE_IMAGE = "chelsea.png"


def sample_image_path() -> Path:
    return Path(str(resources.files("jaxnsfw").joinpath("data", SAMPLE_IMAGE)))


def expand_inputs(paths: list[str], recursive: bool) -> list[str]:
    """Files as given; folders expanded to their files (sorted), descending only with -r."""
    inputs = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            try:
                children = sorted(p.rglob("*") if recursive else p.iterdir())
            except OSError as err:  # an unreadable folder is reported like an unreadable file
                inputs.append(path)
                print(f"warning: {path}: {err}", file=sys.stderr)
                continue
            inputs.extend(str(child) for child in children if child.is_file())
        else:
            inputs.append(path)
    return inputs


def score_command(args: argparse.Namespace) -> int:
    from jaxnsfw.classifier import Classifier
    from jaxnsfw.preprocess import ImageError

    paths = args.paths
    if not paths:
        paths = [str(sample_image_path())]
        print(f"no PATH given: scoring the bundled sample image {paths[0]}", file=sys.stderr)
    classifier = Classifier(args.weights, exact=args.exact)
    failed = 0
    for path in expand_inputs(paths, args.recursive):
        try:
            record = {"path": path, "score": classifier.score(path)}
        except ImageError as err:
            failed += 1
            record = {"path": path, "error": str(err)}
        print(json.dumps(record), flush=True)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxnsfw", description="Yahoo's open_nsfw classifier in JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score images (default: the bundled sample)")
    score.add_argument("paths", nargs="*", metavar="PATH", help="image files or folders")
    score.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    score.add_argument("--exact", action="store_true",
                       help="float64-accumulated convolutions: within 1e-6 of Caffe even on flat images (slower)")
    score.add_argument("--weights", help="checkpoint written by `python -m convert` (default: shipped)")
    score.set_defaults(run=score_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from jaxnsfw.checkpoint import CheckpointError

        return args.run(args)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
