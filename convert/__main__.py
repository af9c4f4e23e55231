"""python -m convert --prototxt P --caffemodel M --out weights/open_nsfw.safetensors [--verify]

Without --verify: converts and writes the checkpoint and its .sha256 (atomically; nothing is
written when conversion fails). With --verify: converts in memory and checks that the file at
--out holds exactly that (bit for bit, same config) and matches its recorded checksum.
Exit status 0 on success, 1 on a bad model file or failed verification, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from flax import traverse_util

from convert.convert import convert_net, provenance
from convert.errors import ConversionError
from jaxnsfw import checkpoint


def verify(out: str, variables: dict, config, source: dict[str, str]) -> list[str]:
    """Differences between the checkpoint at `out` and a fresh conversion (empty: identical)."""
    try:
        shipped, shipped_config, metadata = checkpoint.read_checkpoint(out)
    except checkpoint.CheckpointError as err:
        return [str(err)]
    problems = []
    if shipped_config != config:
        problems.append(f"config differs: shipped {shipped_config}, converted {config}")
    for key in ("source_prototxt_sha256", "source_caffemodel_sha256"):
        if metadata.get(key) != source[key]:
            problems.append(f"{key} differs: shipped {metadata.get(key)}, sources {source[key]}")
    fresh = traverse_util.flatten_dict(variables, sep="/")
    old = traverse_util.flatten_dict(shipped, sep="/")
    for key in sorted(set(fresh) | set(old)):
        if key not in old or key not in fresh:
            problems.append(f"{key}: only in the {'converted' if key in fresh else 'shipped'} variables")
        elif old[key].shape != fresh[key].shape or not np.array_equal(old[key], fresh[key]):
            problems.append(f"{key}: values differ")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert", description=__doc__.split("\n")[0])
    parser.add_argument("--prototxt", required=True, help="Caffe deploy.prototxt")
    parser.add_argument("--caffemodel", required=True, help="trained .caffemodel")
    parser.add_argument("--out", required=True, help="checkpoint to write (or to check, with --verify)")
    parser.add_argument("--verify", action="store_true", help="check --out against a fresh conversion")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        variables, config = convert_net(args.prototxt, args.caffemodel)
        source = provenance(args.prototxt, args.caffemodel)
    except (ConversionError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.verify:
        problems = verify(args.out, variables, config, source)
        for problem in problems[:20]:
            print(f"mismatch: {problem}", file=sys.stderr)
        if problems:
            print(f"error: {args.out} does not match a fresh conversion ({len(problems)} differences)", file=sys.stderr)
            return 1
        print(f"ok: {args.out} matches a fresh conversion of {args.caffemodel} "
              f"({time.perf_counter() - start:.2f} s)")
        return 0
    try:
        digest = checkpoint.write_checkpoint(args.out, variables, config, source)
    except OSError as err:
        print(f"error: cannot write {args.out}: {err}", file=sys.stderr)
        return 1
    count = sum(v.size for v in traverse_util.flatten_dict(variables).values())
    print(f"wrote {args.out} ({count} values, sha256 {digest}) in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
