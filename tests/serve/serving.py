"""Helpers for the serve tests: a real `jaxnsfw serve` process on a free loopback port."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "tests" / "data" / "images"
START_TIMEOUT_S = 180
MAX_BODY_BYTES = 24_000_000
MAX_QUEUE = 64
URL_MAX_BYTES = 150_000  # astronaut_cmyk.jpg (186 kB) is over it; the others are under



def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m jaxnsfw serve` with `args`, ready (its /readyz answered 200) once constructed."""

    def __init__(self, state_dir: Path, *args: str, log: Path | None = None):
        self.state_dir, self.args = state_dir, args
        self.log = log or state_dir.parent / f"{state_dir.name}.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        command = [sys.executable, "-m", "jaxnsfw", "serve", "--port", str(self.port), "--state-dir",
                   str(self.state_dir), "--log-level", "warning", *self.args]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not get ready in {START_TIMEOUT_S} s:\n{self.log.read_text()}")

    def kill_9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> int | None:
        """SIGTERM (uvicorn's graceful stop), then SIGKILL if it is still there after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(30)


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def wait_for_job(client, job_id: str, until=("done", "failed", "cancelled"), timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    job: dict = {}
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not finished after {timeout_s} s: {job}")


def decode_or_crash(name: str, data: bytes, options):
    """A decoder with a bug: the process dies on the bytes b"crash" (run in a spawned worker)."""
    if data == b"crash":
        os._exit(3)
    if data == b"hang":
        time.sleep(60)
    from jaxnsfw.serve.decoding import decode_upload

    return decode_upload(name, data, options)
