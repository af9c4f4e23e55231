"""`inverse` over a folder of real images: success rate, steps, change and quality per target and budget.

    python bench/inverse_table.py [--images DIR] [--workers N] [--steps 50] [--steps-1 200]
                                  [--max-images M] [--jpeg-gradient near_boundary] [--json FILE]

For every readable image (default: ../shared/caffe_reference/images/real beside this checkout):
targets 0.99 and 0.5 from the image itself, and 0.01 from the image first pushed to >= 0.99
(budget 2, --steps steps; the reference images are safe, so 0.01 needs a start that is not), each
at budgets of 2/255 (--steps steps) and 1/255 (--steps-1 steps). Success is the reference score of
the saved PNG (re-read) within 0.01 of the target. The 0.01 rows measure the change from the pushed
image.

Images are spread over --workers processes (one jit compile per image-size bucket, and buckets are
kept together), which on one GPU overlaps the compiles with each other and with the steps.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGETS = (0.99, 0.5)
PULL_DOWN = 0.01
BUDGETS = (2, 1)


def readable_images(folder: Path, limit: int | None) -> list[tuple[str, tuple[int, int, bool]]]:
    """(path, bucket) of each file jaxprep can read, smallest first; unreadable ones are listed."""
    from jaxnsfw.jaxprep.pipeline import bucket_for, decoded_rgb
    from jaxnsfw.preprocess import ImageError

    found = []
    for path in sorted(folder.iterdir()):
        try:
            rgb = decoded_rgb(str(path))
        except ImageError as err:
            print(f"# left out (unreadable): {err}", file=sys.stderr)
            continue
        bucket = bucket_for(*rgb.shape[:2])
        found.append((str(path), (bucket.height, bucket.width, bucket.horizontal_first), rgb.shape[0] * rgb.shape[1]))
    found.sort(key=lambda item: item[2])
    if limit is not None:
        found = found[:limit]
    return [(path, bucket) for path, bucket, _ in found]


def shards(images: list[tuple[str, tuple]], workers: int) -> list[list[str]]:
    """Images grouped by bucket, the groups dealt to workers largest first (each compile once)."""
    groups = collections.defaultdict(list)
    for path, bucket in images:
        groups[bucket].append(path)
    dealt: list[list[str]] = [[] for _ in range(workers)]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(dealt, key=len).extend(group)
    return [shard for shard in dealt if shard]


def row(name: str, size: tuple[int, int], budget: int, target: float, result, start: str) -> dict:
    return {"image": name, "height": size[0], "width": size[1], "budget": budget, "target": target, "start": start,
            "start_score": result.start_score, "score": result.score, "reached": result.reached,
            "steps": result.steps, "max_change": result.max_change, "psnr": result.psnr, "ssim": result.ssim,
            "seconds": result.seconds}


def run_worker(paths: list[str], steps: dict[int, int], check_every: int, jpeg_gradient: str, out: Path) -> None:
    import warnings

    from jaxnsfw.classifier import Classifier
    from jaxnsfw.generate.search import InverseConfig, inverse_rgb
    from jaxnsfw.jaxprep.pipeline import decoded_rgb
    from jaxnsfw.jaxprep.quantize import QuantizationGradient

    warnings.filterwarnings("ignore", module="PIL")  # palette transparency notes, once per image
    classifier = Classifier()

    def config(budget: int) -> InverseConfig:
        return InverseConfig(max_change=budget, steps=steps[budget], check_every=check_every,
                             quantization_gradient=QuantizationGradient(jpeg_gradient))

    with out.open("a") as file:
        def emit(record: dict) -> None:
            file.write(json.dumps(record) + "\n")
            file.flush()

        # The 2/255 rows for every image first, then the 1/255 ones: a run cut short by its
        # deadline still has the whole 2/255 table.
        pushed_images = {}
        for budget in BUDGETS:
            for path in paths:
                name, rgb = Path(path).name, decoded_rgb(path)
                for target in TARGETS:
                    result = inverse_rgb(rgb, target, config(budget), classifier, path=name)
                    emit(row(name, rgb.shape[:2], budget, target, result, "original"))
                if budget == 2:
                    pushed = inverse_rgb(rgb, 1.0, config(2), classifier, path=name)
                    emit({**row(name, rgb.shape[:2], 2, 1.0, pushed, "original"), "push": True})
                    if pushed.score >= 0.99:
                        pushed_images[path] = pushed.image
                if path in pushed_images:
                    result = inverse_rgb(pushed_images[path], PULL_DOWN, config(budget), classifier, path=name)
                    emit(row(name, rgb.shape[:2], budget, PULL_DOWN, result, "pushed to >= 0.99"))


def summarize(records: list[dict], images: int) -> str:
    lines = ["| target | start | budget | images | reached | success | median steps | worst steps | "
             "largest change | PSNR median (min) dB | SSIM median (min) | s/image median (max) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    cases = [(target, "original") for target in TARGETS] + [(PULL_DOWN, "pushed to >= 0.99")]
    for target, start in cases:
        for budget in BUDGETS:
            rows = [r for r in records if r["target"] == target and r["budget"] == budget and r["start"] == start
                    and not r.get("push")]
            if not rows:
                continue
            won = [r for r in rows if r["reached"]]
            steps = [r["steps"] for r in won]
            psnrs = [r["psnr"] for r in rows if r["psnr"] is not None]
            ssims = [r["ssim"] for r in rows if r["ssim"] is not None]
            seconds = [r["seconds"] for r in rows]
            lines.append(
                f"| {target} | {start} | {budget}/255 | {len(rows)} | {len(won)} | {len(won) / len(rows):.0%} | "
                f"{statistics.median(steps) if steps else '-'} | {max(steps) if steps else '-'} | "
                f"{max(r['max_change'] for r in rows)} | "
                f"{statistics.median(psnrs):.1f} ({min(psnrs):.1f}) | "
                f"{statistics.median(ssims):.4f} ({min(ssims):.4f}) | "
                f"{statistics.median(seconds):.2f} ({max(seconds):.1f}) |")
    pushes = [r for r in records if r.get("push")]
    lines.append("")
    lines.append(f"{images} readable images; pushed to >= 0.99 at 2/255 (start of the 0.01 rows): "
                 f"{sum(r['score'] >= 0.99 for r in pushes)} of {len(pushes)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "caffe_reference" / "images" / "real")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50, help="step limit at 2/255 (and for the push)")
    parser.add_argument("--steps-1", type=int, default=200, help="step limit at 1/255")
    parser.add_argument("--check-every", type=int, default=10,
                        help="score the saved image by the reference pipeline every this many steps (besides "
                             "whenever the device score is on target)")
    parser.add_argument("--deadline", type=float, help="stop the workers after this many seconds and "
                                                        "summarize what they finished")
    parser.add_argument("--max-images", type=int, help="only the M smallest images")
    parser.add_argument("--jpeg-gradient", default="near_boundary", choices=["near_boundary", "straight_through", "cubic"],
                        help="inverse's gradient through JPEG quantization (default: inverse's default)")
    parser.add_argument("--json", type=Path, help="write every row here")
    parser.add_argument("--worker-paths", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = {2: args.steps, 1: args.steps_1}
    if args.worker_paths is not None:
        run_worker(json.loads(args.worker_paths), steps, args.check_every, args.jpeg_gradient, args.worker_out)
        return

    started = time.perf_counter()
    images = readable_images(args.images, args.max_images)
    out_dir = Path(os.environ.get("OUT", "/tmp")) / f"inverse_table_{os.getpid()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    # One GPU, several processes: each takes memory as it goes rather than 75% of the device at start.
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    procs = []
    for index, shard in enumerate(shards(images, args.workers)):
        command = [sys.executable, __file__, "--worker-paths", json.dumps(shard), "--worker-out",
                   str(out_dir / f"rows_{index}.jsonl"), "--steps", str(args.steps), "--steps-1", str(args.steps_1),
                   "--check-every", str(args.check_every), "--jpeg-gradient", args.jpeg_gradient]
        procs.append(subprocess.Popen(command, env=env))
    cut_short = False
    for proc in procs:
        left = None if args.deadline is None else max(0.0, args.deadline - (time.perf_counter() - started))
        try:
            proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            cut_short = True
            for other in procs:
                other.kill()
            for other in procs:
                other.wait()
    failed = [proc.args for proc in procs if proc.returncode != 0]
    records = [json.loads(line) for path in sorted(out_dir.glob("rows_*.jsonl")) for line in path.open()]
    print(f"# inverse over {args.images.name}/: {len(images)} images, {args.workers} worker processes, "
          f"{time.perf_counter() - started:.0f} s wall; step limits {steps[2]} at 2/255, {steps[1]} at 1/255; "
          f"JPEG quantization gradient {args.jpeg_gradient}")
    if cut_short:
        print(f"# the deadline ({args.deadline:.0f} s) stopped the workers; the table covers what they finished")
    elif failed:
        print(f"# {len(failed)} worker(s) failed; the table covers what they finished")
    print(summarize(records, len(images)))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
