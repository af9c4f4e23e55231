"""Embeddings of many files: the bulk pipeline's records, each with the network's global-pool
features, written to Parquet or .npz, read back exactly, resumed without duplicates."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from atlas_helpers import IMAGES, UNREADABLE, images_parquet, small_classifier

from jaxnsfw import preprocess
from jaxnsfw.atlas import AtlasInputError, EmbeddingWriter, embed, read_embeddings
from jaxnsfw.bulk import FileScorer, read_records
from jaxnsfw.bulk.records import OutputError, Record

pytest.importorskip("pyarrow")


def test_importing_the_package_loads_none_of_the_extra():
    extra = "('pyarrow', 'openTSNE', 'scipy')"
    code = (f"import sys, jaxnsfw.atlas; print(sorted(m for m in {extra[:-1]}, 'jax') if m in sys.modules)); "
            f"import jaxnsfw.cli; jaxnsfw.cli.build_parser(); print(sorted(m for m in {extra} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["[]", "[]"], result.stderr


def test_each_record_carries_the_global_pool_features_of_the_view_that_scored():
    table = read_embeddings(images_parquet())
    phantom = table.paths.index(str(IMAGES / "skimage__phantom.png"))
    classifier = small_classifier()
    direct = classifier.forward(preprocess.preprocess(IMAGES / "skimage__phantom.png")[None])
    np.testing.assert_allclose(table.embeddings[phantom], direct.embedding[0], rtol=1e-5, atol=1e-6)
    assert table.records[phantom].score == pytest.approx(float(direct.probs[0, 1]), abs=1e-6)
    assert table.embeddings.shape == (len(table.records), 1024) and table.embeddings.dtype == np.float32


def test_records_are_the_score_records_and_failures_have_no_embedding():
    table = read_embeddings(images_parquet())
    with FileScorer(small_classifier(), workers=0) as scorer:
        scored = list(scorer.score([IMAGES]))
    assert [r.path for r in table.records] == [r.path for r in scored]  # input order, one record each
    assert [r.score for r in table.records] == [r.score for r in scored]
    failed = [i for i, r in enumerate(table.records) if r.error is not None]
    assert [table.paths[i] for i in failed] == [str(IMAGES / UNREADABLE)]
    assert np.isnan(table.embeddings[failed]).all() and not np.isnan(table.embeddings[table.ok]).any()


def test_npz_holds_the_same_records_and_embeddings(tmp_path):
    table = read_embeddings(images_parquet())
    with EmbeddingWriter(tmp_path / "e.npz") as writer:
        for record, row in zip(table.records, table.embeddings):
            writer.write(record, None if record.error else row)
    again = read_embeddings(tmp_path / "e.npz")
    assert again.records == table.records
    np.testing.assert_array_equal(again.embeddings, table.embeddings)


def test_odd_file_names_survive_the_round_trip(tmp_path):
    odd = "caf\udce9 \n.png"  # not UTF-8, with a newline
    records = [Record(odd, score=0.5, mode="reference", frame=0, view="stored", seconds=0.1),
               Record("b.png", error="ImageError: no")]
    for name in ("e.parquet", "e.npz"):
        with EmbeddingWriter(tmp_path / name) as writer:
            writer.write(records[0], np.arange(1024, dtype=np.float32))
            writer.write(records[1], None)
        assert read_embeddings(tmp_path / name).records == tuple(records)


def test_resume_keeps_what_is_there_and_embeds_only_the_rest(tmp_path):
    first = [IMAGES / "skimage__phantom.png", IMAGES / "pixel_1x1.png"]
    out = tmp_path / "e.parquet"
    with FileScorer(small_classifier(), workers=0) as scorer:
        embed(first, out=out, scorer=scorer)
        seen = []
        table = embed([*first, IMAGES / "skimage__horse.png"], out=out, resume=True, scorer=scorer,
                      on_record=lambda r: seen.append(r.path))
    assert seen == [str(IMAGES / "skimage__horse.png")]
    assert read_embeddings(out).paths == [str(p) for p in (*first, IMAGES / "skimage__horse.png")]
    assert table.paths == read_embeddings(out).paths


def test_an_output_in_use_or_not_ours_is_refused_and_left_untouched(tmp_path):
    out = tmp_path / "e.parquet"
    with EmbeddingWriter(out):
        with pytest.raises(OutputError, match="another jaxnsfw run"):
            EmbeddingWriter(out)
    garbage = tmp_path / "g.parquet"
    garbage.write_bytes(b"not parquet")
    with pytest.raises(OutputError, match="cannot resume"):
        EmbeddingWriter(garbage, resume=True)
    assert garbage.read_bytes() == b"not parquet"
    with pytest.raises(OutputError, match=".parquet or .npz"):
        EmbeddingWriter(tmp_path / "e.jsonl")


def test_a_parquet_file_without_embeddings_is_bad_input(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": ["a.png"], "score": [0.5]}), tmp_path / "scores.parquet")
    with pytest.raises(AtlasInputError, match="no 'embedding' column"):
        read_embeddings(tmp_path / "scores.parquet")
    with pytest.raises(AtlasInputError, match="no such file"):
        read_embeddings(tmp_path / "missing.parquet")


def test_score_records_are_unchanged_by_the_embedding_path(tmp_path):
    """`jaxnsfw score` still writes exactly its records (read back by the records reader)."""
    from jaxnsfw.bulk import RecordWriter

    with FileScorer(small_classifier(), workers=0) as scorer, RecordWriter(tmp_path / "s.jsonl") as writer:
        for record in scorer.score([IMAGES / "skimage__phantom.png"]):
            writer.write(record)
    (record,) = read_records(tmp_path / "s.jsonl")
    assert record.error is None and 0 <= record.score <= 1


def test_an_interrupted_run_keeps_every_record_so_far_and_resume_finishes_it_exactly_once(tmp_path):
    paths = [IMAGES / name for name in ("skimage__phantom.png", "pixel_1x1.png", "skimage__horse.png",
                                        "skimage__moon.png")]
    out = tmp_path / "e.parquet"

    def stop_after_two(record):
        if record.path == str(paths[1]):
            raise KeyboardInterrupt  # Ctrl-C, as the command sees it

    with FileScorer(small_classifier(), workers=0) as scorer:
        with pytest.raises(KeyboardInterrupt):
            embed(paths, out=out, scorer=scorer, on_record=stop_after_two)
        assert read_embeddings(out).paths == [str(p) for p in paths[:2]]
        assert not (tmp_path / ".e.parquet.tmp").exists()
        embed(paths, out=out, resume=True, scorer=scorer)
    table = read_embeddings(out)
    assert table.paths == [str(p) for p in paths] and table.ok.all()


def test_a_run_that_never_commits_leaves_the_earlier_file_untouched(tmp_path):
    """What SIGKILL does: the temporary file is never renamed, the output is what it was."""
    out = tmp_path / "e.parquet"
    with EmbeddingWriter(out) as writer:
        writer.write(Record("a.png", score=0.5), np.ones(1024, np.float32))
    before = out.read_bytes()
    writer = EmbeddingWriter(out, resume=True)
    writer.write(Record("b.png", score=0.5), np.ones(1024, np.float32))
    writer.flush()
    assert out.read_bytes() == before and read_embeddings(out).paths == ["a.png"]
    writer.close()
    assert read_embeddings(out).paths == ["a.png", "b.png"]
