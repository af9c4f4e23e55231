"""The device pipeline as the CLI will use it: mixed sizes bucketed and batched give exactly the CPU
reference's network input and score, and the one-program jitted functions agree with it."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxnsfw import preprocess
from jaxnsfw.jaxprep import pipeline

from jaxprep_reference import IMAGES, committed_rgb_images

COMMITTED = committed_rgb_images()


def test_buckets_pad_each_side_to_the_next_size_and_keep_pillows_pass_order():
    assert pipeline.bucket_for(1, 1) == pipeline.Bucket(256, 256, True)
    assert pipeline.bucket_for(257, 3000) == pipeline.Bucket(512, 4096, True)
    assert pipeline.bucket_for(10000, 50) == pipeline.Bucket(16384, 256, False)  # past the largest
    assert pipeline.bucket_for(8193, 8192) == pipeline.Bucket(16384, 8192, True)


def test_batches_group_by_bucket_and_pad_to_a_batch_size():
    images = [np.zeros((300, 300, 3), np.uint8)] * 3 + [np.zeros((100, 900, 3), np.uint8)]
    batches = list(pipeline.DevicePreprocessor().batches(images))
    assert sorted(indices for indices, *_ in batches) == [[0, 1, 2], [3]]
    for indices, bucket, batch, tables in batches:
        assert batch.shape[0] in pipeline.PipelineConfig().batch_sizes and batch.shape[0] >= len(indices)
        assert batch.shape[1:] == (bucket.height, bucket.width, 3)
        assert tables.row_weights.shape[0] == batch.shape[0]


def test_caffe_inputs_are_the_cpu_references_bit_for_bit():
    """All the committed images at once, sizes 1x1 to 660x550, in one padded batch (one bucket, so
    that CI compiles one program; the reference-image tests run the default buckets)."""
    one_program = pipeline.PipelineConfig(side_buckets=(1024,), batch_sizes=(32,))
    ours = pipeline.DevicePreprocessor(one_program).caffe_inputs(list(COMMITTED.values()))
    for name, mine in zip(COMMITTED, ours):
        np.testing.assert_array_equal(mine, preprocess.preprocess(IMAGES / name), err_msg=name)


def test_one_program_function_equals_the_preprocessor():
    images = [COMMITTED["skimage__color.png"], COMMITTED["skimage__phantom.png"]]  # one bucket
    (indices, bucket, batch, tables), = pipeline.DevicePreprocessor().batches(images)
    fused = pipeline.caffe_input_from_padded_jit(jnp.asarray(batch), tables, bucket.horizontal_first)
    np.testing.assert_array_equal(np.asarray(fused)[:len(images)],
                                  pipeline.DevicePreprocessor().caffe_inputs(images))


def test_scores_match_the_cpu_pipeline_within_1e6(classifier):
    names = ["astronaut_lossy.webp", "chelsea_rgba_halftransparent.png", "pixel_1x1.png",
             "skimage__horse.png", "skimage__no_time_for_that_tiny.gif"]
    ours = pipeline.score_decoded([COMMITTED[name] for name in names], classifier)
    reference = classifier.scores([IMAGES / name for name in names])
    assert ours.shape == (len(names),) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() <= 1e-6


def test_decoded_rgb_is_what_the_reference_resizes():
    np.testing.assert_array_equal(pipeline.decoded_rgb(IMAGES / "skimage__camera.png"),
                                  COMMITTED["skimage__camera.png"])
    with pytest.raises(preprocess.ImageError):
        pipeline.decoded_rgb(IMAGES / "skimage__multipage_rgb.tif")


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((0, 4, 3), np.uint8)])
def test_arrays_that_are_not_uint8_rgb_are_rejected(bad):
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        pipeline.DevicePreprocessor().caffe_inputs([bad])
