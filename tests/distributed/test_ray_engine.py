"""`jaxnsfw score --engine ray` on a local Ray started by this module (ray.init(num_cpus=2), no
cluster needed): the local engine's records, a poisoned file costs only itself, a killed driver
resumed ends with every input exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, REPO
from jaxnsfw.distributed.decode import CRASH_TEST_ENV

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from jaxnsfw import FileScorer  # noqa: E402
from jaxnsfw.distributed import RaySettings, read_shards, score_with_ray  # noqa: E402
from jaxnsfw.options import ScoringOptions  # noqa: E402

POISON = "poisoned-kills-its-decoder.png"
IMAGES = ["skimage__phantom.png", "pixel_1x1.png", "astronaut_q10.jpg", "skimage__text.png",
          "chelsea_rgba_halftransparent.png"]


def _ray_processes() -> list[str]:
    """Live descendants of this process that belong to Ray (raylet, GCS, workers), read from /proc
    (no fork: JAX is loaded in this process)."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fields[0] != "Z":
            parents[int(entry.name)], commands[int(entry.name)] = int(fields[1]), command
    mine = []
    for pid in parents:
        ancestor = parents[pid]
        while ancestor > 1 and ancestor != os.getpid():
            ancestor = parents.get(ancestor, 0)
        if ancestor == os.getpid() and ("ray" in commands[pid] or "gcs_server" in commands[pid]):
            mine.append(f"{pid}: {commands[pid][:120]}")
    return mine


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the module; its workers crash on POISON (the test hook), and it is gone after."""
    previous = os.environ.get(CRASH_TEST_ENV)
    os.environ[CRASH_TEST_ENV] = POISON  # the raylet, and so every worker, inherits it
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        yield ray.get_runtime_context().gcs_address
        assert _ray_processes(), "the check below would not see Ray's processes"
    finally:
        ray.shutdown()
        if previous is None:
            os.environ.pop(CRASH_TEST_ENV, None)
        else:
            os.environ[CRASH_TEST_ENV] = previous
    deadline = time.monotonic() + 30
    while (left := _ray_processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], f"Ray processes left running: {left}"


def _folder(root: Path, names: list[str]) -> Path:
    root.mkdir()
    for name in names:
        shutil.copyfile(DATA / "images" / name, root / name)
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    (root / "dangling.png").symlink_to(root / "nowhere.png")
    return root


def _comparable(records):
    return sorted((r.path, r.error, r.mode, r.frame, r.view) for r in records)


@pytest.mark.parametrize("mode", ["reference", "robust"])
def test_the_same_records_as_the_local_engine(ray_address, tmp_path, classifier, mode):
    folder = _folder(tmp_path / "in", IMAGES)
    with FileScorer(classifier, workers=0, mode=mode) as scorer:
        local = list(scorer.score([folder]))
    report = score_with_ray([folder], tmp_path / "out", options=ScoringOptions(mode=mode),
                            settings=RaySettings(block_size=3))
    distributed = read_shards(tmp_path / "out")
    assert len(distributed) == len(local) == len(IMAGES) + 2
    assert _comparable(distributed) == _comparable(local)
    local_scores = {r.path: r.score for r in local}
    for record in distributed:
        if record.score is not None:
            assert abs(record.score - local_scores[record.path]) <= 1e-6, record.path
    assert [r.path for r in distributed] == [r.path for r in local]  # shards in name order: input order
    assert report.shards == 3 and report.errors == 2 and not report.started_ray


def test_manifest_uris_are_read_through_pyarrow_filesystems_into_parquet_shards(ray_address, tmp_path, classifier):
    folder = _folder(tmp_path / "in", IMAGES[:2])
    manifest = tmp_path / "inputs.txt"
    uris = [(folder / name).as_uri() for name in IMAGES[:2]]
    manifest.write_text("\n".join([*uris, (folder / "missing.png").as_uri(), (folder / "broken.jpg").as_uri()]))
    score_with_ray(manifest=manifest, out=tmp_path / "out", shard_format="parquet")
    assert all(p.suffix == ".parquet" for p in (tmp_path / "out").glob("part-*"))
    records = {r.path: r for r in read_shards(tmp_path / "out")}
    assert set(records) == {*uris, (folder / "missing.png").as_uri(), (folder / "broken.jpg").as_uri()}
    for name, uri in zip(IMAGES[:2], uris):
        assert abs(records[uri].score - classifier.score(folder / name)) <= 1e-6
    assert records[(folder / "missing.png").as_uri()].error.startswith("FileNotFoundError")
    assert records[(folder / "broken.jpg").as_uri()].error.startswith("UnidentifiedImageError")


def test_a_file_that_kills_its_task_costs_only_itself(ray_address, tmp_path):
    folder = _folder(tmp_path / "in", IMAGES[:3])
    shutil.copyfile(DATA / "images" / IMAGES[0], folder / POISON)
    report = score_with_ray([folder], tmp_path / "out", settings=RaySettings(block_size=3, task_retries=1))
    records = read_shards(tmp_path / "out")
    assert sorted(r.path for r in records) == sorted(str(p) for p in folder.iterdir())
    (poisoned,) = [r for r in records if r.error and "WorkerCrashed" in r.error]
    assert poisoned.path == str(folder / POISON)
    assert sum(r.score is not None for r in records) == 3  # its block-mates were scored
    assert report.crashed == 1 and report.retried_alone >= 1


def test_embed_on_ray_writes_the_local_embeddings_and_the_atlas_reads_its_folder(ray_address, tmp_path, classifier):
    pytest.importorskip("pyarrow")
    from jaxnsfw.atlas import embed, read_embeddings
    from jaxnsfw.distributed import embed_with_ray

    folder = _folder(tmp_path / "in", IMAGES[:3])
    with FileScorer(classifier, workers=0) as scorer:
        local = embed([folder], scorer=scorer)
    out = tmp_path / "embeddings"
    first = embed_with_ray([folder], out, settings=RaySettings(block_size=2))
    assert all(p.suffix == ".parquet" for p in out.glob("part-*")) and first.shards == 3
    again = embed_with_ray([folder], out, resume=True)  # every input recorded: nothing to do
    assert again.already_recorded == 5 and again.records == 0
    distributed = read_embeddings(out)  # the folder, shards in name order: input order
    assert distributed.paths == local.paths
    assert [r.error for r in distributed.records] == [r.error for r in local.records]
    ok = local.ok
    assert (distributed.ok == ok).all() and ok.sum() == 3
    assert abs(distributed.scores[ok] - local.scores[ok]).max() <= 1e-6
    assert abs(distributed.embeddings[ok] - local.embeddings[ok]).max() <= 1e-4 * abs(local.embeddings[ok]).max()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "jaxnsfw", "score", *args]


def test_a_killed_driver_resumed_records_every_input_exactly_once(ray_address, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(60):
        shutil.copyfile(DATA / "images" / IMAGES[i % 2], folder / f"{i:03d}.png")
    out = tmp_path / "out"
    run = ["--engine", "ray", "--ray-address", ray_address, "--out", str(out), "--block-size", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen(_cli(str(folder), *run), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (out.is_dir() and any(p.name.startswith("part-") for p in out.iterdir())):
            assert driver.poll() is None, driver.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard was committed"
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait()
        driver.stderr.close()
    assert driver.returncode == -signal.SIGKILL
    before = read_shards(out)
    assert 0 < len(before) < 60, "the kill did not land mid-run"
    resumed = subprocess.run(_cli(str(folder), *run, "--resume"), cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(before)} inputs already recorded" in resumed.stderr
    after = [r.path for r in read_shards(out)]
    assert sorted(after) == sorted(str(p) for p in folder.iterdir())  # none missing, none twice
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
