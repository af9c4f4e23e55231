"""The `jaxnsfw` command.

    jaxnsfw score [PATH ...] [-r] [--out FILE.jsonl|.csv] [--resume] [--batch-size N] [--workers N]
                  [--mode reference|robust] [--fast] [--exact] [--thresholds LOW HIGH] [--weights FILE]
    jaxnsfw explain IMAGE --out DIR [--method occlusion|windows|deconvnet|guided|saliency|gradcam]

score: one record per input, in input order: JSON Lines on stdout or in --out (CSV when it ends in .csv),
each written and flushed as soon as its batch is scored. With no PATH it scores the bundled sample
image. A summary goes to stderr. Exit status: 0 all scored, 1 some failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib import resources
from pathlib import Path

SAMPLE_IMAGE = "chelsea.png"


def sample_image_path() -> Path:
    return Path(str(resources.files("jaxnsfw").joinpath("data", SAMPLE_IMAGE)))


class Summary:
    """Counts by score band and errors, for the end of a run and the progress bar."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high
        self.below = self.between = self.above = self.errors = 0

    def add(self, record) -> None:
        if record.error is not None:
            self.errors += 1
        elif record.score < self.low:
            self.below += 1
        elif record.score > self.high:
            self.above += 1
        else:
            self.between += 1

    @property
    def total(self) -> int:
        return self.below + self.between + self.above + self.errors

    def line(self) -> str:
        return (f"{self.total} inputs: {self.below} below {self.low}, {self.between} between, "
                f"{self.above} above {self.high}, {self.errors} errors")


def _progress_bar(args, inputs_total):
    from tqdm import tqdm

    show = args.progress if args.progress is not None else sys.stderr.isatty()
    return tqdm(total=inputs_total, unit="img", disable=not show, file=sys.stderr, smoothing=0.1)


def _count_inputs(args, skip: set[str]) -> int | None:
    """Walk once just to count (cheap next to decoding), so the progress bar can show an ETA."""
    from jaxnsfw import bulk

    show = args.progress if args.progress is not None else sys.stderr.isatty()
    if not show:
        return None
    return sum(1 for item in bulk.walk_inputs(args.paths, args.recursive) if item.path not in skip)


def use_one_cpu_device_per_core() -> None:
    """XLA runs much of this network's CPU forward pass on one thread; one CPU device per core,
    with each batch split across them, nearly doubles throughput at batch 8-32 (bench/peers.py).
    Only the CPU backend is affected, and only when the user has not chosen a device count."""
    if "JAX_NUM_CPU_DEVICES" in os.environ or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
    except RuntimeError:  # the backend is already initialized (jaxnsfw used as a library): leave it
        pass


def score_command(args: argparse.Namespace) -> int:
    from jaxnsfw import bulk, records

    use_one_cpu_device_per_core()
    from jaxnsfw.classifier import Classifier, bulk_batch_size

    if not args.paths:
        args.paths = [str(sample_image_path())]
        print(f"no PATH given: scoring the bundled sample image {args.paths[0]}", file=sys.stderr)
    skip: set[str] = set()
    if args.resume:
        try:
            skip = records.recorded_paths(args.out)
        except (ValueError, OSError) as err:
            print(f"error: cannot resume: {err}", file=sys.stderr)
            return 2
        print(f"resuming: {len(skip)} inputs already recorded in {args.out}", file=sys.stderr)
    if args.max_pixels is not None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = args.max_pixels

    classifier = Classifier(args.weights, exact=args.exact, batch_size=args.batch_size or bulk_batch_size())
    options = bulk.PrepareOptions(mode=args.mode, fast=args.fast, max_frames=args.max_frames,
                                  max_pixels=args.max_pixels, on_device=args.device_preprocess)
    summary = Summary(*args.thresholds)
    items = (item for item in bulk.walk_inputs(args.paths, args.recursive) if item.path not in skip)
    # Enough inputs in flight to fill the next batch while the device scores this one (fewer when
    # workers hand over full-size decoded images).
    window = (classifier.max_batch_size if args.device_preprocess else 2 * classifier.max_batch_size) + 4 * args.workers
    prepared = bulk.prepare_all(items, options, args.workers, window)
    started = time.perf_counter()
    with records.RecordWriter(args.out, append=args.resume) as writer, \
            _progress_bar(args, _count_inputs(args, skip)) as progress:
        try:
            for record in bulk.score_prepared(prepared, classifier, args.mode):
                writer.write(record)
                summary.add(record)
                progress.update()
                progress.set_postfix_str(f">{summary.high}: {summary.above}, errors: {summary.errors}", refresh=False)
        except KeyboardInterrupt:
            print(f"\ninterrupted; every record above was written. {summary.line()}", file=sys.stderr)
            return 130
    elapsed = time.perf_counter() - started
    rate = summary.total / elapsed if elapsed > 0 else 0.0
    print(f"{summary.line()}; {elapsed:.1f} s, {rate:.1f} inputs/s", file=sys.stderr)
    return 1 if summary.errors else 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {value}")
    return value


def add_score_command(commands) -> None:
    score = commands.add_parser("score", help="score images (default: the bundled sample)",
                                description="Score image files and folders; one record per input.")
    score.add_argument("paths", nargs="*", metavar="PATH", help="image files or folders")
    score.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    score.add_argument("--out", help="write records to this file (.jsonl, or .csv) instead of stdout")
    score.add_argument("--resume", action="store_true",
                       help="skip inputs already recorded in --out and append the rest")
    score.add_argument("--mode", choices=("reference", "robust"), default="reference",
                       help="reference: Yahoo's pipeline exactly; robust: the maximum over what the file holds "
                            "and what a viewer is shown (EXIF rotation, alpha over white/black, ICC, 16-bit, "
                            "every frame)")
    score.add_argument("--batch-size", type=_positive_int,
                       help="images per device batch (default: 8 on a CPU, 32 on an accelerator)")
    score.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="decoding processes (default: one per core; 0 decodes in this process)")
    score.add_argument("--fast", action="store_true",
                       help="faster decoding (JPEG DCT scaling, box pre-reduction); scores move slightly")
    score.add_argument("--device-preprocess", action="store_true",
                       help="the CPU only decodes; the 256x256 resize and JPEG round trip run bit-exactly on the "
                            "JAX device")
    score.add_argument("--exact", action="store_true",
                       help="float64-accumulated convolutions: within 1e-6 of Caffe even on flat images (slower)")
    score.add_argument("--thresholds", nargs=2, type=_probability, default=(0.2, 0.8), metavar=("LOW", "HIGH"),
                       help="score bands for the summary (0.2 0.8)")
    score.add_argument("--max-pixels", type=_positive_int,
                       help="refuse images with more pixels (default: Pillow's limit, about 89 million)")
    score.add_argument("--max-frames", type=_positive_int, default=256,
                       help="robust mode: frames scored per animation, spread evenly (256)")
    progress = score.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="progress bar on stderr (default: when stderr is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    score.add_argument("--weights", help="checkpoint written by `python -m convert` (default: shipped)")
    score.set_defaults(run=score_command, command_parser=score)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxnsfw", description="Yahoo's open_nsfw classifier in JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_score_command(commands)
    from jaxnsfw.explain.command import add_explain_command

    add_explain_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "score":
        if args.resume and not args.out:
            args.command_parser.error("--resume needs --out (the file to resume)")
        if args.thresholds[0] > args.thresholds[1]:
            args.command_parser.error("--thresholds LOW HIGH needs LOW <= HIGH")
        if args.fast and args.device_preprocess:
            args.command_parser.error("--fast and --device-preprocess do not go together (the device resize is "
                                      "the reference one)")
        if args.workers < 0:
            args.command_parser.error("--workers must be 0 or more")
    try:
        from jaxnsfw.checkpoint import CheckpointError

        return args.run(args)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
