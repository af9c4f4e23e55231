"""The `jaxnsfw` command: one JSON record per input, errors as records, meaningful exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import DATA, REPO


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
    assert lines[0] == "path,score,error,mode,frame,view,seconds"
    assert lines[1].startswith(str(tmp_path / "in" / "bad.jpg") + ",,UnidentifiedImageError")
    assert lines[2].startswith(str(tmp_path / "in" / "good.png") + ",0.")
    assert "2 inputs: 0 below 0.0, 1 between, 0 above 0.5, 1 errors" in result.stderr


def test_a_killed_run_keeps_its_records_and_resume_finishes_without_duplicates(tmp_path):
    import signal
    import time

    paths = _copies(tmp_path / "in", 40)
    out = tmp_path / "scores.jsonl"
    command = [sys.executable, "-m", "jaxnsfw", "score", str(tmp_path / "in"), "--out", str(out),
               "--batch-size", "1", "--workers", "1"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 5):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = [json.loads(line)["path"] for line in out.read_text().splitlines() if line.endswith("}")]
    assert 5 <= len(before) < 40, "the run must have been killed part-way"
    result = run_cli("score", str(tmp_path / "in"), "--out", str(out), "--resume", "--workers", "1")
    assert result.returncode == 0, result.stderr
    after = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert sorted(after) == paths  # every input exactly once
    assert after[:len(before)] == before


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
