"""Shared fixtures: the shipped classifier (loaded once), the committed golden data, and the
full Caffe reference in ../shared when this checkout has it (tests that need it skip otherwise)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import jaxnsfw

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
SHARED_REFERENCE = REPO.parent / "shared" / "caffe_reference"


@pytest.fixture(scope="session")
def classifier() -> jaxnsfw.Classifier:
    return jaxnsfw.Classifier()


@pytest.fixture(scope="session")
def layered_classifier() -> jaxnsfw.Classifier:
    """float32 with Caffe's BatchNorm and Scale layers one by one, for layer-by-layer comparisons."""
    return jaxnsfw.Classifier(fold_batch_norm=False)


@pytest.fixture(scope="session")
def exact_classifier() -> jaxnsfw.Classifier:
    return jaxnsfw.Classifier(exact=True)


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(DATA / "caffe_golden.npz") as npz:
        return dict(npz)


@pytest.fixture(scope="session")
def golden_scores() -> dict[str, dict]:
    return json.loads((DATA / "caffe_scores.json").read_text())


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    if not (SHARED_REFERENCE / "scores.json").exists():
        pytest.skip("../shared/caffe_reference is not beside this checkout")
    return SHARED_REFERENCE


def _child_processes() -> list[str]:
    """This test process's live children (zombies, already dead, left out), as 'pid: command'."""
    children = []
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[1] == me and fields[0] != "Z":
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                # multiprocessing's resource tracker is one per process, started by the first worker
                # pool, and exits when this process does (it reads until its pipe closes).
                if "multiprocessing.resource_tracker" not in command:
                    children.append(f"{entry.name}: {command.strip()}")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return children


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """The suite leaves no process running: every worker, server and CLI run a test starts ends
    with it. Checked once at the end (a few seconds' grace for processes being reaped)."""
    yield
    if not Path("/proc").is_dir():
        return
    deadline = time.monotonic() + 10
    while (left := _child_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"processes left running by the tests: {left}"


_exit_status = 0


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config):
    """A run whose tests are done must end: if the interpreter's exit still waits on a thread a minute
    later (a hang at exit, as a killed worker pool once caused), print every thread's stack, so the
    cause is on record, and exit with the tests' status instead of stalling CI."""
    import faulthandler
    import sys
    import threading

    def stalled() -> None:
        print("\nthe test run is over but the process has not exited after 60 s; threads:", file=sys.stderr)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(_exit_status)

    watchdog = threading.Timer(60, stalled)
    watchdog.daemon = True
    watchdog.start()
