"""The `jaxnsfw score` command.

    jaxnsfw score [PATH ...] [-r] [--out FILE.jsonl|.csv] [--resume] [--batch-size N] [--workers N]
                  [--mode reference|robust] [--fast] [--device-preprocess] [--exact] [--timeout S]
                  [--thresholds LOW HIGH] [--max-pixels N] [--max-frames N] [--max-view-pixels N]
                  [--weights FILE] [--engine local|ray [--ray-address ADDR] [--manifest FILE] [--block-size N]]

One record per file, in input order: JSON Lines on stdout or in --out (CSV when it ends in .csv),
each written and flushed as soon as its batch is scored. With no PATH it scores the bundled sample
image. A summary goes to stderr. Exit status: 0 all scored, 1 some inputs failed (their records
say why), 2 usage or output error (the message says which file and what), 130/143 interrupted
(every record written so far is kept; --resume finishes the run).
With --engine ray the same records are made on a Ray cluster and written as shards of the folder
--out (jaxnsfw.distributed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib import resources
from pathlib import Path

from jaxnsfw import arguments, interrupts
from jaxnsfw.distributed.engine import Engine, add_engine_arguments, check_engine_args
from jaxnsfw.options import MODE_NAMES, ScoringOptions

SAMPLE_IMAGE = "chelsea.png"
EXIT_OK, EXIT_INPUT_ERRORS, EXIT_USAGE = 0, 1, 2


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



def _count_inputs(args, skip: set[str], exclude) -> int | None:
    """Walk once just to count (cheap next to decoding), so the progress bar can show an ETA."""
    from jaxnsfw.bulk.walk import walk_inputs

    if not arguments.show_progress(args):
        return None
    return sum(1 for item in walk_inputs(args.paths, args.recursive, exclude) if item.path not in skip)


def use_one_cpu_device_per_core() -> None:
    """XLA runs much of this network's CPU forward pass on one thread; one CPU device per core,
    with each batch split across them, raises throughput (README, "Speed"). Only the CPU backend is
    affected, and only when the user has not chosen a device count."""
    if "JAX_NUM_CPU_DEVICES" in os.environ or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
    except RuntimeError:  # the backend is already initialized (jaxnsfw used as a library): leave it
        pass


def _check_pillow_once() -> None:
    """The installed Pillow against Pillow 13.0.0's known answers, said once per run, here (the
    workers check it too, silently, and use the exact ports wherever it differs)."""
    import warnings

    from jaxnsfw import pillow_compat

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pillow_compat.PillowFidelityWarning)
        pillow_compat.installed_fidelity()
    for warning in caught:
        print(f"note: {warning.message}", file=sys.stderr)


def _close(scorer, writer) -> None:
    if scorer is not None:
        scorer.close(now=True)
    if writer is not None:
        writer.close()


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _abandon_stdout() -> None:
    """After the reader of stdout went away: point stdout at /dev/null so that Python's final flush
    does not print a BrokenPipeError traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def score_command(args: argparse.Namespace) -> int:
    from jaxnsfw.bulk.pipeline import FileScorer, WorkerStartError
    from jaxnsfw.bulk.records import OutputClosed, OutputError, RecordWriter
    from jaxnsfw.bulk.walk import WalkCounts

    options = ScoringOptions(mode=args.mode, fast=args.fast, max_frames=args.max_frames,
                             max_view_pixels=args.max_view_pixels, max_pixels=args.max_pixels,
                             device_preprocess=args.device_preprocess)
    if args.engine is not Engine.LOCAL:
        from jaxnsfw.distributed.command import score_on_ray

        return score_on_ray(args, options)
    if not args.paths:
        args.paths = [str(sample_image_path())]
        print(f"no PATH given: scoring the bundled sample image {args.paths[0]}", file=sys.stderr)
    summary, counts = Summary(*args.thresholds), WalkCounts()
    started = time.perf_counter()
    writer = scorer = None
    try:
        # The output first: a locked, checked file before any work (and its inode, never scored).
        writer = RecordWriter(args.out, resume=args.resume)
        with interrupts.interruptible():
            if args.resume:
                print(f"resuming: {len(writer.recorded)} inputs already recorded in {args.out}", file=sys.stderr)
            exclude = [writer.key] if writer.key else []
            _check_pillow_once()
            use_one_cpu_device_per_core()
            from jaxnsfw.classifier import Classifier, bulk_batch_size

            classifier = Classifier(args.weights, exact=args.exact, batch_size=args.batch_size or bulk_batch_size())
            scorer = FileScorer(classifier, args.workers, options, timeout=args.timeout)
            from tqdm import tqdm

            with tqdm(total=_count_inputs(args, writer.recorded, exclude), unit="img",
                      disable=not arguments.show_progress(args), file=sys.stderr, smoothing=0.1) as progress:
                def warn(path: str, message: str) -> None:
                    progress.write(f"warning: {path}: {message}", file=sys.stderr)

                for record in scorer.score(args.paths, args.recursive, writer.recorded, exclude, counts, warn):
                    writer.write(record)
                    summary.add(record)
                    progress.update()
                    progress.set_postfix_str(f">{summary.high}: {summary.above}, errors: {summary.errors}",
                                             refresh=False)
                    interrupts.check()
    except OutputError as err:
        if isinstance(err, OutputClosed):
            _abandon_stdout()
        return _error(str(err))
    except WorkerStartError as err:
        return _error(str(err))
    except interrupts.Interrupted as stop:
        _close(scorer, writer)
        # Straight out: a normal interpreter shutdown can crash while XLA is still compiling.
        interrupts.exit_now(stop.exit_code, f"\n{stop}; every record above was written ({summary.line()}); "
                                            f"--resume finishes the run")
    finally:
        _close(scorer, writer)
    elapsed = time.perf_counter() - started
    rate = summary.total / elapsed if elapsed > 0 else 0.0
    skipped = counts.line()
    print(f"{summary.line()}{'; ' + skipped if skipped else ''}; {elapsed:.1f} s, {rate:.1f} inputs/s",
          file=sys.stderr)
    return EXIT_INPUT_ERRORS if summary.errors else EXIT_OK


def check_score_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors (exit 2) found before anything is loaded or read."""
    if args.resume and not args.out:
        parser.error("--resume needs --out (the file to resume)")
    if args.thresholds[0] > args.thresholds[1]:
        parser.error("--thresholds LOW HIGH needs LOW <= HIGH")
    if args.fast and args.device_preprocess:
        parser.error("--fast and --device-preprocess do not go together (the device resize is the reference one)")
    if args.workers < 0:
        parser.error("--workers must be 0 or more")
    check_engine_args(parser, args)


def add_score_command(commands) -> None:
    from jaxnsfw.bulk.pipeline import DEFAULT_TIMEOUT_S
    from jaxnsfw.constants import MAX_FRAMES, MAX_VIEW_PIXELS

    score = commands.add_parser("score", help="score images (default: the bundled sample)",
                                description="Score image files and folders; one record per file.")
    score.add_argument("paths", nargs="*", metavar="PATH", help="image files or folders")
    score.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    score.add_argument("--out", help="write records to this file (.jsonl, or .csv) instead of stdout; it is "
                                     "locked while the run writes it and never scored itself")
    score.add_argument("--resume", action="store_true",
                       help="keep the records already in --out (checked first), score only the inputs not "
                            "recorded yet, and append")
    score.add_argument("--mode", choices=MODE_NAMES, default=MODE_NAMES[0],
                       help="reference: Yahoo's pipeline exactly; robust: the maximum over what the file holds "
                            "and what a viewer is shown (EXIF rotation, alpha over white/black, ICC, 16-bit, "
                            "every frame)")
    score.add_argument("--batch-size", type=arguments.positive_int,
                       help="images per device batch (default: 8 on a CPU, 32 on an accelerator)")
    score.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="decoding processes (default: one per core; 0 decodes in this process)")
    score.add_argument("--timeout", type=arguments.positive_float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                       help=f"give up on a file whose decoding takes longer ({DEFAULT_TIMEOUT_S:g}; needs workers)")
    score.add_argument("--fast", action="store_true",
                       help="faster decoding (JPEG DCT scaling, box pre-reduction); scores move slightly")
    score.add_argument("--device-preprocess", action="store_true",
                       help="the CPU only decodes; the 256x256 resize and JPEG round trip run bit-exactly on the "
                            "JAX device")
    score.add_argument("--exact", action="store_true",
                       help="float64-accumulated convolutions: within 1e-6 of Caffe even on flat images (slower)")
    score.add_argument("--thresholds", nargs=2, type=arguments.probability, default=(0.2, 0.8), metavar=("LOW", "HIGH"),
                       help="score bands for the summary (0.2 0.8)")
    score.add_argument("--max-pixels", type=arguments.positive_int,
                       help="refuse images with more pixels (default: Pillow's limit, about 89 million)")
    score.add_argument("--max-frames", type=arguments.positive_int, default=MAX_FRAMES,
                       help=f"robust mode: frames scored per animation, spread evenly ({MAX_FRAMES}; fewer for large "
                            f"frames, so that one file's decoded views stay within a fixed pixel budget)")
    score.add_argument("--max-view-pixels", type=arguments.positive_int, default=MAX_VIEW_PIXELS, metavar="N",
                       help=f"robust mode: decoded pixels one file's views may hold; animations of large frames "
                            f"are sampled to fit ({MAX_VIEW_PIXELS:,})")
    arguments.add_progress_arguments(score)
    score.add_argument("--weights", help="checkpoint written by `python -m convert` (default: shipped)")
    add_engine_arguments(score)
    score.set_defaults(run=score_command, check=check_score_args, command_parser=score)
