"""Runs pending jobs one at a time, oldest first, in a thread of their own.

A job reports progress through `progress(fraction, stage)`; that is also where it stops: when the
client cancelled it (the job ends `cancelled`) or the server is stopping (the job goes back to
`pending` and runs again at the next start). A job's own bad input makes it `failed` with the
message; anything else unexpected too, with the exception's type, and the runner goes on.
"""

from __future__ import annotations

import shutil
import threading
import traceback

from jaxnsfw.serve.jobs import kinds
from jaxnsfw.serve.jobs.store import CANCELLED, DONE, FAILED, JobStore


class _Stop(Exception):
    def __init__(self, cancelled: bool):
        self.cancelled = cancelled


class JobRunner:
    def __init__(self, store: JobStore, context: kinds.JobContext):
        self.store, self.context = store, context
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jaxnsfw-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """A job was submitted."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop at the running job's next progress report (it runs again at the next start)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stopping.is_set():
            job = self.store.next_pending()
            if job is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._run_one(job)

    def _run_one(self, job) -> None:
        out = self.store.output_dir(job.id)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)

        def progress(fraction: float, stage: str) -> None:
            cancelled = self.store.set_progress(job.id, fraction, stage)
            if cancelled or self._stopping.is_set():
                raise _Stop(cancelled)

        try:
            files = kinds.RUNNERS[job.kind](job, self.store.input_dir(job.id), out, self.context, progress)
        except _Stop as stop:
            if stop.cancelled:
                self.store.finish(job.id, CANCELLED)
            else:
                self.store.requeue(job.id)
            return
        except kinds.JobInputError as err:
            self.store.finish(job.id, FAILED, error=str(err))
            return
        except Exception as err:  # noqa: BLE001 -- one job's failure must not stop the runner
            traceback.print_exc()
            self.store.finish(job.id, FAILED, error=f"{type(err).__name__}: {err}")
            return
        if self.store.set_progress(job.id, 1.0, "finishing"):
            self.store.finish(job.id, CANCELLED)
        else:
            self.store.finish(job.id, DONE, files=files)
