"""The `jaxnsfw` command: one JSON record per input, errors as records, meaningful exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

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
