"""The `jaxnsfw` command: one JSON record per input, errors as records, meaningful exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import DATA, REPO
from jaxnsfw.bulk.records import read_records


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "jaxnsfw", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=300)


def test_without_paths_it_scores_the_bundled_sample(golden_scores, tmp_path):
    result = run_cli("score", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["path"].endswith("chelsea.png")
    assert abs(record["score"] - golden_scores["skimage__chelsea"]["nsfw"]) <= 1e-6
    assert "bundled sample" in result.stderr


def test_bad_inputs_become_error_records_and_exit_1(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    good = DATA / "images" / "skimage__phantom.png"
    result = run_cli("score", str(good), str(tmp_path / "empty.jpg"), str(tmp_path / "missing.png"))
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(good), str(tmp_path / "empty.jpg"), str(tmp_path / "missing.png")]
    assert 0.0 <= records[0]["score"] <= 1.0
    assert "UnidentifiedImageError" in records[1]["error"]
    assert "No such file" in records[2]["error"]


def test_folders_are_expanded_and_recursion_is_opt_in(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.png").write_bytes((DATA / "images" / "skimage__phantom.png").read_bytes())
    (tmp_path / "sub" / "b.png").write_bytes((DATA / "images" / "pixel_1x1.png").read_bytes())
    flat = [json.loads(line)["path"] for line in run_cli("score", str(tmp_path)).stdout.splitlines()]
    deep = [json.loads(line)["path"] for line in run_cli("score", "-r", str(tmp_path)).stdout.splitlines()]
    assert flat == [str(tmp_path / "a.png")]
    assert deep == [str(tmp_path / "a.png"), str(tmp_path / "sub" / "b.png")]


def test_usage_errors_exit_2():
    assert run_cli("score", "--no-such-flag").returncode == 2
    assert run_cli().returncode == 2


def test_a_damaged_weights_file_is_refused_with_exit_1(tmp_path):
    weights = tmp_path / "w.safetensors"
    shipped = REPO / "weights" / "open_nsfw.safetensors"
    weights.write_bytes(shipped.read_bytes()[:-10] + b"0123456789")
    (tmp_path / "w.safetensors.sha256").write_text((REPO / "weights" / "open_nsfw.safetensors.sha256").read_text())
    result = run_cli("score", "--weights", str(weights), str(DATA / "images" / "skimage__phantom.png"))
    assert result.returncode == 1
    assert "does not match the recorded" in result.stderr


def _copies(folder, count: int):
    source = (DATA / "images" / "skimage__phantom.png").read_bytes()
    folder.mkdir()
    for i in range(count):
        (folder / f"img{i:03d}.png").write_bytes(source)
    return sorted(str(p) for p in folder.iterdir())


def test_records_go_to_a_csv_file_and_a_summary_to_stderr(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "good.png").write_bytes((DATA / "images" / "skimage__phantom.png").read_bytes())
    (tmp_path / "in" / "bad.jpg").write_bytes(b"nope")
    out = tmp_path / "scores.csv"
    result = run_cli("score", str(tmp_path / "in"), "--out", str(out), "--thresholds", "0.0", "0.5")
    assert result.returncode == 1 and result.stdout == ""
    lines = out.read_text().splitlines()
    assert lines[0] == "path,score,error,mode,frame,view,seconds,path_bytes"
    assert lines[1].startswith(str(tmp_path / "in" / "bad.jpg") + ",,UnidentifiedImageError")
    assert lines[2].startswith(str(tmp_path / "in" / "good.png") + ",0.")
    assert "2 inputs: 0 below 0.0, 1 between, 0 above 0.5, 1 errors" in result.stderr


def session_processes(session_id: int) -> list[str]:
    """Processes still alive in a process session (a run started with start_new_session=True)."""
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == session_id:
                    alive.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except (ProcessLookupError, PermissionError, FileNotFoundError):
                pass
    return alive


def wait_for_no_processes(session_id: int, seconds: float = 20.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while (alive := session_processes(session_id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def start_run(out, *paths, extra=()):
    command = [sys.executable, "-m", "jaxnsfw", "score", *map(str, paths), "--out", str(out), "--batch-size", "1",
               "--workers", "1", *extra]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_for_records(out, count: int, process) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < count):
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.05)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_run_keeps_its_records_leaves_no_process_and_resume_finishes_exactly_once(tmp_path, how):
    paths = _copies(tmp_path / "in", 40)
    out = tmp_path / "scores.jsonl"
    process = start_run(out, tmp_path / "in")
    wait_for_records(out, 5, process)
    process.send_signal(how)
    process.wait(60)
    assert wait_for_no_processes(process.pid) == [], "worker processes outlived the run"
    if how == signal.SIGTERM:
        assert process.returncode == 143 and "--resume finishes the run" in process.stderr.read().decode()
    before = [json.loads(line)["path"] for line in out.read_text().splitlines() if line.endswith("}")]
    assert 5 <= len(before) < 40, "the run must have been killed part-way"
    result = run_cli("score", str(tmp_path / "in"), "--out", str(out), "--resume", "--workers", "1")
    assert result.returncode == 0, result.stderr
    after = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert sorted(after) == paths  # every input exactly once
    assert after[:len(before)] == before


@pytest.mark.parametrize("delay", [0.3, 1.5])
def test_ctrl_c_while_the_run_starts_is_a_message_and_130_with_nothing_left_running(tmp_path, delay):
    _copies(tmp_path / "in", 3)
    process = start_run(tmp_path / "scores.jsonl", tmp_path / "in")
    time.sleep(delay)  # importing JAX, loading the weights, starting the workers
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    assert process.wait(60) in (130, 0)  # 0: it had already finished
    stderr = process.stderr.read().decode()
    assert "Traceback" not in stderr and "Fatal" not in stderr
    assert process.returncode == 0 or "interrupted" in stderr
    assert wait_for_no_processes(process.pid) == []


def test_a_second_run_on_the_same_output_is_refused_and_the_first_finishes(tmp_path):
    paths = _copies(tmp_path / "in", 150)
    out = tmp_path / "scores.jsonl"
    first = start_run(out, tmp_path / "in")
    wait_for_records(out, 1, first)
    for extra in ((), ("--resume",)):
        second = run_cli("score", str(tmp_path / "in"), "--out", str(out), "--workers", "0", *extra)
        assert first.poll() is None, "the first run must still be writing for this test to mean anything"
        assert second.returncode == 2 and "being written by another jaxnsfw run" in second.stderr
    assert first.wait(240) == 0
    assert sorted(json.loads(line)["path"] for line in out.read_text().splitlines()) == paths


def test_a_hostile_tree_gives_one_record_per_file_and_resume_adds_nothing(tmp_path):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    good = (DATA / "images" / "skimage__phantom.png").read_bytes()
    odd = os.path.join(os.fsencode(str(root)), b"caf\xe9 \r\n.png")  # not UTF-8, with CR and LF
    Path(os.fsdecode(odd)).write_bytes(good)
    (root / "sub" / "b.png").write_bytes(good)
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    os.symlink("..", root / "sub" / "up")  # a cycle with -r
    os.mkfifo(root / "sub" / "pipe.jpg")
    out = root / "scores.csv"  # inside the folder being scored
    args = ("score", "-r", str(root), str(root / "sub" / "b.png"), "--out", str(out), "--workers", "1")
    result = run_cli(*args)
    assert result.returncode == 1, result.stderr  # the loop, cycle and FIFO are error records
    records = {r.path: r for r in read_records(out)}
    assert sorted(records) == sorted([os.fsdecode(odd), str(root / "loop_a"), str(root / "loop_b"),
                                      str(root / "sub" / "b.png"), str(root / "sub" / "pipe.jpg"),
                                      str(root / "sub" / "up")])
    assert records[os.fsdecode(odd)].score == pytest.approx(records[str(root / "sub" / "b.png")].score)
    assert "FIFO" in records[str(root / "sub" / "pipe.jpg")].error
    assert "SymlinkLoop" in records[str(root / "loop_a")].error
    assert "FolderCycle" in records[str(root / "sub" / "up")].error
    assert "1 already reached through another path" in result.stderr  # b.png named twice
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: 6 inputs already recorded" in resumed.stderr
    assert len(read_records(out)) == 6


@pytest.mark.parametrize("out, message", [
    ("/nonexistent-folder/scores.jsonl", "cannot open /nonexistent-folder/scores.jsonl"),
    ("/dev/full", "No space left on device"),
])
def test_an_output_that_cannot_be_written_is_a_message_and_exit_2(out, message):
    if not os.path.exists("/dev/full") and out == "/dev/full":
        pytest.skip("needs /dev/full")
    result = run_cli("score", "--out", out, "--workers", "0", str(DATA / "images" / "pixel_1x1.png"))
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_resuming_a_file_jaxnsfw_did_not_write_is_refused_and_leaves_it_untouched(tmp_path):
    out = tmp_path / "theirs.csv"
    out.write_bytes(b"file,nsfw\r\na.jpg,0.5\r\nb.jpg,0.")
    result = run_cli("score", "--out", str(out), "--resume", "--workers", "0", str(DATA / "images" / "pixel_1x1.png"))
    assert result.returncode == 2 and "not a jaxnsfw records file" in result.stderr
    assert out.read_bytes() == b"file,nsfw\r\na.jpg,0.5\r\nb.jpg,0."


def test_stdout_closed_by_its_reader_ends_the_run_with_a_message(tmp_path):
    paths = _copies(tmp_path / "in", 30)
    command = [sys.executable, "-m", "jaxnsfw", "score", *paths, "--workers", "1", "--batch-size", "1"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    stderr = process.stderr.read().decode()
    assert process.wait(120) == 2
    assert "standard output was closed" in stderr and "Traceback" not in stderr


def test_a_script_without_the_main_guard_is_told_so(tmp_path):
    script = tmp_path / "no_guard.py"
    script.write_text(f"import jaxnsfw\nscorer = jaxnsfw.FileScorer(workers=1)\n"
                      f"print(list(scorer.score([{str(DATA / 'images' / 'pixel_1x1.png')!r}])))\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=REPO,
                            start_new_session=True)
    assert result.returncode != 0
    assert "WorkerStartError" in result.stderr and "__name__" in result.stderr


def test_pillow_warnings_name_the_file_they_are_about(tmp_path):
    path = tmp_path / "palette.png"
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] * 128)
    image.save(path, transparency=b"\x80\x40\x20")  # partial alpha: kept as bytes, Pillow warns on convert
    result = run_cli("score", str(path), "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert f"warning: {path}: UserWarning: Palette images with Transparency" in result.stderr


def test_resume_without_an_output_file_is_a_usage_error():
    result = run_cli("score", "--resume", str(DATA / "images" / "pixel_1x1.png"))
    assert result.returncode == 2 and "--resume needs --out" in result.stderr


def test_robust_mode_records_which_view_gave_the_score():
    result = run_cli("score", "--mode", "robust", "--workers", "0", str(DATA / "images" / "chelsea_rgba_halftransparent.png"))
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["mode"] == "robust" and record["frame"] == 0
    assert record["view"] in ("stored", "shown over white", "shown over black")


def test_progress_bar_reports_rate_when_asked(tmp_path):
    paths = _copies(tmp_path / "in", 3)
    result = run_cli("score", *paths, "--progress", "--workers", "0")
    assert result.returncode == 0
    assert "3/3" in result.stderr and "img/s" in result.stderr


def test_device_preprocessing_from_the_command_line_matches_the_cpu_pipeline():
    paths = [str(DATA / "images" / name) for name in ("skimage__color.png", "astronaut_cmyk.jpg", "pixel_1x1.png")]
    host = [json.loads(line)["score"] for line in run_cli("score", "--workers", "0", *paths).stdout.splitlines()]
    device = run_cli("score", "--device-preprocess", "--workers", "1", *paths)
    assert device.returncode == 0, device.stderr
    assert [json.loads(line)["score"] for line in device.stdout.splitlines()] == pytest.approx(host, abs=1e-6)
    assert run_cli("score", "--device-preprocess", "--fast", *paths).returncode == 2
