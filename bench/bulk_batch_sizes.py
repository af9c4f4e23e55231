"""End-to-end images/s of FileScorer (decoding in one worker process per core, one XLA CPU device
per core) at device batch sizes 8, 16 and 32 over the real reference images, in interleaved rounds.
This is the measurement behind bulk_batch_size() choosing 8 on a CPU.

    python bench/bulk_batch_sizes.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import jax

REAL_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "caffe_reference" / "images" / "real"
BATCH_SIZES = (8, 16, 32)


def main(rounds: int) -> None:
    jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
    import jaxnsfw

    paths = sorted(str(p) for p in REAL_IMAGES.iterdir() if p.suffix != ".tif")  # Caffe could not read the .tif
    scorers = {}
    for batch_size in BATCH_SIZES:
        classifier = jaxnsfw.Classifier(batch_size=batch_size)
        classifier.warm_up()
        scorers[batch_size] = jaxnsfw.FileScorer(classifier, workers=os.cpu_count() or 1)
        list(scorers[batch_size].score(paths[:4]))  # workers started
    rates = {batch_size: [] for batch_size in BATCH_SIZES}
    for _ in range(rounds):
        for batch_size, scorer in scorers.items():
            start = time.perf_counter()
            count = sum(1 for _ in scorer.score(paths))
            rates[batch_size].append(count / (time.perf_counter() - start))
    print(f"{len(paths)} images, {os.cpu_count()} cores, {rounds} interleaved rounds")
    print("| batch size | img/s median | all rounds |")
    print("| --- | --- | --- |")
    for batch_size, values in rates.items():
        print(f"| {batch_size} | {statistics.median(values):.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    for scorer in scorers.values():
        scorer.close()


if __name__ == "__main__":  # FileScorer's workers are spawned processes: the main guard is required
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
