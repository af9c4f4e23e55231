"""Prints jaxnsfw's agreement with real Caffe on ../shared/caffe_reference (or --reference DIR).

    python bench/parity.py

1. network parity: Caffe's own input blobs (rebuilt exactly from its 256x256 images) -> score,
   for the default float32 path (BatchNorm folded into the convolutions), float32 with Caffe's
   layers one by one, and the exact (float64-accumulated convolutions) path;
2. per-layer max abs / relative error against every recorded blob (float32, Caffe's layers);
3. pipeline parity: original files -> our Pillow pipeline -> 256x256 image identical? -> score.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import jaxnsfw
from jaxnsfw import preprocess
from jaxnsfw.model import caffe_blob_writer, layer_outputs

RECORDED_BLOBS = ("conv_1", "pool1", "eltwise_stage0_block2", "eltwise_stage1_block3", "eltwise_stage2_block5",
                  "eltwise_stage3_block2", "pool", "fc_nsfw", "prob", "layer_out/conv_1", "layer_out/bn_1",
                  "layer_out/scale_1", "layer_out/eltwise_stage3_block2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path,
                        default=Path(__file__).resolve().parent.parent.parent / "shared" / "caffe_reference")
    ref = parser.parse_args().reference
    scores = json.loads((ref / "scores.json").read_text())
    npz = dict(np.load(ref / "scores.npz"))
    keys = sorted(k[: -len("/rgb256_u8")] for k in npz if k.endswith("/rgb256_u8"))
    inputs = np.stack([preprocess.caffe_input(npz[f"{k}/rgb256_u8"]) for k in keys])
    caffe = np.array([scores[k]["nsfw"] for k in keys])

    print(f"== network parity: {len(keys)} reference images, Caffe's input blobs")
    layered = jaxnsfw.Classifier(fold_batch_norm=False)
    for name, classifier in (("float32, BN folded (default)", jaxnsfw.Classifier()),
                             ("float32, Caffe's layers", layered),
                             ("exact (--exact)", jaxnsfw.Classifier(exact=True))):
        diff = np.abs(classifier.score_inputs(inputs) - caffe)
        order = np.argsort(diff)[::-1]
        print(f"{name:28s} max |nsfw - caffe| {diff.max():.2e} ({keys[order[0]]}), next {diff[order[1]]:.2e} "
              f"({keys[order[1]]}), median {np.median(diff):.1e}")

    print("\n== per-layer agreement (float32, Caffe's layers one by one), max abs / relative to the blob's max")
    for name in ("blobs.npz", "blobs_layer_by_layer.npz"):
        blobs = dict(np.load(ref / name))
        for key in sorted({k.split("/")[0] for k in blobs if k.endswith("/data")}):
            _, outputs = layer_outputs(layered.model, layered.variables, blobs[f"{key}/data"].transpose(0, 2, 3, 1))
            print(key)
            for blob in RECORDED_BLOBS:
                if f"{key}/{blob}" not in blobs:
                    continue
                layer = blob[len("layer_out/"):] if blob.startswith("layer_out/") else caffe_blob_writer(blob)
                theirs = blobs[f"{key}/{blob}"]
                mine = np.asarray(outputs[layer])
                mine = mine.transpose(0, 3, 1, 2) if mine.ndim == 4 else mine
                diff = np.abs(mine.reshape(theirs.shape) - theirs).max()
                print(f"   {blob:34s} {diff:9.2e} {diff / np.abs(theirs).max():9.2e}")

    print("\n== pipeline parity: original files -> Pillow pipeline -> score (exact path)")
    exact = jaxnsfw.Classifier(exact=True)
    identical = rejected = 0
    worst = (0.0, "")
    start = time.perf_counter()
    for path in sorted((ref / "images").glob("*/*")):
        key = path.name.rsplit(".", 1)[0]
        try:
            with preprocess.open_image(path) as image:
                rgb256 = preprocess.reference_rgb256(image)
        except preprocess.ImageError as err:
            rejected += 1
            print(f"   rejected {path.name}: {err.__class__.__name__} | Caffe: {scores[key].get('error')}")
            continue
        identical += int(np.array_equal(rgb256, npz[f"{key}/rgb256_u8"]))
        diff = abs(float(exact.score_inputs(preprocess.caffe_input(rgb256)[None])[0]) - scores[key]["nsfw"])
        worst = max(worst, (diff, path.name))
    print(f"   256x256 identical to Caffe's on {identical} images; {rejected} rejected; "
          f"max |nsfw - caffe| {worst[0]:.2e} ({worst[1]}); {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
