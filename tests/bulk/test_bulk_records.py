"""Records are written one by one, locked to one run, and read back for --resume: exact names
(not UTF-8 ones too), real CSV, a kill mid-record survived, and a foreign file never touched."""

from __future__ import annotations

import csv
import json
import os

import pytest

from jaxnsfw.bulk.records import FIELDS, OutputError, Record, RecordWriter, read_records, recorded_paths

NOT_UTF8 = os.fsdecode(b"caf\xe9-\xff.jpg")  # Latin-1 bytes in a name: valid on Linux, not UTF-8


def write(out, *records, resume=False):
    with RecordWriter(out, resume=resume) as writer:
        for record in records:
            writer.write(record)
        return writer.recorded


def test_jsonl_records_leave_out_empty_fields(tmp_path):
    out = tmp_path / "r.jsonl"
    write(out, Record("a.jpg", score=0.25, mode="reference", frame=0, view="stored", seconds=0.01),
          Record("b.jpg", error="OSError: truncated", mode="reference"))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [{"path": "a.jpg", "score": 0.25, "mode": "reference", "frame": 0, "view": "stored", "seconds": 0.01},
                     {"path": "b.jpg", "error": "OSError: truncated", "mode": "reference"}]


def test_csv_records_have_a_header_and_the_same_columns(tmp_path):
    out = tmp_path / "r.csv"
    write(out, Record("a,b.jpg", score=0.5), Record("c.jpg", error='ValueError: "quoted", comma'))
    rows = list(csv.DictReader(out.open(newline="")))
    assert tuple(rows[0]) == FIELDS
    assert rows[0]["path"] == "a,b.jpg" and float(rows[0]["score"]) == 0.5 and rows[0]["error"] == ""
    assert rows[1]["error"] == 'ValueError: "quoted", comma' and rows[1]["score"] == ""


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_names_that_are_not_utf8_round_trip_exactly_and_the_file_stays_valid_utf8(tmp_path, suffix):
    out = tmp_path / f"r{suffix}"
    write(out, Record(NOT_UTF8, score=0.5), Record("plain.jpg", error=f"OSError: cannot read {NOT_UTF8}"))
    text = out.read_bytes().decode("utf-8")  # strict: no lone surrogates, no raw Latin-1 bytes
    assert "\ufffd" in text  # the readable form shows the undecodable bytes as U+FFFD
    assert [r.path for r in read_records(out)] == [NOT_UTF8, "plain.jpg"]
    if suffix == ".jsonl":
        first = json.loads(text.splitlines()[0])
        assert os.fsencode(NOT_UTF8) == __import__("base64").b64decode(first["path_bytes"])
        assert "path_bytes" not in json.loads(text.splitlines()[1])


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_resume_reads_back_every_complete_record_and_cuts_a_partial_last_one(tmp_path, suffix):
    out = tmp_path / f"r{suffix}"
    write(out, Record("a.jpg", score=0.1), Record("b.jpg", error="OSError: x"))
    with out.open("a") as handle:
        handle.write('{"path": "c.jp' if suffix == ".jsonl" else "c.jpg,0.")  # killed mid-write
    assert recorded_paths(out) == {"a.jpg", "b.jpg"}
    assert write(out, Record("c.jpg", score=0.3), resume=True) == {"a.jpg", "b.jpg"}
    assert recorded_paths(out) == {"a.jpg", "b.jpg", "c.jpg"}
    text = out.read_text()
    assert len(text.splitlines()) == (4 if suffix == ".csv" else 3)  # a CSV header once, one line per input
    assert text.count("a.jpg") == 1 and text.count("c.jpg") == 1


def test_a_csv_cut_inside_a_quoted_newline_resumes_without_corruption(tmp_path):
    out = tmp_path / "r.csv"
    write(out, Record("a.jpg", score=0.1))
    with out.open("a", newline="") as handle:
        handle.write('"line one\nline')  # a kill inside a quoted name that holds a newline
    assert write(out, Record("line one\nline two.jpg", score=0.2), resume=True) == {"a.jpg"}
    assert [r.path for r in read_records(out)] == ["a.jpg", "line one\nline two.jpg"]


def test_a_carriage_return_in_a_name_is_recorded_once_across_a_resume(tmp_path):
    out = tmp_path / "r.csv"
    name = "odd\rname.jpg"
    write(out, Record(name, score=0.1))
    assert write(out, resume=True) == {name}
    assert [r.path for r in read_records(out)] == [name]


def test_resuming_a_missing_file_starts_from_nothing(tmp_path):
    assert recorded_paths(tmp_path / "none.jsonl") == set()
    assert write(tmp_path / "none.jsonl", resume=True) == set()


@pytest.mark.parametrize("name, content", [
    ("notes.jsonl", b"my notes\n"),
    ("notes.jsonl", b'{"path": "a.jpg", "score": 0.5}\nmy last line without newline'),
    ("other.jsonl", b'{"file": "a.jpg", "nsfw": 0.5}\n'),
    ("other.csv", b"file,nsfw\r\na.jpg,0.5\r\n"),
    ("other.csv", b"some text"),
    ("bad_score.jsonl", b'{"path": "a.jpg", "score": 7}\n'),
    ("twice.jsonl", b'{"path": "a.jpg", "score": 0.5}\n{"path": "a.jpg", "score": 0.5}\n'),
    ("edited.csv", ",".join(FIELDS).encode() + b"\r\na.jpg,0.5,,,,,,\nb.jpg,0.5,,,,,,\r\n"),  # LF, then CRLF
    ("all_lf.csv", ",".join(FIELDS).encode() + b"\na.jpg,0.5,,,,,,\n"),
])
def test_resume_refuses_a_file_jaxnsfw_did_not_write_and_leaves_it_untouched(tmp_path, name, content):
    out = tmp_path / name
    out.write_bytes(content)
    with pytest.raises(OutputError, match="not a jaxnsfw records file"):
        RecordWriter(out, resume=True)
    assert out.read_bytes() == content


def test_a_second_writer_of_the_same_file_is_refused_while_the_first_writes(tmp_path):
    out = tmp_path / "r.jsonl"
    with RecordWriter(out) as first:
        first.write(Record("a.jpg", score=0.1))
        with pytest.raises(OutputError, match="being written by another jaxnsfw run"):
            RecordWriter(out, resume=True)
        with pytest.raises(OutputError, match="being written by another jaxnsfw run"):
            RecordWriter(out)  # not even truncated by the attempt
        first.write(Record("b.jpg", score=0.2))
    assert recorded_paths(out) == {"a.jpg", "b.jpg"}
    write(out, Record("c.jpg", score=0.3), resume=True)  # the lock went with the first writer
    assert recorded_paths(out) == {"a.jpg", "b.jpg", "c.jpg"}


def test_an_output_that_cannot_be_opened_names_the_file(tmp_path):
    with pytest.raises(OutputError, match=f"cannot open {tmp_path}/no/such/folder.jsonl"):
        RecordWriter(tmp_path / "no" / "such" / "folder.jsonl")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_an_output_error_saying_so():
    writer = RecordWriter("/dev/full")
    with pytest.raises(OutputError, match="No space left on device"):
        writer.write(Record("a.jpg", score=0.1))
    writer.close()  # after a failed write, closing raises nothing more
