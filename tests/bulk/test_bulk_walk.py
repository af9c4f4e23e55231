"""Walking real file trees: every regular file reachable gets exactly one record, whatever links,
loops, FIFOs and names the tree holds, before and after a kill + resume."""

from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from jaxnsfw.bulk import FileScorer, WalkCounts, walk_inputs
from jaxnsfw.bulk.records import Record, RecordWriter, read_records


def tiny_png(path: bytes | str, value: int = 7) -> None:
    Image.new("RGB", (1, 1), (value, value, value)).save(os.fsdecode(path), format="PNG")


def walked(*paths, recursive=True, exclude=()):
    counts = WalkCounts()
    return [(item.path, item.error) for item in walk_inputs(paths, recursive, exclude, counts)], counts


def test_walking_is_sorted_and_descends_only_when_recursive(tmp_path):
    (tmp_path / "b").mkdir()
    tiny_png(tmp_path / "b" / "x.png")
    tiny_png(tmp_path / "a.png")
    tiny_png(tmp_path / "c.png")
    flat, _ = walked(tmp_path, recursive=False)
    deep, _ = walked(tmp_path)
    assert flat == [(str(tmp_path / "a.png"), None), (str(tmp_path / "c.png"), None)]
    assert deep == [(str(tmp_path / "a.png"), None), (str(tmp_path / "b" / "x.png"), None), (str(tmp_path / "c.png"), None)]


def test_a_symlink_loop_is_one_error_record_each_and_never_hides_its_siblings(tmp_path):
    tiny_png(tmp_path / "good.png")
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    items, _ = walked(tmp_path)
    assert [p for p, _ in items] == [str(tmp_path / n) for n in ("a", "b", "good.png")]
    assert items[0][1].startswith("SymlinkLoop") and items[1][1].startswith("SymlinkLoop")
    assert items[2][1] is None


def test_a_folder_link_back_to_a_parent_is_one_error_and_each_file_is_walked_once(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    for name in ("d/1.png", "d/e/2.png", "3.png"):
        tiny_png(tmp_path / name)
    os.symlink("..", tmp_path / "d" / "e" / "up")
    os.symlink(str(tmp_path), tmp_path / "d" / "root")
    items, _ = walked(tmp_path)
    good = [p for p, e in items if e is None]
    cycles = [p for p, e in items if e is not None]
    assert good == [str(tmp_path / n) for n in ("3.png", "d/1.png", "d/e/2.png")]
    assert cycles == [str(tmp_path / "d" / "e" / "up"), str(tmp_path / "d" / "root")]
    assert all(e.startswith("FolderCycle") for p, e in items if e is not None)


def test_a_link_out_of_the_given_folder_to_one_above_it_is_a_cycle_naming_the_link(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "other").mkdir()
    tiny_png(tmp_path / "photos" / "x.png")
    tiny_png(tmp_path / "other" / "secret.png")
    os.symlink("..", tmp_path / "photos" / "up")
    os.symlink("/", tmp_path / "photos" / "root")
    items, _ = walked(tmp_path / "photos")
    assert [p for p, _ in items] == [str(tmp_path / "photos" / n) for n in ("root", "up", "x.png")]
    assert items[0][1].startswith("FolderCycle") and items[1][1].startswith("FolderCycle")


def test_fifos_sockets_and_devices_are_error_records_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "x.jpg")  # opening it for reading would block forever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "s.png"))
    try:
        items, _ = walked(tmp_path, "/dev/null")
    finally:
        server.close()
    errors = dict(items)
    assert "FIFO" in errors[str(tmp_path / "x.jpg")] and "not opened" in errors[str(tmp_path / "x.jpg")]
    assert "socket" in errors[str(tmp_path / "s.png")]
    assert "character device" in errors["/dev/null"]


def test_the_same_file_reached_twice_is_walked_once_under_its_first_name(tmp_path):
    tiny_png(tmp_path / "a.png")
    os.link(tmp_path / "a.png", tmp_path / "hard.png")
    os.symlink("a.png", tmp_path / "soft.png")
    (tmp_path / "sub").mkdir()
    os.symlink("../a.png", tmp_path / "sub" / "again.png")
    items, counts = walked(tmp_path / "a.png", tmp_path, tmp_path / "a.png")
    assert items == [(str(tmp_path / "a.png"), None)]
    assert counts.aliases == 5  # hard.png, soft.png, sub/again.png, and a.png named twice more


def test_an_excluded_file_is_not_walked(tmp_path):
    tiny_png(tmp_path / "a.png")
    (tmp_path / "out.jsonl").write_text("")
    key = os.stat(tmp_path / "out.jsonl")
    items, counts = walked(tmp_path, exclude=[(key.st_dev, key.st_ino)])
    assert [p for p, _ in items] == [str(tmp_path / "a.png")] and counts.excluded == 1


def test_missing_and_dangling_inputs_say_so(tmp_path):
    os.symlink("nowhere.png", tmp_path / "dangling.png")
    items, _ = walked(tmp_path / "missing.png", tmp_path / "dangling.png")
    assert all("No such file" in error for _, error in items)


# ---------------------------------------------------------------------------------------------
# Fuzz: random trees of files, folders, links, loops, FIFOs and odd names; a run killed part-way
# and resumed. Scoring is stubbed (every file scores 0.5) so that the walk, the records and the
# resume are what is tested, at hypothesis speed.

@dataclass(frozen=True)
class StubVerdict:
    score: float
    frame: int = 0
    rendering: str = "stored"


class StubClassifier:
    max_batch_size = 3

    def verdicts(self, prepared):
        return [StubVerdict(0.5) for _ in prepared]


ODD_NAMES = st.sampled_from([b"a.png", b"b c.png", b"line\nbreak.png", b"car\rriage.png", b"caf\xe9.png",
                             b"\xff\xfe.png", "日本.png".encode(), b"-n.png", b".hidden.png", b"x.jpg", b"z"])

OPERATIONS = st.lists(st.tuples(st.sampled_from(["file", "dir", "link_file", "link_dir", "link_up", "loop",
                                                 "dangling", "fifo", "hardlink", "garbage"]),
                                st.integers(0, 30), ODD_NAMES), min_size=1, max_size=14)


def build_tree(root: bytes, operations) -> tuple[set[tuple[int, int]], int]:
    """Makes the tree; returns the (dev, ino) of every regular file in it and the count of FIFOs."""
    folders, files = [root], []
    for kind, pick, name in operations:
        parent = folders[pick % len(folders)]
        target = os.path.join(parent, name)
        if os.path.lexists(target):
            continue
        if kind in ("file", "garbage"):
            if kind == "file":
                tiny_png(target, pick)
            else:
                Path(os.fsdecode(target)).write_bytes(b"not an image")
            files.append(target)
        elif kind == "dir":
            os.mkdir(target)
            folders.append(target)
        elif kind == "link_file" and files:
            os.symlink(files[pick % len(files)], target)
        elif kind == "link_dir":
            os.symlink(folders[pick % len(folders)], target)
        elif kind == "link_up":
            os.symlink(b"..", target)
        elif kind == "loop":
            os.symlink(name, target)  # a link to itself
        elif kind == "dangling":
            os.symlink(b"/nonexistent/" + name, target)
        elif kind == "fifo":
            os.mkfifo(target)
        elif kind == "hardlink" and files:
            os.link(files[pick % len(files)], target)
    return {(os.stat(f).st_dev, os.stat(f).st_ino) for f in files}, 0


def run(root: str, out: Path, resume: bool, stop_after: int | None = None) -> None:
    with RecordWriter(out, resume=resume) as writer, FileScorer(StubClassifier(), workers=0) as scorer:
        for number, record in enumerate(scorer.score([root], recursive=True, skip=writer.recorded,
                                                     exclude=[writer.key])):
            if stop_after is not None and number == stop_after:
                writer._stream.write('{"path": "half a rec')  # killed in the middle of a record
                writer._stream.flush()
                return
            writer.write(record)


def check_exactly_once(records: list[Record], regular_files: set[tuple[int, int]]) -> None:
    paths = Counter(record.path for record in records)
    assert max(paths.values(), default=1) == 1, "a path was recorded twice"
    scored = Counter()
    for record in records:
        if os.path.isfile(record.path) and not record.error:
            info = os.stat(record.path)
            scored[(info.st_dev, info.st_ino)] += 1
        elif os.path.isfile(record.path):
            assert "UnidentifiedImageError" in record.error  # the garbage files
            info = os.stat(record.path)
            scored[(info.st_dev, info.st_ino)] += 1
    assert set(scored) == regular_files, "every regular file reachable gets a record"
    assert max(scored.values(), default=1) == 1, "a file was recorded twice under different names"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS, kill_at=st.integers(0, 12))
def test_fuzz_every_regular_file_gets_exactly_one_record_before_and_after_kill_and_resume(tmp_path_factory,
                                                                                          operations, kill_at):
    base = tmp_path_factory.mktemp("tree")
    root = os.path.join(os.fsencode(str(base)), b"root")
    os.mkdir(root)
    regular_files, _ = build_tree(root, operations)
    outputs = tmp_path_factory.mktemp("records")  # outside the tree: a link may lead up to `base`
    out = outputs / "records.jsonl"
    run(os.fsdecode(root), out, resume=False)
    whole = read_records(out)
    check_exactly_once(whole, regular_files)
    fifos = [r for r in whole if r.error and "FIFO" in r.error]
    assert all(os.path.exists(r.path) for r in fifos)

    out_killed = outputs / "killed.jsonl"
    run(os.fsdecode(root), out_killed, resume=False, stop_after=kill_at)
    run(os.fsdecode(root), out_killed, resume=True)
    resumed = read_records(out_killed)
    check_exactly_once(resumed, regular_files)
    assert sorted(r.path for r in resumed) == sorted(r.path for r in whole)


def test_the_output_file_inside_the_scored_folder_is_not_scored(tmp_path):
    tiny_png(tmp_path / "a.png")
    out = tmp_path / "records.jsonl"
    run(str(tmp_path), out, resume=False)
    assert [r.path for r in read_records(out)] == [str(tmp_path / "a.png")]
    run(str(tmp_path), out, resume=True)
    assert [r.path for r in read_records(out)] == [str(tmp_path / "a.png")]
    np.testing.assert_equal(read_records(out)[0].score, 0.5)
