"""run_job, the call the command and the HTTP service make: every image once, progress as it goes,
the same atlas for the same seed, and bad input as AtlasInputError naming what was wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from atlas_helpers import IMAGES, UNREADABLE, images_parquet, scratch, small_classifier

from jaxnsfw.atlas import AtlasInputError, EmbeddingWriter, read_embeddings, run_job
from jaxnsfw.atlas import job as job_module
from jaxnsfw.atlas.pictures import score_colour
from jaxnsfw.bulk.records import Record

pytest.importorskip("openTSNE")
FILES = ["atlas.png", "atlas.json", "index.html", "tsne.png"]


def made_from_parquet(out, **options):
    seen: list[tuple[float, str]] = []
    files = run_job(None, images_parquet(), out, options, lambda fraction, stage: seen.append((fraction, stage)))
    return files, json.loads((out / "atlas.json").read_text()), seen


def test_every_readable_image_is_placed_once_and_the_unreadable_one_is_named(tmp_path):
    files, index, progress = made_from_parquet(tmp_path / "atlas")
    assert files == FILES and all((tmp_path / "atlas" / name).stat().st_size > 0 for name in files)
    table = read_embeddings(images_parquet())
    readable = [r.path for r in table.records if r.error is None]
    assert [image["path"] for image in index["images"]] == readable
    rows, cols = index["grid"]
    assert (rows, cols) == (4, 5)  # 18 images: the smallest near-square grid
    cells = [tuple(image["cell"]) for image in index["images"]]
    assert len(set(cells)) == len(cells) and all(0 <= r < rows and 0 <= c < cols for r, c in cells)
    assert [n["path"] for n in index["notes"]] == [str(IMAGES / UNREADABLE)]
    assert index["notes"][0]["note"].startswith("left out: UnidentifiedImageError")
    assert index["method"].startswith("exact") and index["projection"].startswith("openTSNE")
    assert set(index["seconds"]) == {"read", "tsne", "grid", "render"}
    assert all(isinstance(image["score"], float) and len(image["tsne"]) == 2 for image in index["images"])
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 <= fractions[0]
    assert {stage for _, stage in progress} == {"read", "tsne", "grid", "render"}


def test_the_same_seed_gives_the_same_atlas_and_another_seed_another(tmp_path):
    _, first, _ = made_from_parquet(tmp_path / "a", seed=3)
    _, again, _ = made_from_parquet(tmp_path / "b", seed=3)
    _, other, _ = made_from_parquet(tmp_path / "c", seed=4)
    assert first["images"] == again["images"]
    assert (tmp_path / "a" / "atlas.png").read_bytes() == (tmp_path / "b" / "atlas.png").read_bytes()
    assert [i["tsne"] for i in first["images"]] != [i["tsne"] for i in other["images"]]


def test_a_larger_grid_and_tile_are_used_and_tiles_can_be_framed_by_score(tmp_path):
    from PIL import Image

    _, index, _ = made_from_parquet(tmp_path / "a", grid="6x5", tile=20, color_by="score")
    assert index["grid"] == [5, 6] and index["tile"] == 20
    mosaic = Image.open(tmp_path / "a" / "atlas.png")
    assert mosaic.size == (6 * 20, 5 * 20)
    image = index["images"][0]
    corner = mosaic.getpixel((image["cell"][1] * 20, image["cell"][0] * 20))
    assert corner == score_colour(image["score"])


def test_images_are_embedded_when_paths_are_given(tmp_path, monkeypatch):
    monkeypatch.setattr(job_module, "_shared_classifier", small_classifier)  # one compiled network per test run
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    paths = [IMAGES / "skimage__phantom.png", IMAGES / "skimage__horse.png", tmp_path / "broken.jpg"]
    stages = []
    files = run_job(paths, None, tmp_path / "atlas", {"workers": 0}, lambda f, s: stages.append(s))
    index = json.loads((tmp_path / "atlas" / "atlas.json").read_text())
    assert files == FILES and stages[0] == "embed" and stages[-1] == "render"
    assert [i["path"] for i in index["images"]] == [str(p) for p in paths[:2]]
    assert index["notes"][0]["path"] == str(tmp_path / "broken.jpg")


def only_errors(path):
    with EmbeddingWriter(path) as writer:
        writer.write(Record("gone.png", error="FileNotFoundError: gone"), None)
    return path


@pytest.mark.parametrize("images, file, options, message", [
    (None, None, {}, "either image paths or an embeddings file"),
    ([IMAGES], "x.parquet", {}, "either image paths or an embeddings file"),
    ([], None, {}, "no images given"),
    (None, "PARQUET", {"grid": "2x2"}, "4 cells for 18 images"),
    (None, "PARQUET", {"grid": "big"}, "not WxH"),
    (None, "PARQUET", {"colour": "score"}, "unknown atlas options"),
    (None, "PARQUET", {"color_by": "nsfw"}, "color_by"),
    (None, "PARQUET", {"tile": 0}, "tile"),
    (None, "ERRORS", {}, "nothing to lay out"),
    (None, "missing.parquet", {}, "no such file"),
    (None, "scores.jsonl", {}, "not an embeddings file"),
])
def test_bad_input_is_an_atlas_input_error_naming_what_was_wrong(tmp_path, images, file, options, message):
    if file == "PARQUET":
        file = images_parquet()
    elif file == "ERRORS":
        file = only_errors(scratch() / "errors.parquet")
    elif file is not None:
        file = tmp_path / file
        if file.suffix == ".jsonl":
            file.write_text('{"path": "a.png", "score": 0.5}\n')
    with pytest.raises(AtlasInputError, match=message):
        run_job(images, file, tmp_path / "atlas", options, lambda f, s: None)
    assert not (tmp_path / "atlas" / "atlas.json").exists()


def test_the_json_lists_every_image_with_its_t_sne_point_and_cell(tmp_path):
    _, index, _ = made_from_parquet(tmp_path / "a")
    points = np.array([i["tsne"] for i in index["images"]])
    assert points.shape == (18, 2) and np.isfinite(points).all()
    assert set(index) >= {"images", "grid", "method", "seconds"}


def test_a_file_gone_since_it_was_embedded_is_a_grey_tile_with_a_note(tmp_path):
    import dataclasses

    table = read_embeddings(images_parquet()).usable()
    moved = tmp_path / "moved.parquet"
    with EmbeddingWriter(moved) as writer:
        for number, (record, row) in enumerate(zip(table.records, table.embeddings)):
            writer.write(dataclasses.replace(record, path=str(tmp_path / "gone.png")) if number == 0 else record, row)
    run_job(None, moved, tmp_path / "atlas", {}, None)
    index = json.loads((tmp_path / "atlas" / "atlas.json").read_text())
    assert len(index["images"]) == len(table.records) and index["images"][0]["path"] == str(tmp_path / "gone.png")
    (note,) = index["notes"]
    assert note["path"] == str(tmp_path / "gone.png") and note["note"].startswith("shown as a grey tile")


def test_a_missing_extra_says_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    from jaxnsfw.atlas import AtlasExtraMissing

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openTSNE"
                        else real_find_spec(name, *a))
    with pytest.raises(AtlasExtraMissing, match=r"openTSNE is not installed.*pip install 'jaxnsfw\[atlas\]'"):
        run_job(None, images_parquet(), tmp_path / "atlas", {}, None)


def test_an_embeddings_file_saved_under_another_name_is_read_by_its_content(tmp_path):
    upload = tmp_path / "upload-1"  # as a service may store an uploaded file
    upload.write_bytes(images_parquet().read_bytes())
    assert run_job(None, upload, tmp_path / "atlas", {}, None) == FILES


@pytest.mark.parametrize("count", [1, 2])
def test_one_or_two_images_make_an_atlas_too(tmp_path, count):
    table = read_embeddings(images_parquet()).usable()
    few = tmp_path / "few.parquet"
    with EmbeddingWriter(few) as writer:
        for record, row in list(zip(table.records, table.embeddings))[:count]:
            writer.write(record, row)
    run_job(None, few, tmp_path / "atlas", {}, None)
    text = (tmp_path / "atlas" / "atlas.json").read_text()
    index = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in atlas.json"))
    assert index["grid"] == [1, count] and len(index["images"]) == count
