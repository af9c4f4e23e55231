"""The `jaxnsfw` command: a table of contents. Each feature owns its subcommand.

    jaxnsfw score [PATH ...] ...      jaxnsfw.bulk.command      (score files and folders in bulk)
    jaxnsfw explain IMAGE --out DIR   jaxnsfw.explain.command   (what the network looks at)
    jaxnsfw inverse IMAGE --target T  jaxnsfw.generate.command  (edit an image until it scores T)
    jaxnsfw evolve --out OUT.png      jaxnsfw.generate.evolve_command (evolve a picture of shapes)
    jaxnsfw score ... --engine ray    jaxnsfw.distributed       (the same records, on a Ray cluster)
    jaxnsfw embed PATH... --out F     jaxnsfw.atlas.command     (scores + 1024-d embeddings, to Parquet)
    jaxnsfw atlas PATH... --out DIR   jaxnsfw.atlas.command     (the collection on a grid by similarity)
    jaxnsfw serve [--port 8080] ...   jaxnsfw.serve.command     (an HTTP service: batching, jobs, metrics)
"""

from __future__ import annotations

import argparse
import sys

from jaxnsfw import interrupts
from jaxnsfw.atlas.command import add_atlas_command, add_embed_command
from jaxnsfw.bulk.command import add_score_command, sample_image_path  # noqa: F401  (sample: a public path)
from jaxnsfw.explain.command import add_explain_command
from jaxnsfw.generate.command import add_inverse_command
from jaxnsfw.generate.evolve_command import add_evolve_command
from jaxnsfw.serve.command import add_serve_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxnsfw", description="Yahoo's open_nsfw classifier in JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_score_command(commands)
    add_explain_command(commands)
    add_inverse_command(commands)
    add_evolve_command(commands)
    add_embed_command(commands)
    add_atlas_command(commands)
    add_serve_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    interrupts.install()  # Ctrl-C and kill PID: a message and 130/143, never a traceback
    parser = build_parser()
    args = parser.parse_args(argv)
    check = getattr(args, "check", None)
    if check is not None:
        check(args.command_parser, args)
    try:
        return args.run(args)
    except Exception as err:
        # Not imported up front: jaxnsfw.checkpoint imports JAX, which `score --engine ray` starts
        # only after Ray. A CheckpointError means its module is loaded already.
        checkpoint = sys.modules.get("jaxnsfw.checkpoint")
        if checkpoint is None or not isinstance(err, checkpoint.CheckpointError):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
