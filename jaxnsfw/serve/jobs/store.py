"""Jobs kept in SQLite, their inputs and results in a folder each, so that no accepted job is lost.

A job is accepted (the client gets 202) only once its inputs are on disk, synced, and its row is
committed with synchronous=FULL; a server killed at any point after that finds it again on start.
A job found `running` at start was cut off by the kill: it goes back to `pending` and runs again
from the start (its partial results are removed first), so results are never half-written.

    STATE_DIR/jobs.sqlite3
    STATE_DIR/jobs/<id>/input/...    what was uploaded (kept until the job is deleted)
    STATE_DIR/jobs/<id>/output/...   what the job wrote; served by GET /v1/jobs/<id>/files/<name>
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"
STATUSES = (PENDING, RUNNING, DONE, FAILED, CANCELLED)
FINISHED = (DONE, FAILED, CANCELLED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    options TEXT NOT NULL,          -- JSON: the kind's options as submitted
    inputs TEXT NOT NULL,           -- JSON: input file names (under input/), or a server-side folder
    progress REAL NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    error TEXT,
    files TEXT NOT NULL DEFAULT '[]',  -- JSON: result file names (under output/)
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL
)
"""


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    status: str
    options: dict
    inputs: list
    progress: float
    stage: str
    error: str | None
    files: list[str]
    cancel_requested: bool
    attempts: int
    created: float
    started: float | None
    finished: float | None


def _sync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as file:
                os.fsync(file.fileno())
    for path in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class JobStore:
    """Thread-safe: the routes (event loop) and the runner (its thread) share one connection under a lock."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.jobs_dir = self.state_dir / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.state_dir / "jobs.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def input_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id / "input"

    def output_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id / "output"

    def recover(self) -> list[str]:
        """At start: jobs cut off while running go back to pending (or to cancelled, if that was
        asked for), their partial output removed. Returns their ids."""
        with self._lock:
            rows = self._db.execute("SELECT id, cancel_requested FROM jobs WHERE status = ?", (RUNNING,)).fetchall()
            for row in rows:
                shutil.rmtree(self.output_dir(row["id"]), ignore_errors=True)
                if row["cancel_requested"]:
                    self._db.execute("UPDATE jobs SET status = ?, finished = ?, stage = 'cancelled' WHERE id = ?",
                                     (CANCELLED, time.time(), row["id"]))
                else:
                    self._db.execute("UPDATE jobs SET status = ?, progress = 0, stage = 'restarted after the "
                                     "server stopped' WHERE id = ?", (PENDING, row["id"]))
        # Folders of submissions the server died accepting (no row): never acknowledged, removed.
        for folder in self.jobs_dir.glob(".incoming-*"):
            shutil.rmtree(folder, ignore_errors=True)
        return [row["id"] for row in rows]

    def new_incoming(self) -> tuple[str, Path]:
        """A fresh id and a private folder to write the job's inputs into before `accept`."""
        job_id = uuid.uuid4().hex
        folder = self.jobs_dir / f".incoming-{job_id}"
        (folder / "input").mkdir(parents=True)
        return job_id, folder

    def accept(self, job_id: str, incoming: Path, kind: str, options: dict, inputs: Iterable) -> Job:
        """The job's inputs synced and moved into place, then its row committed: from here on it survives."""
        _sync_tree(incoming)
        final = self.jobs_dir / job_id
        os.replace(incoming, final)
        _sync_tree(self.jobs_dir)
        with self._lock:
            self._db.execute("INSERT INTO jobs (id, kind, status, options, inputs, created) VALUES (?, ?, ?, ?, ?, ?)",
                             (job_id, kind, PENDING, json.dumps(options), json.dumps(list(inputs)), time.time()))
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def next_pending(self) -> Job | None:
        """The oldest pending job, marked running (attempts counted)."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE status = ? ORDER BY created LIMIT 1",
                                   (PENDING,)).fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE jobs SET status = ?, started = ?, attempts = attempts + 1, stage = 'starting' "
                             "WHERE id = ?", (RUNNING, time.time(), row["id"]))
        return self.get(row["id"])

    def set_progress(self, job_id: str, fraction: float, stage: str) -> bool:
        """Record progress; returns whether cancelling was asked for."""
        with self._lock:
            self._db.execute("UPDATE jobs SET progress = ?, stage = ? WHERE id = ? AND status = ?",
                             (max(0.0, min(1.0, float(fraction))), stage, job_id, RUNNING))
            row = self._db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def finish(self, job_id: str, status: str, files: Iterable[str] = (), error: str | None = None) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET status = ?, files = ?, error = ?, finished = ?, "
                             "progress = CASE WHEN ? = 'done' THEN 1 ELSE progress END, stage = ? WHERE id = ?",
                             (status, json.dumps(list(files)), error, time.time(), status, status, job_id))

    def requeue(self, job_id: str) -> None:
        """A job interrupted by the server stopping: pending again, partial output removed."""
        shutil.rmtree(self.output_dir(job_id), ignore_errors=True)
        with self._lock:
            self._db.execute("UPDATE jobs SET status = ?, progress = 0, stage = 'interrupted; will run again' "
                             "WHERE id = ? AND status = ?", (PENDING, job_id, RUNNING))

    def cancel(self, job_id: str) -> Job | None:
        """Pending: cancelled now. Running: asked to stop (the runner stops it at its next progress
        report). Finished: unchanged."""
        with self._lock:
            self._db.execute("UPDATE jobs SET status = ?, finished = ?, stage = 'cancelled' "
                             "WHERE id = ? AND status = ?", (CANCELLED, time.time(), job_id, PENDING))
            self._db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = ?", (job_id, RUNNING))
        return self.get(job_id)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
        found = {row["status"]: row["n"] for row in rows}
        return {status: found.get(status, 0) for status in STATUSES}


def _job(row: sqlite3.Row) -> Job:
    return Job(id=row["id"], kind=row["kind"], status=row["status"], options=json.loads(row["options"]),
               inputs=json.loads(row["inputs"]), progress=row["progress"], stage=row["stage"], error=row["error"],
               files=json.loads(row["files"]), cancel_requested=bool(row["cancel_requested"]),
               attempts=row["attempts"], created=row["created"], started=row["started"], finished=row["finished"])
