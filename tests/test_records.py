"""Records are written one by one and read back for --resume, surviving a run killed mid-line."""

from __future__ import annotations

import csv
import json

import pytest

from jaxnsfw.records import FIELDS, Record, RecordWriter, recorded_paths


def test_jsonl_records_leave_out_empty_fields(tmp_path):
    out = tmp_path / "r.jsonl"
    with RecordWriter(out) as writer:
        writer.write(Record("a.jpg", score=0.25, mode="reference", frame=0, view="stored", seconds=0.01))
        writer.write(Record("b.jpg", error="OSError: truncated", mode="reference"))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [{"path": "a.jpg", "score": 0.25, "mode": "reference", "frame": 0, "view": "stored", "seconds": 0.01},
                     {"path": "b.jpg", "error": "OSError: truncated", "mode": "reference"}]


def test_csv_records_have_a_header_and_the_same_columns(tmp_path):
    out = tmp_path / "r.csv"
    with RecordWriter(out) as writer:
        writer.write(Record("a,b.jpg", score=0.5))
        writer.write(Record("c.jpg", error='ValueError: "quoted", comma'))
    rows = list(csv.DictReader(out.open(newline="")))
    assert tuple(rows[0]) == FIELDS
    assert rows[0]["path"] == "a,b.jpg" and float(rows[0]["score"]) == 0.5 and rows[0]["error"] == ""
    assert rows[1]["error"] == 'ValueError: "quoted", comma' and rows[1]["score"] == ""


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_resume_reads_back_every_complete_record_and_cuts_a_partial_last_line(tmp_path, suffix):
    out = tmp_path / f"r{suffix}"
    with RecordWriter(out) as writer:
        writer.write(Record("a.jpg", score=0.1))
        writer.write(Record("b.jpg", error="OSError: x"))
    with out.open("a") as handle:
        handle.write('{"path": "c.jp' if suffix == ".jsonl" else "c.jpg,0.")  # killed mid-write
    assert recorded_paths(out) == {"a.jpg", "b.jpg"}
    with RecordWriter(out, append=True) as writer:
        writer.write(Record("c.jpg", score=0.3))
    assert recorded_paths(out) == {"a.jpg", "b.jpg", "c.jpg"}
    text = out.read_text()
    assert len(text.splitlines()) == (4 if suffix == ".csv" else 3)  # a CSV header once, one line per input
    assert text.count("a.jpg") == 1 and text.count("c.jpg") == 1


def test_resuming_a_missing_file_starts_from_nothing(tmp_path):
    assert recorded_paths(tmp_path / "none.jsonl") == set()


def test_resume_refuses_a_file_that_is_not_records(tmp_path):
    out = tmp_path / "notes.jsonl"
    out.write_text("my notes\n")
    with pytest.raises(ValueError, match="not a jaxnsfw record"):
        recorded_paths(out)
