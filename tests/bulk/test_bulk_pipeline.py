"""Bulk runs: inputs are walked lazily, hostile files become error records, worker processes keep
input order and survive a file that kills its decoder, and every input gets exactly one record."""

from __future__ import annotations

import io
import multiprocessing
import os
import time
from pathlib import Path
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from jaxnsfw import bulk
from jaxnsfw.options import ScoringOptions

from conftest import DATA

GOOD = DATA / "images" / "skimage__phantom.png"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring a huge size with almost no data: a decompression bomb's signature."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, str]:
    """One file per kind of bad input a moderation pipeline meets."""
    folder = tmp_path_factory.mktemp("hostile")
    files = {
        "zero_bytes": b"",
        "not_an_image": b"<html>this is not a picture</html>",
        "truncated_jpeg": (DATA / "images" / "astronaut_q10.jpg").read_bytes()[:3000],
        "bomb_over_twice_the_limit": _png_header_only(20_000, 20_000),
        "bomb_over_the_limit": _png_header_only(10_000, 10_000),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = str(folder / f"{name}.png")
        (folder / f"{name}.png").write_bytes(data)
    for name, size in {"one_pixel": (1, 1), "very_wide": (100_000, 10)}.items():
        paths[name] = str(folder / f"{name}.png")
        Image.new("RGB", size, (90, 40, 20)).save(paths[name])
    paths["missing"] = str(folder / "missing.jpg")
    paths["a_folder"] = str(folder)
    os.symlink(folder / "nowhere.jpg", folder / "dangling.jpg")
    paths["dangling_link"] = str(folder / "dangling.jpg")
    return paths


@pytest.mark.parametrize("kind, expected", [
    ("zero_bytes", "UnidentifiedImageError"),
    ("not_an_image", "UnidentifiedImageError"),
    ("truncated_jpeg", "truncated"),
    ("bomb_over_twice_the_limit", "DecompressionBombError"),
    ("bomb_over_the_limit", "DecompressionBombError"),
    ("missing", "No such file"),
    ("a_folder", "is a directory"),
    ("dangling_link", "No such file"),
])
def test_bad_inputs_become_errors_naming_what_was_wrong(hostile, kind, expected):
    prepared = bulk.prepare_file(hostile[kind], ScoringOptions())
    assert prepared.image is None and prepared.path == hostile[kind]
    assert expected in prepared.error
    assert not prepared.error.startswith(hostile[kind])  # the record carries the path; no repetition


def test_decompression_bomb_errors_say_which_limit_and_how_to_raise_it(hostile):
    error = bulk.prepare_file(hostile["bomb_over_the_limit"], ScoringOptions()).error
    assert "100000000 pixels" in error and "MAX_IMAGE_PIXELS" in error and "--max-pixels" in error


@pytest.mark.parametrize("kind", ["one_pixel", "very_wide"])
def test_degenerate_but_valid_images_are_scored(hostile, kind):
    prepared = bulk.prepare_file(hostile[kind], ScoringOptions())
    assert prepared.error is None and prepared.image.rgb256.shape == (1, 256, 256, 3)


def test_walking_is_sorted_and_descends_only_when_recursive(tmp_path):
    for name in ["b.png", "a.png", "sub/c.png", "sub/deeper/d.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    flat = [item.path for item in bulk.walk_inputs([str(tmp_path)])]
    deep = [item.path for item in bulk.walk_inputs([str(tmp_path)], recursive=True)]
    assert flat == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert deep == flat + [str(tmp_path / "sub" / "c.png"), str(tmp_path / "sub" / "deeper" / "d.png")]


def test_a_folder_that_cannot_be_listed_becomes_an_error_item(tmp_path, monkeypatch):
    (tmp_path / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    (item,) = list(bulk.walk_inputs([str(tmp_path)], recursive=True))
    assert item.path == str(tmp_path / "locked")
    assert item.error.startswith("PermissionError") and "cannot list folder" in item.error


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their permissions")
def test_a_folder_without_permission_is_reported(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        (item,) = list(bulk.walk_inputs([str(tmp_path)], recursive=True))
    finally:
        locked.chmod(0o700)
    assert "PermissionError" in item.error


def crash_on_marked_files(path: str, options: ScoringOptions) -> bulk.Prepared:
    """A decoder with a fatal bug: the whole process dies on files named crash*."""
    if os.path.basename(path).startswith("crash"):
        os._exit(3)
    return bulk.prepare_file(path, options)


def test_worker_processes_keep_input_order_and_survive_a_crashing_decoder(tmp_path):
    paths = []
    for i in range(12):
        name = "crash.png" if i == 5 else f"img{i:02d}.png"
        Image.new("RGB", (8 + i, 8), (20 * i, 0, 0)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    items = [bulk.InputItem(p) for p in paths] + [bulk.InputItem(str(tmp_path / "listed_error"), "PermissionError: x")]
    results = list(bulk.prepare_all(items, ScoringOptions(), workers=2, window=6, prepare=crash_on_marked_files))
    assert [r.path for r in results] == [item.path for item in items]  # one result per input, in order
    assert "WorkerCrashed" in results[5].error
    assert all(r.error is None for i, r in enumerate(results[:-1]) if i != 5)  # only the culprit is blamed
    assert results[-1].error == "PermissionError: x"
    np.testing.assert_array_equal(results[3].image.rgb256, bulk.prepare_file(paths[3], ScoringOptions()).image.rgb256)


def hang_on_marked_files(path: str, options: ScoringOptions) -> bulk.Prepared:
    """A decoder that never returns on files named hang* (a pathological file, a FIFO swapped in)."""
    if os.path.basename(path).startswith("hang"):
        time.sleep(3600)
    return bulk.prepare_file(path, options)


def test_a_file_that_takes_longer_than_the_timeout_is_an_error_and_the_run_goes_on(tmp_path):
    paths = []
    for i, name in enumerate(["a.png", "hang.png", "b.png", "c.png"]):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    started = time.monotonic()
    results = list(bulk.prepare_all([bulk.InputItem(p) for p in paths], ScoringOptions(), workers=2, window=4,
                                    prepare=hang_on_marked_files, timeout=2.0))
    assert [r.path for r in results] == paths
    assert results[1].error.startswith("Timeout: decoding took longer than 2 s")
    assert all(r.error is None for i, r in enumerate(results) if i != 1)
    assert time.monotonic() - started < 60  # the hung worker was killed, not waited for


def test_worker_processes_end_with_the_stream_even_when_abandoned(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    items = [bulk.InputItem(str(tmp_path / "a.png"))] * 10
    stream = bulk.prepare_all(items, ScoringOptions(), workers=2, window=4)
    next(stream)
    children = multiprocessing.active_children()
    assert children, "the pool's workers should be running"
    stream.close()  # abandoned part-way (the consumer was interrupted)
    assert [child.pid for child in children if running(child.pid)] == []


def running(pid: int) -> bool:
    """Alive and not a zombie (Process.is_alive can be fooled once another thread reaped the child)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


_HALF_WRITTEN_RESULT = """
import os, struct, sys, time
from jaxnsfw.bulk import pipeline
from jaxnsfw.options import ScoringOptions

if __name__ == "__main__":
    pool = pipeline._PreparePool(1, ScoringOptions(), pipeline.prepare_file, None)
    executor = pool._executor
    # What a worker killed mid-write leaves: a length header for 1,000 bytes, then only 10 of them.
    os.write(executor._result_queue._writer.fileno(), struct.pack("!i", 1000) + bytes(10))
    time.sleep(0.5)  # the manager thread is now waiting for the other 990
    manager = executor._executor_manager_thread  # shutdown() forgets it
    pipeline._kill(executor)
    manager.join(20)
    print("manager thread alive:", manager.is_alive(), flush=True)
"""


def test_a_pool_killed_while_a_result_is_half_written_lets_the_process_exit(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    script = tmp_path / "half_written.py"
    script.write_text(_HALF_WRITTEN_RESULT)
    result = subprocess.run([sys.executable, str(script)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=60)
    assert "manager thread alive: False" in result.stdout, result.stderr
    assert result.returncode == 0, result.stderr


def test_in_process_preparation_gives_the_same_results_as_workers(tmp_path):
    items = [bulk.InputItem(str(GOOD)), bulk.InputItem(str(tmp_path / "missing.png"))]
    inline = list(bulk.prepare_all(items, ScoringOptions(), workers=0, window=4))
    pooled = list(bulk.prepare_all(items, ScoringOptions(), workers=1, window=4))
    assert [r.error for r in inline] == [r.error for r in pooled]
    np.testing.assert_array_equal(inline[0].image.rgb256, pooled[0].image.rgb256)


def test_the_window_bounds_how_many_inputs_are_read_ahead():
    consumed = []

    def items():
        for i in range(100):
            consumed.append(i)
            yield bulk.InputItem(f"/nonexistent/{i}.png")

    stream = bulk.prepare_all(items(), ScoringOptions(), workers=1, window=5)
    next(stream)
    assert len(consumed) <= 6  # memory stays flat: the walk is not run ahead of the window
    stream.close()


def test_a_file_scorer_keeps_its_workers_across_calls_and_matches_the_classifier(classifier, tmp_path):
    paths = [str(GOOD), str(DATA / "images" / "skimage__color.png"), str(tmp_path / "missing.png")]
    with bulk.FileScorer(classifier, workers=2) as scorer:
        first = list(scorer.score(paths))
        second = list(scorer.score(paths[:2]))
    assert [r.path for r in first] == paths and [r.path for r in second] == paths[:2]
    assert "No such file" in first[2].error
    expected = classifier.scores(paths[:2])
    np.testing.assert_allclose([r.score for r in first[:2]], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose([r.score for r in second], expected, rtol=0, atol=1e-6)


def test_warnings_about_a_file_stay_with_it_and_those_about_the_installed_pillow_do_not(monkeypatch):
    import warnings

    from jaxnsfw import pillow_compat, preprocess

    def prepare_that_warns(source, options):
        warnings.warn("Pillow 11 differs", pillow_compat.PillowFidelityWarning)
        warnings.warn("Palette images with Transparency expressed in bytes", UserWarning)
        return None

    monkeypatch.setattr(preprocess, "prepare", prepare_that_warns)
    prepared = bulk.prepare_file(str(GOOD), ScoringOptions())
    assert prepared.warnings == ("UserWarning: Palette images with Transparency expressed in bytes",)
