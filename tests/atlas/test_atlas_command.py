"""`jaxnsfw embed` and `jaxnsfw atlas` as a user runs them: records, outputs, notes, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from atlas_helpers import IMAGES, images_parquet

from conftest import REPO
from jaxnsfw.atlas import read_embeddings

pytest.importorskip("openTSNE")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "jaxnsfw", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_embed_writes_one_record_per_input_with_errors_as_records_and_exits_1(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    good = IMAGES / "skimage__phantom.png"
    out = tmp_path / "e.parquet"
    result = run_cli("embed", good, tmp_path / "empty.jpg", tmp_path / "missing.png", "--out", out, "--workers", "1")
    assert result.returncode == 1, result.stderr
    table = read_embeddings(out)
    assert table.paths == [str(good), str(tmp_path / "empty.jpg"), str(tmp_path / "missing.png")]
    assert table.ok.tolist() == [True, False, False] and "3 inputs embedded" in result.stderr
    again = run_cli("embed", good, "--out", out, "--resume", "--workers", "0")
    assert again.returncode == 0 and "3 inputs already recorded" in again.stderr
    assert read_embeddings(out).paths == table.paths


def test_atlas_from_an_embeddings_file_prints_what_it_wrote_and_notes_what_it_left_out(tmp_path):
    result = run_cli("atlas", images_parquet(), "--out", tmp_path / "atlas", "--seed", "1")
    assert result.returncode == 1, result.stderr  # written, one input left out
    summary = json.loads(result.stdout)
    assert summary["files"] == ["atlas.png", "atlas.json", "index.html", "tsne.png"]
    assert summary["images"] == 18 and summary["left_out"] == 1 and summary["grid"] == [4, 5]
    assert summary["method"].startswith("exact")
    assert "skimage__multipage_rgb.tif: left out" in result.stderr


@pytest.mark.parametrize("make_input, extra, message", [
    (lambda tmp: [tmp / "empty"], [], "nothing to lay out"),  # an empty folder
    (lambda tmp: [images_parquet()], ["--grid", "3x3"], "9 cells for 18 images"),
    (lambda tmp: [tmp / "scores.parquet"], [], "no 'embedding' column"),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, make_input, extra, message):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": ["a.png"], "score": [0.5]}), tmp_path / "scores.parquet")
    (tmp_path / "empty").mkdir()
    result = run_cli("atlas", *make_input(tmp_path), "--out", tmp_path / "atlas", *extra)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2():
    assert run_cli("atlas", "x", "--out", "d", "--grid", "wide").returncode == 2
    assert run_cli("embed", "x", "--out", "e.csv").returncode == 2


def test_ctrl_c_keeps_every_record_so_far_and_resume_finishes_exactly_once(tmp_path):
    import os
    import re
    import signal
    import time

    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(40):
        (folder / f"{number:02d}.png").write_bytes((IMAGES / "skimage__phantom.png").read_bytes())
    out = tmp_path / "e.parquet"
    run = subprocess.Popen([sys.executable, "-m", "jaxnsfw", "embed", str(folder), "--out", str(out), "--workers", "0",
                            "--batch-size", "1", "--progress"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        seen, done = "", 0
        deadline = time.monotonic() + 120
        while done < 3 and time.monotonic() < deadline:  # tqdm's count: some records are written
            chunk = os.read(run.stderr.fileno(), 4096).decode(errors="replace")
            assert chunk, f"the run ended before it could be interrupted: {seen}"
            seen += chunk
            done = max([int(n) for n in re.findall(r"(\d+)/40", seen)] or [0])
        run.send_signal(signal.SIGINT)
        assert run.wait(60) == 130
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        run.stderr.close()
    kept = read_embeddings(out).paths
    assert 3 <= len(kept) < 40 and not (tmp_path / ".e.parquet.tmp").exists()
    assert run_cli("embed", folder, "--out", out, "--resume", "--workers", "0").returncode == 0
    paths = read_embeddings(out).paths
    assert paths == sorted(str(p) for p in folder.iterdir()) and paths[:len(kept)] == kept
