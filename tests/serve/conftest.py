"""Fixtures of the serve tests: `server`, one real `jaxnsfw serve` process for the session
(compiling the batch shapes dominates start-up, so most tests share it), stopped at the end and
killed if it does not stop; tests that need their own server (kill -9, a tiny queue) start a
serving.ServerProcess."""

from __future__ import annotations

from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serve.serving import IMAGES, MAX_BODY_BYTES, MAX_QUEUE, URL_MAX_BYTES, ServerProcess  # noqa: E402  (after the skips)


@pytest.fixture(scope="session")
def score_root(tmp_path_factory) -> Path:
    """A folder `score` jobs may read: a few test images and one unreadable file."""
    root = tmp_path_factory.mktemp("score_root")
    for name in ("skimage__horse.png", "astronaut_cmyk.jpg", "skimage__camera.png"):
        (root / name).write_bytes((IMAGES / name).read_bytes())
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="session")
def image_host(tmp_path_factory):
    """A plain HTTP server on 127.0.0.1 serving tests/data/images (for the URL-fetch routes)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(IMAGES))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def server(tmp_path_factory, score_root, image_host):
    """The shared server: small batches (few shapes to compile), room for exactly 64 queued images."""
    state = tmp_path_factory.mktemp("serve") / "state"
    process = ServerProcess(state, "--max-batch", "8", "--max-wait-ms", "5", "--decode-workers", "1",
                            "--max-queue", str(MAX_QUEUE), "--max-files", "100", "--max-body-bytes",
                            str(MAX_BODY_BYTES), "--score-root", str(score_root), "--allow-url-fetch", "127.0.0.1",
                            "--url-max-bytes", str(URL_MAX_BYTES))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as http:
        yield http
