"""The Ray engine's overhead: images/s of `jaxnsfw score DIR` (local engine) against
`jaxnsfw score DIR --engine ray` on the same files, as a ratio (the goal: >= 85% of local).

    python bench/distributed.py [--source DIR] [--sizes 128 512] [--ray-address ADDR]
                                [--block-size N] [--batch-size N] [--out FILE.json] [-- SCORE-OPTIONS...]

Inputs: copies (distinct files: the walk reads an inode once) of the images in --source (default
../shared/caffe_reference/images/real, else tests/data/images), repeated to each size. Each engine
runs as a user runs it, a fresh `jaxnsfw score` process writing to a fresh output, at every size.
Start-up (imports, Ray, weights, compiling) is a fixed cost, so the table gives both the rate with
start-up (inputs / wall time) and the marginal rate between the smallest and largest size
((N2 - N1) / (t2 - t1)), which is what a long run converges to. The records of the two engines
are compared (same paths, errors, and scores within 1e-6).

Nothing here depends on the device: on an accelerator machine, the same command measures both
engines there (pass --batch-size, or score options such as --device-preprocess after `--`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "caffe_reference" / "images" / "real"


def make_inputs(source: Path, folder: Path, count: int) -> None:
    images = sorted(p for p in source.iterdir() if p.is_file())
    folder.mkdir(parents=True)
    for i in range(count):
        image = images[i % len(images)]
        shutil.copyfile(image, folder / f"{i:06d}_{image.name}")


def run(command: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - start
    if result.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return wall, result.stderr.strip().splitlines()[-1]


def compare(local_file: Path, ray_folder: Path) -> tuple[int, float]:
    sys.path.insert(0, str(REPO))
    from jaxnsfw.bulk.records import read_records
    from jaxnsfw.distributed.shards import read_shards

    local = {r.path: r for r in read_records(local_file)}
    distributed = {r.path: r for r in read_shards(ray_folder)}
    assert set(local) == set(distributed), "the engines recorded different inputs"
    worst = 0.0
    for path, record in local.items():
        other = distributed[path]
        assert (record.error, record.frame, record.view) == (other.error, other.frame, other.view), path
        if record.score is not None:
            worst = max(worst, abs(record.score - other.score))
    return len(local), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=SHARED if SHARED.is_dir() else REPO / "tests/data/images")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--ray-address")
    parser.add_argument("--block-size", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--out", type=Path, help="also write the measurements as JSON")
    parser.add_argument("score_options", nargs="*", help="passed to both engines (after --)")
    args = parser.parse_args()
    common = ["--no-progress", *args.score_options]
    if args.batch_size:
        common += ["--batch-size", str(args.batch_size)]
    ray_options = ["--engine", "ray"]
    if args.ray_address:
        ray_options += ["--ray-address", args.ray_address]
    if args.block_size:
        ray_options += ["--block-size", str(args.block_size)]
    cli = [sys.executable, "-m", "jaxnsfw", "score"]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in sorted(args.sizes):
            folder = Path(scratch) / f"in{size}"
            make_inputs(args.source, folder, size)
            local_out, ray_out = Path(scratch) / f"local{size}.jsonl", Path(scratch) / f"ray{size}"
            local_wall, local_line = run([*cli, str(folder), "--out", str(local_out), *common])
            ray_wall, ray_line = run([*cli, str(folder), "--out", str(ray_out), *ray_options, *common])
            records, worst = compare(local_out, ray_out)
            rows.append(dict(size=size, records=records, local_s=local_wall, ray_s=ray_wall, max_abs_diff=worst,
                             local_summary=local_line, ray_summary=ray_line))
            print(f"{size} files: local {local_wall:.1f} s, ray {ray_wall:.1f} s, max |score difference| {worst:.1e}",
                  file=sys.stderr)
    print(f"\n{os.cpu_count()} CPU cores; source {args.source} ({len(list(args.source.iterdir()))} files)\n")
    print("| files | local wall s | local img/s | ray wall s | ray img/s | ray / local | max \\|Δscore\\| |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        local_rate, ray_rate = row["size"] / row["local_s"], row["size"] / row["ray_s"]
        print(f"| {row['size']} | {row['local_s']:.1f} | {local_rate:.1f} | {row['ray_s']:.1f} | {ray_rate:.1f} | "
              f"{ray_rate / local_rate:.0%} | {row['max_abs_diff']:.1e} |")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        files = last["size"] - first["size"]
        local_rate, ray_rate = files / (last["local_s"] - first["local_s"]), files / (last["ray_s"] - first["ray_s"])
        print(f"| marginal {first['size']}->{last['size']} | | {local_rate:.1f} | | {ray_rate:.1f} | "
              f"{ray_rate / local_rate:.0%} | |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
