"""The shard folder's commit and resume protocol, without Ray."""

from __future__ import annotations

import os

import pytest

from jaxnsfw.bulk.records import OutputError, Record
from jaxnsfw.distributed import read_shards, shard_files
from jaxnsfw.distributed.inputs import (InputItem, ManifestError, input_blocks, is_uri, manifest_entries,
                                        manifest_inputs)
from jaxnsfw.distributed.kinds import (RecordKind, crashed_score_record, read_score_parquet_shard, read_score_shard,
                                       score_kind, write_score_parquet_shard, write_score_shard)
from jaxnsfw.distributed.shards import ShardFolder

KIND = RecordKind("scores", object, {}, write_score_shard, read_score_shard, crashed_score_record)


def _records(*names: str) -> list[Record]:
    return [Record(name, score=0.5, mode="reference", frame=0, view="stored", seconds=0.01) for name in names]


def test_a_shard_is_published_whole_and_resume_skips_its_inputs(tmp_path):
    shards = ShardFolder(tmp_path, KIND, resume=False)
    shards.commit(0, _records("a", "b"))
    shards.commit(1, _records("c"))
    shards.close()
    assert [p.name for p in shard_files(tmp_path)] == ["part-000-000000.jsonl", "part-000-000001.jsonl"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    (tmp_path / ".part-000-000002.jsonl.tmp").write_text('{"path": "d", "sco')  # a kill mid-write
    resumed = ShardFolder(tmp_path, KIND, resume=True)
    assert resumed.recorded == {"a", "b", "c"} and resumed.run == 1
    assert not (tmp_path / ".part-000-000002.jsonl.tmp").exists()
    resumed.commit(0, _records("d"))  # a new run's block 0 never overwrites the old run's block 0
    resumed.close()
    assert [r.path for r in read_shards(tmp_path)] == ["a", "b", "c", "d"]


def test_a_second_run_is_refused_while_one_writes_and_without_resume(tmp_path):
    shards = ShardFolder(tmp_path, KIND, resume=False)
    with pytest.raises(OutputError, match="being written by another jaxnsfw run"):
        ShardFolder(tmp_path, KIND, resume=True)
    shards.commit(0, _records("a"))
    shards.close()
    with pytest.raises(OutputError, match="already holds record shards"):
        ShardFolder(tmp_path, KIND, resume=False)


def test_resume_refuses_an_input_recorded_twice_and_cuts_a_partial_last_record(tmp_path):
    write_score_shard(str(tmp_path / "part-000-000000.jsonl"), _records("a", "b"))
    cut = tmp_path / "part-000-000001.jsonl"
    write_score_shard(str(cut), _records("c", "d"))
    cut.write_bytes(cut.read_bytes()[:-20])  # "d" half-written: cut off, as the local writer does
    shards = ShardFolder(tmp_path, KIND, resume=True)
    assert shards.recorded == {"a", "b", "c"}
    shards.close()
    write_score_shard(str(tmp_path / "part-000-000002.jsonl"), _records("b"))
    with pytest.raises(OutputError, match="a second record for 'b'"):
        ShardFolder(tmp_path, KIND, resume=True)
    (tmp_path / "part-000-000002.jsonl").write_text("not json\n")
    with pytest.raises(OutputError, match="not a jaxnsfw records file"):
        ShardFolder(tmp_path, KIND, resume=True)


def test_parquet_shards_hold_the_local_fields_and_resume_like_jsonl(tmp_path):
    pytest.importorskip("pyarrow")
    kind = RecordKind("scores", object, {}, write_score_parquet_shard, read_score_parquet_shard,
                      crashed_score_record, ".parquet")
    odd = os.fsdecode(b"caf\xe9.png")  # not UTF-8: path_bytes keeps it exact
    records = [*_records("a", odd), Record("b", error="UnidentifiedImageError: no", mode="reference", seconds=0.1)]
    shards = ShardFolder(tmp_path, kind, resume=False)
    shards.commit(0, records)
    shards.close()
    assert read_shards(tmp_path) == records
    resumed = ShardFolder(tmp_path, kind, resume=True)
    assert resumed.recorded == {"a", odd, "b"}
    resumed.close()
    with pytest.raises(OutputError, match="resume with the same shard format"):
        ShardFolder(tmp_path, KIND, resume=True)
    (tmp_path / "part-000-000001.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(OutputError, match="not a Parquet table"):
        ShardFolder(tmp_path, kind, resume=True)
    with pytest.raises(ValueError, match="unknown shard format"):
        score_kind(None, shard_format="csv")


def test_manifest_local_paths_are_walked_and_uris_kept_once(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "a.png")
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# inputs\ns3://bucket/k.jpg\n{tmp_path / 'a.png'}\n\n  {tmp_path / 'link.png'}  \n"
                        f"s3://bucket/k.jpg\nfile:///x.png\n")
    items = list(manifest_inputs(manifest_entries(manifest), recursive=False))
    assert [i.path for i in items] == [str(tmp_path / "a.png"), "s3://bucket/k.jpg", "file:///x.png"]
    assert manifest_entries(manifest.as_uri()) == manifest_entries(manifest)  # a manifest in an object store
    with pytest.raises(ManifestError, match="cannot read manifest .*nothing.txt"):
        manifest_entries(tmp_path / "nothing.txt")
    assert is_uri("gs://b/o") and not is_uri("/data/a://b") and not is_uri("photo.jpg")
    blocks = list(input_blocks([InputItem(str(n)) for n in range(5)], 2))
    assert [(b.index, [i.path for i in b.items]) for b in blocks] == [(0, ["0", "1"]), (1, ["2", "3"]), (2, ["4"])]


def test_a_decode_past_the_timeout_ends_its_task_process(tmp_path):
    """A decode that never returns cannot be interrupted from Python: the task process ends itself,
    which Ray handles as a crashed task (retried, then alone, then an error record)."""
    import subprocess
    import sys

    from conftest import REPO

    code = """
import pickle, sys, time
from jaxnsfw.distributed import decode
from jaxnsfw.distributed.inputs import InputItem, InputBlock
from jaxnsfw.options import ScoringOptions
decode.prepare_file = lambda *args, **kwargs: time.sleep(60)   # a hung decode
row = decode.block_row(InputBlock(0, (InputItem("a.png"),), (0,)))
decode.decode_block(row, ScoringOptions(), timeout=0.5)
sys.exit(0)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=60)
    assert result.returncode == 71, result.stderr  # decode.TIMEOUT_EXIT
