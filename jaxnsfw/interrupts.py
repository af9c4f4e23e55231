"""Ctrl-C (SIGINT) and `kill PID` (SIGTERM) for the `jaxnsfw` commands: a message, never a traceback.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be, which goes
wrong in three ways for a command that loads JAX: during imports it prints a traceback; inside a
garbage-collection callback (JAX registers one) it is printed as "ignored" and lost, so the run goes
on; and an interpreter shutting down while XLA's threads are busy compiling can crash. So:

- `install()` (first thing the command does) replaces both handlers. Until a command says it is
  ready to be interrupted, a signal ends the process at once with a message: nothing has been
  written yet that needs flushing, and worker processes die with their parent.
- Inside `interruptible()`, the handler raises `Interrupted` (a BaseException, like
  KeyboardInterrupt, so `except Exception` does not swallow it), and `check()` raises it again at a
  safe point in case it was raised inside a callback that swallowed it.
- `exit_now(code)` ends the process without the interpreter's shutdown, after flushing stdout and
  stderr: the command has already written and closed what it owns.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from typing import Iterator, NoReturn

EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
_NAMES: dict[int, str] = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while a command was running."""

    def __init__(self, signum: int):
        super().__init__(_NAMES.get(signum, f"signal {signum}"))
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 128 + self.signum)


_raising = False
_pending: int | None = None


def exit_now(code: int, message: str | None = None) -> NoReturn:
    """Print `message` on stderr, flush, and end the process with `code` at once."""
    if message:
        print(message, file=sys.stderr)
    # The finalizers os._exit skips include those that unlink multiprocessing's named semaphores;
    # without them the resource tracker warns about "leaked semaphore objects" after we are gone.
    # (multiprocessing.util._run_finalizers is what a normal exit calls; private, hence getattr.)
    from multiprocessing import util

    run_finalizers = getattr(util, "_run_finalizers", None)
    if run_finalizers is not None:
        run_finalizers(0)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _handler(signum: int, frame) -> None:
    global _pending
    _pending = signum
    if _raising:
        raise Interrupted(signum)
    exit_now(EXIT_CODES.get(signum, 128 + signum), f"\n{_NAMES.get(signum, 'stopped')}")


def _quiet_about_interrupts(unraisable) -> None:
    """Python reports an exception raised where nothing can catch it (a garbage-collection callback)
    with a traceback; for Interrupted that is no error: check() raises it again at a safe point."""
    if not isinstance(unraisable.exc_value, Interrupted):
        sys.__unraisablehook__(unraisable)


def install() -> None:
    """Take over SIGINT and SIGTERM for this command (main thread only)."""
    for signum in EXIT_CODES:
        signal.signal(signum, _handler)
    sys.unraisablehook = _quiet_about_interrupts


@contextmanager
def interruptible() -> Iterator[None]:
    """Within this block a signal raises Interrupted, for the command to end cleanly."""
    global _raising
    _raising = True
    try:
        check()
        yield
    finally:
        _raising = False


def check() -> None:
    """Raise Interrupted if a signal came and was swallowed where it was raised."""
    if _pending is not None:
        raise Interrupted(_pending)
