"""Does a bulk run's memory stay flat as the number of inputs grows?

    python bench/bulk_memory.py [COUNT ...]   # default: 64 512 2048

Runs `jaxnsfw score DIR --out FILE` over COUNT hard links to one small image and reports the peak
resident memory of the main process and of the largest worker (getrusage of the children), the
wall time and the number of records written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO / "tests" / "data" / "images" / "skimage__phantom.png"

WRAPPER = """
import resource, subprocess, sys
process = subprocess.run(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(process.returncode)
"""


def run(count: int) -> tuple[float, int, int, int]:
    with tempfile.TemporaryDirectory() as folder:
        inputs = Path(folder) / "in"
        inputs.mkdir()
        for i in range(count):
            os.link(IMAGE, inputs / f"{i:06d}.png")
        out = Path(folder) / "scores.jsonl"
        start = time.perf_counter()
        # A wrapper per run, so each run's peak is its own (ru_maxrss of the children is the
        # largest single process among the CLI and its workers, which is the CLI with JAX).
        result = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "jaxnsfw", "score", str(inputs),
                                 "--out", str(out), "--no-progress"], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        main_kib = int(result.stdout.strip().splitlines()[-1])
        records = out.read_text().count("\n")
    return wall, main_kib, records, count


def main(counts: list[int]) -> None:
    print("| inputs | records | wall s | inputs/s | peak RSS, largest process of the run (MiB) |")
    print("| --- | --- | --- | --- | --- |")
    for count in counts:
        wall, main_kib, records, _ = run(count)
        print(f"| {count} | {records} | {wall:.1f} | {count / wall:.1f} | {main_kib / 1024:.0f} |")


if __name__ == "__main__":
    main([int(c) for c in sys.argv[1:]] or [64, 512, 2048])
