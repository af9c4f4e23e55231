"""The `jaxnsfw embed` and `jaxnsfw atlas` commands.

    jaxnsfw embed PATH... [-r] --out FILE.parquet|FILE.npz [--resume] [--workers N] [--batch-size N]
                  [--mode reference|robust] [--fast] [--timeout S] [--weights FILE]
                  [--engine ray --out DIR [--ray-address ADDR] [--manifest FILE] [--block-size N]]
    jaxnsfw atlas PATH...|FILE.parquet --out DIR [--grid WxH] [--tile 64] [--perplexity 30] [--seed 0]
                  [--color-by score] [-r] [--workers N]

`embed` is `jaxnsfw score`'s pipeline (workers, input order, one record per input, error records,
--resume, progress) writing each record with its 1024-d embedding (jaxnsfw.atlas.embedding); with
--engine ray, the Ray engine's (jaxnsfw.distributed), as Parquet shards of the folder --out, which
`jaxnsfw atlas DIR` reads as one file.
Exit status as `score`: 0 all embedded, 1 some inputs failed (their records say why), 2 usage or
output error, 130/143 interrupted (the records so far are committed; --resume finishes the run).

`atlas` lays the images out (jaxnsfw.atlas.job.run_job) and prints one JSON line naming what it
wrote. Exit status: 0 written, 1 written with some inputs left out (atlas.json's notes say which
and why), 2 bad input (no images, a grid too small, a file without embeddings, the `atlas` extra
missing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from jaxnsfw import arguments, interrupts
from jaxnsfw.distributed.engine import Engine, add_engine_arguments, check_engine_args
from jaxnsfw.options import MODE_NAMES, ScoringOptions

EXIT_OK, EXIT_INPUT_ERRORS, EXIT_USAGE = 0, 1, 2
EMBEDDING_SUFFIXES = (".parquet", ".npz")


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def embed_command(args: argparse.Namespace) -> int:
    from jaxnsfw.atlas.embedding import EmbeddingWriter
    from jaxnsfw.atlas.errors import AtlasExtraMissing
    from jaxnsfw.bulk.command import Summary, _check_pillow_once, use_one_cpu_device_per_core
    from jaxnsfw.bulk.pipeline import FileScorer, WorkerStartError
    from jaxnsfw.bulk.records import OutputError
    from jaxnsfw.bulk.walk import WalkCounts, walk_inputs

    options = ScoringOptions(mode=args.mode, fast=args.fast)
    if args.engine is not Engine.LOCAL:
        from jaxnsfw.distributed.command import embed_on_ray

        return embed_on_ray(args, options)
    summary, counts = Summary(0.2, 0.8), WalkCounts()
    started = time.perf_counter()
    writer = scorer = None
    try:
        writer = EmbeddingWriter(args.out, resume=args.resume)
        with interrupts.interruptible():
            if args.resume:
                print(f"resuming: {len(writer.recorded)} inputs already recorded in {args.out}", file=sys.stderr)
            _check_pillow_once()
            use_one_cpu_device_per_core()
            from jaxnsfw.classifier import Classifier, bulk_batch_size

            classifier = Classifier(args.weights, batch_size=args.batch_size or bulk_batch_size())
            scorer = FileScorer(classifier, args.workers, options, timeout=args.timeout)
            from tqdm import tqdm

            total = (sum(1 for item in walk_inputs(args.paths, args.recursive, writer.keys)
                         if item.path not in writer.recorded) if arguments.show_progress(args) else None)
            with tqdm(total=total, unit="img", disable=not arguments.show_progress(args), file=sys.stderr,
                      smoothing=0.1) as progress:
                def warn(path: str, message: str) -> None:
                    progress.write(f"warning: {path}: {message}", file=sys.stderr)

                for record, embedding in scorer.embed(args.paths, args.recursive, writer.recorded, writer.keys,
                                                      counts, warn):
                    writer.write(record, embedding)
                    summary.add(record)
                    progress.update()
                    progress.set_postfix_str(f"errors: {summary.errors}", refresh=False)
                    interrupts.check()
    except (OutputError, AtlasExtraMissing, WorkerStartError) as err:
        return _error(str(err))
    except interrupts.Interrupted as stop:
        _close(scorer, writer)
        interrupts.exit_now(stop.exit_code, f"\n{stop}; the {summary.total} records so far are in {args.out}; "
                                            f"--resume finishes the run")
    finally:
        try:
            _close(scorer, writer)
        except OutputError as err:
            return _error(str(err))
    elapsed = time.perf_counter() - started
    skipped = counts.line()
    print(f"{summary.total} inputs embedded into {args.out}: {summary.errors} errors"
          f"{'; ' + skipped if skipped else ''}; {elapsed:.1f} s", file=sys.stderr)
    return EXIT_INPUT_ERRORS if summary.errors else EXIT_OK


def _close(scorer, writer) -> None:
    if scorer is not None:
        scorer.close(now=True)
    if writer is not None:
        writer.close()  # commits what was written (once; later calls do nothing)


def _is_embeddings_file(paths: list[str]) -> bool:
    """One .parquet/.npz file, or one folder of `jaxnsfw embed --engine ray` shards."""
    if len(paths) != 1:
        return False
    if os.path.isdir(paths[0]):
        from jaxnsfw.distributed.shards import shard_files

        return any(p.suffix == ".parquet" for p in shard_files(paths[0]))
    return paths[0].lower().endswith(EMBEDDING_SUFFIXES) and os.path.isfile(paths[0])


def atlas_command(args: argparse.Namespace) -> int:
    from jaxnsfw.atlas.errors import AtlasExtraMissing, AtlasInputError
    from jaxnsfw.atlas.job import run_job

    from_file = _is_embeddings_file(args.paths)
    options = {"grid": args.grid, "tile": args.tile, "perplexity": args.perplexity, "seed": args.seed,
               "color_by": args.color_by, "recursive": args.recursive, "workers": args.workers}
    show = arguments.show_progress(args)
    last = {"stage": "", "done": False}

    def progress(fraction: float, stage: str) -> None:
        interrupts.check()
        finished = fraction >= 1.0 and not last["done"]
        if show and (stage != last["stage"] or finished):  # a line per stage, and one at the end
            print(f"{stage}: {100 * fraction:.0f}%", file=sys.stderr)
            last["stage"], last["done"] = stage, last["done"] or finished

    started = time.perf_counter()
    try:
        with interrupts.interruptible():
            if not from_file:
                from jaxnsfw.bulk.command import use_one_cpu_device_per_core

                use_one_cpu_device_per_core()
            files = run_job(None if from_file else args.paths, args.paths[0] if from_file else None, args.out,
                            options, progress)
    except (AtlasInputError, AtlasExtraMissing) as err:
        return _error(str(err))
    except interrupts.Interrupted as stop:
        interrupts.exit_now(stop.exit_code, f"\n{stop}; the atlas in {args.out} is incomplete")
    with open(os.path.join(args.out, "atlas.json"), encoding="utf-8") as file:
        index = json.load(file)
    left_out = [n for n in index["notes"] if n["note"].startswith("left out")]
    print(json.dumps({"out": args.out, "files": files, "images": len(index["images"]), "left_out": len(left_out),
                      "grid": index["grid"], "method": index["method"], "projection": index["projection"],
                      "seconds": index["seconds"], "quality": index["quality"],
                      "total_seconds": round(time.perf_counter() - started, 3)}))
    for note in index["notes"]:
        print(f"note: {note['path']}: {note['note']}", file=sys.stderr)
    return EXIT_INPUT_ERRORS if left_out else EXIT_OK


def check_embed_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.paths and not args.manifest:
        parser.error("give at least one PATH (or --manifest FILE with --engine ray)")
    check_engine_args(parser, args)
    if args.engine is not Engine.LOCAL:
        if args.out.lower().endswith(EMBEDDING_SUFFIXES):
            parser.error(f"--engine ray writes a folder of Parquet shards; --out {args.out} names a file "
                         f"(give a folder)")
        if args.shard_format not in (None, "parquet"):
            parser.error("embed writes Parquet shards (embeddings are columns); --shard-format jsonl is for score")
    elif not args.out.lower().endswith(EMBEDDING_SUFFIXES):
        parser.error(f"--out must end in .parquet or .npz, got {args.out!r}")
    if args.workers < 0:
        parser.error("--workers must be 0 or more")


def add_embed_command(commands) -> None:
    from jaxnsfw.bulk.pipeline import DEFAULT_TIMEOUT_S

    embed = commands.add_parser("embed", help="scores and 1024-d embeddings of images, to Parquet",
                                description="Score image files and folders and keep each one's 1024-d global-pool "
                                            "embedding; one record per file, written to Parquet (or .npz).")
    embed.add_argument("paths", nargs="*", metavar="PATH", help="image files or folders")
    embed.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    embed.add_argument("--out", required=True,
                       help="FILE.parquet (row groups as it goes) or FILE.npz; with --engine ray a folder of "
                            "Parquet shards")
    embed.add_argument("--resume", action="store_true",
                       help="keep the records already in --out and embed only the inputs not recorded yet")
    embed.add_argument("--mode", choices=MODE_NAMES, default=MODE_NAMES[0],
                       help="reference or robust (the embedding is that of the view that gave the score)")
    embed.add_argument("--batch-size", type=arguments.positive_int,
                       help="images per device batch (default: 8 on a CPU)")
    embed.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="decoding processes (default: one per core; 0 decodes in this process)")
    embed.add_argument("--timeout", type=arguments.positive_float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                       help=f"give up on a file whose decoding takes longer ({DEFAULT_TIMEOUT_S:g})")
    embed.add_argument("--fast", action="store_true", help="faster decoding; scores and embeddings move slightly")
    embed.add_argument("--weights", help="checkpoint written by `python -m convert` (default: shipped)")
    arguments.add_progress_arguments(embed)
    add_engine_arguments(embed)
    embed.set_defaults(run=embed_command, check=check_embed_args, command_parser=embed)


def check_atlas_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.grid is not None:
        from jaxnsfw.atlas.placement import GridError, parse_grid

        try:
            parse_grid(args.grid)
        except GridError as err:
            parser.error(str(err))
    if args.workers is not None and args.workers < 0:
        parser.error("--workers must be 0 or more")


def add_atlas_command(commands) -> None:
    atlas = commands.add_parser("atlas", help="lay a collection out on a grid by visual similarity",
                                description="t-SNE of the images' embeddings, snapped to a grid by linear "
                                            "assignment; writes atlas.png, atlas.json, index.html and tsne.png.")
    atlas.add_argument("paths", nargs="+", metavar="PATH",
                       help="image files and folders, or one .parquet/.npz file written by `jaxnsfw embed` (or its "
                            "folder of shards, --engine ray)")
    atlas.add_argument("--out", required=True, metavar="DIR", help="folder to write into (made if missing)")
    atlas.add_argument("--grid", metavar="WxH",
                       help="columns x rows (default: the smallest near-square grid that holds every image)")
    atlas.add_argument("--tile", type=arguments.positive_int, default=64, help="pixels per tile side (64)")
    atlas.add_argument("--perplexity", type=arguments.positive_float, default=30.0, help="t-SNE perplexity (30)")
    atlas.add_argument("--seed", type=int, default=0, help="t-SNE seed; the same seed gives the same atlas (0)")
    atlas.add_argument("--color-by", choices=["score"], default=None,
                       help="a thin border per tile coloured by its score (green 0, yellow 0.5, red 1)")
    atlas.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    atlas.add_argument("--workers", type=int, default=None, help="decoding processes (default: up to 4)")
    arguments.add_progress_arguments(atlas)
    atlas.set_defaults(run=atlas_command, check=check_atlas_args, command_parser=atlas)
