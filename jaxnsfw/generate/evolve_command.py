"""The `jaxnsfw evolve` command.

    jaxnsfw evolve --shape circles|triangles --count N --out OUT.png [--population P]
                   [--generations G] [--strategy ga|cma-es|...] [--spread S] [--target T | --target-image IMG]
                   [--seed S] [--progress-gif FILE] [--weights FILE]

Prints one JSON line: out, score (jaxnsfw.nsfw_score(OUT.png)), generations, evaluations,
evaluations_per_s, seconds, reached, and the settings. Exit status: 0 target reached (or, with
--target-image, the run finished), 1 not reached (the best picture is still written) or unreadable
weights, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Names for the parser without importing JAX or evosax (the parser is built for every command).
SHAPES = ("circles", "triangles")
STRATEGIES = ("ga", "simple-ga", "cma-es", "sep-cma-es", "snes", "pgpe", "de")


def add_evolve_command(subparsers) -> argparse.ArgumentParser:
    """Register `evolve` on the `jaxnsfw` command's subparsers (argparse add_subparsers())."""
    parser = subparsers.add_parser(
        "evolve", help="evolve a picture of coloured shapes that the network scores at a target",
        description="Evolves pictures of --count translucent shapes, drawn and scored a whole population at a "
                    "time through the exact JPEG round trip and the network, until OUT.png scores --target "
                    "(or, with --target-image, until --generations have imitated that picture).")
    parser.add_argument("--shape", choices=SHAPES, default="circles",
                        help="what the picture is made of (default circles)")
    parser.add_argument("--count", type=int, default=50, metavar="N", help="shapes per picture (default 50)")
    parser.add_argument("--out", required=True, metavar="OUT.png", help="where to write the best picture (PNG)")
    parser.add_argument("--population", type=int, metavar="P",
                        help="pictures per generation (default 50 for circles, 100 for triangles)")
    parser.add_argument("--generations", type=int, metavar="G",
                        help="at most G generations (default 200)")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="ga: DEAP's eaSimple (tournament 3, crossover 0.5, mutation 0.1); the others are "
                             "evosax's, in the evolve extra (default ga for circles, cma-es for triangles)")
    parser.add_argument("--spread", type=float, metavar="S",
                        help="how far the evosax strategies search around their start at first, in genes (0..1; "
                             "default 0.1 for circles, 0.02 for triangles); ga does not use it")
    parser.add_argument("--target", type=float, default=1.0, metavar="T",
                        help="the NSFW score to reach, 0..1 (default 1: stop once within --tolerance of it)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="success when |score - T| <= this (default 0.01)")
    parser.add_argument("--target-image", metavar="IMG", help="imitate this picture instead of reaching a score")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="the run is the same for the same seed")
    parser.add_argument("--progress-gif", metavar="FILE", help="write the best picture every few generations as an "
                                                              "animated GIF")
    parser.add_argument("--weights", help="checkpoint written by `python -m convert` (default: shipped)")
    parser.set_defaults(run=run_evolve)
    return parser


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _writable_folder(option: str, path: Path) -> str | None:
    if not path.parent.is_dir():
        return f"{option}: the folder {path.parent} does not exist"
    if path.is_dir():
        return f"{option}: {path} is a folder"
    return None


def write_gif(path: str, frames) -> None:
    from PIL import Image

    pictures = [Image.fromarray(frame) for frame in frames]
    # 80 ms a frame, and the last picture held for two seconds.
    durations = [80] * (len(pictures) - 1) + [2000]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations, loop=0)


def run_evolve(args: argparse.Namespace, classifier=None) -> int:
    """The `evolve` command; `classifier` (tests) replaces loading --weights."""
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        return _usage_error(f"--out must name a .png file (the picture is only exact in a lossless format), got {out}")
    problem = _writable_folder("--out", out)
    if problem is None and args.progress_gif is not None:
        gif = Path(args.progress_gif)
        problem = _writable_folder("--progress-gif", gif)
        if problem is None and gif.suffix.lower() != ".gif":
            problem = f"--progress-gif must name a .gif file, got {gif}"
    if problem is not None:
        return _usage_error(problem)

    from jaxnsfw.generate.evolution import EvolveConfig, evolve, target_rgb256
    from jaxnsfw.generate.strategies import MissingExtra, check_available
    from jaxnsfw.preprocess import ImageError

    try:
        config = EvolveConfig(shape=args.shape, count=args.count, population=args.population,
                              generations=args.generations, strategy=args.strategy, spread=args.spread,
                              target=args.target, tolerance=args.tolerance, seed=args.seed)
        settings = config.settings()
        check_available(settings.strategy)
    except (ValueError, MissingExtra) as err:
        return _usage_error(str(err))
    target_picture = None
    if args.target_image is not None:
        try:
            target_picture = target_rgb256(args.target_image)
        except (ImageError, OSError) as err:
            return _usage_error(f"--target-image: {err}")
    if classifier is None:
        from jaxnsfw.classifier import Classifier, default_classifier

        classifier = default_classifier() if args.weights is None else Classifier(args.weights)
    from tqdm import tqdm

    measure = "score" if target_picture is None else "rmse"
    with tqdm(total=settings.generations, unit="gen", disable=not sys.stderr.isatty(), leave=False) as bar:
        def progress(generation: int, best: float) -> None:
            bar.update(generation - bar.n)
            bar.set_postfix({measure: f"{best:.4f}"}, refresh=False)

        result = evolve(config, classifier, target_picture=target_picture, out=out, progress=progress)
    if args.progress_gif is not None:
        write_gif(args.progress_gif, result.frames)
    print(json.dumps(result.record()), flush=True)
    return 0 if result.reached or target_picture is not None else 1
