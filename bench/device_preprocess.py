"""How much CPU time moving the resize + JPEG round trip off Pillow saves, and how fast the jitted
JAX preprocessing runs, on whatever device JAX uses here.

    python bench/device_preprocess.py                   # ../shared/caffe_reference images if present
    python bench/device_preprocess.py --repeats 7 --sources tests/data/images

1. Per image, over the source images (decoded to RGB beforehand, not timed): Pillow's
   resize((256, 256), BILINEAR) + JPEG save + decode (what preprocess.reference_rgb256 costs the
   CPU), versus the host-side work the device path still does (bucket padding and resize tables),
   versus the whole device path (DevicePreprocessor.rgb256, after compiling). On a CPU-only machine
   "the device" is this CPU too: the saving is real only where JAX runs on an accelerator.
2. (--scores) max |score difference| between the device path and the CPU pipeline
   (Classifier.scores on the files) over the same images.
3. images/s of the jitted preprocessing alone (caffe_input_from_padded, one program) at batch
   sizes 1, 32, 256 on synthetic sources of a fixed size (--batch-source), inputs already on the
   device.

Other processes share this machine, so every timing is repeated and the best and the median of
the repeats are printed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxnsfw import preprocess
from jaxnsfw.jaxprep import pipeline

REPO = Path(__file__).resolve().parent.parent
SHARED_IMAGES = REPO.parent / "shared" / "caffe_reference" / "images"


def load_sources(folder: Path) -> list[np.ndarray]:
    images = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            images.append(pipeline.decoded_rgb(path))
        except preprocess.ImageError:
            continue
    return images


def repeat(fn, repeats: int) -> tuple[float, float, float, float]:
    """(best wall, median wall, best process CPU, median process CPU) seconds over `repeats` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), statistics.median(walls), min(cpus), statistics.median(cpus)


def pillow_resize_and_jpeg(images: list[Image.Image]) -> None:
    for image in images:
        preprocess.reference_rgb256(image)


def host_side_of_device_path(preprocessor: pipeline.DevicePreprocessor, images: list[np.ndarray]) -> None:
    for _ in preprocessor.batches(images):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=Path, default=SHARED_IMAGES if SHARED_IMAGES.exists()
                        else REPO / "tests" / "data" / "images")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-source", type=int, default=512, help="side of the synthetic sources")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--scores", action="store_true", help="also compare scores with the CPU pipeline")
    args = parser.parse_args()

    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{len(jax.devices())} device(s); best / median of {args.repeats} repeats\n")

    images = load_sources(args.sources)
    pil_images = [Image.fromarray(image) for image in images]
    megapixels = sum(image.shape[0] * image.shape[1] for image in images) / 1e6
    preprocessor = pipeline.DevicePreprocessor()
    started = time.perf_counter()
    preprocessor.rgb256(images)  # compiles every bucket these images need
    compile_s = time.perf_counter() - started

    n = len(images)
    rows = [
        ("Pillow resize + JPEG round trip (CPU)", repeat(lambda: pillow_resize_and_jpeg(pil_images), args.repeats)),
        ("device path, host side only (pad + tables)",
         repeat(lambda: host_side_of_device_path(preprocessor, images), args.repeats)),
        (f"device path, whole ({jax.default_backend()})", repeat(lambda: preprocessor.rgb256(images), args.repeats)),
    ]
    print(f"1. per image over {n} images from {args.sources} ({megapixels:.1f} Mpixel; first device "
          f"pass incl. compiling: {compile_s:.1f} s)\n")
    print(f"| {'what':<45} | wall ms/img best | median | CPU ms/img best | median |")
    print(f"| {'-' * 45} | ---: | ---: | ---: | ---: |")
    for name, (wall_best, wall_median, cpu_best, cpu_median) in rows:
        print(f"| {name:<45} | {wall_best / n * 1e3:.2f} | {wall_median / n * 1e3:.2f} "
              f"| {cpu_best / n * 1e3:.2f} | {cpu_median / n * 1e3:.2f} |")
    pillow_cpu, host_cpu = rows[0][1][3], rows[1][1][3]
    print(f"\nCPU core-time saved per image with an accelerator (Pillow - host side, medians): "
          f"{(pillow_cpu - host_cpu) / n * 1e3:.2f} ms")

    if args.scores:
        import jaxnsfw

        classifier = jaxnsfw.Classifier()
        device_scores = pipeline.score_decoded(images, classifier)
        cpu_scores = np.array([classifier.score(image) for image in pil_images])
        rgb_identical = sum(bool((mine == preprocess.reference_rgb256(image)).all())
                            for mine, image in zip(preprocessor.rgb256(images), pil_images))
        print(f"\n2. device path vs CPU pipeline on {n} images: 256x256 images identical for {rgb_identical}; "
              f"max |score difference| {np.abs(device_scores - cpu_scores).max():.3g}")

    side = args.batch_source
    print(f"\n3. jitted caffe_input_from_padded alone, {side}x{side} sources (bucket "
          f"{pipeline.padded_side(side, pipeline.PipelineConfig().side_buckets)}), inputs on the device\n")
    print("| batch | images/s best | median | compile s |")
    print("| ---: | ---: | ---: | ---: |")
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    for batch_size in args.batch_sizes:
        (indices, bucket, batch, tables), = pipeline.DevicePreprocessor(
            pipeline.PipelineConfig(batch_sizes=(batch_size,), max_batch_bytes=1 << 40)).batches([source] * batch_size)
        batch, tables = jax.device_put(jnp.asarray(batch)), jax.device_put(tables)
        started = time.perf_counter()
        run = pipeline.caffe_input_from_padded_jit.lower(batch, tables, bucket.horizontal_first).compile()
        compile_s = time.perf_counter() - started
        wall_best, wall_median, _, _ = repeat(lambda: run(batch, tables).block_until_ready(), args.repeats)
        print(f"| {batch_size} | {batch_size / wall_best:.1f} | {batch_size / wall_median:.1f} | {compile_s:.1f} |")


if __name__ == "__main__":
    main()
