"""A server of its own: a full queue answers 503 with Retry-After and recovers; a slow body times
out; accepted jobs survive kill -9 and a restart (pending ones run, finished ones stay downloadable)."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from serve.serving import IMAGES, ServerProcess, png_bytes, wait_for_job

HORSE = IMAGES / "skimage__horse.png"
REQUEST_TIMEOUT_S = 3
SMALL_BODY_LIMIT = 1_000_000  # bodies: each, and all held at once


@pytest.fixture(scope="module")
def small_server(tmp_path_factory, score_root):
    """Two images in the queue at most, 1 MB of bodies at once, one decoding worker, two pending
    jobs, a short request deadline."""
    state = tmp_path_factory.mktemp("small") / "state"
    process = ServerProcess(state, "--max-batch", "8", "--decode-workers", "1", "--max-queue", "2",
                            "--max-pending-jobs", "2", "--max-body-bytes", str(SMALL_BODY_LIMIT),
                            "--max-inflight-bytes", str(SMALL_BODY_LIMIT),
                            "--request-timeout", str(REQUEST_TIMEOUT_S), "--score-root", str(score_root))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def slow_image() -> bytes:
    """25 million pixels of smooth gradient: a small PNG that takes a while to decode and resize."""
    gradient = np.linspace(0, 255, 5000, dtype=np.float32).astype(np.uint8)
    return png_bytes(Image.fromarray(np.broadcast_to(gradient, (5000, 5000)).copy()).convert("RGB"))


def test_a_full_queue_answers_503_with_retry_after_and_recovers(small_server, slow_image):
    url = small_server.url
    first: dict = {}

    def fill_the_queue():
        files = [("files", ("a.png", slow_image)), ("files", ("b.png", slow_image))]
        first["response"] = httpx.post(f"{url}/v1/score", files=files, timeout=60)

    filler = threading.Thread(target=fill_the_queue)
    filler.start()
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/readyz").json()["queued"] < 2:
        assert time.monotonic() < deadline, "the first request never got queued"
        time.sleep(0.005)
    refused = httpx.post(f"{url}/v1/score", content=HORSE.read_bytes())
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1" and "capacity" in refused.json()["error"]
    # While the first request's body is held, one that would pass the memory budget waits its turn too.
    too_much = httpx.post(f"{url}/v1/score", content=b"\0" * (SMALL_BODY_LIMIT - 1000))
    assert too_much.status_code == 503 and "bytes of request bodies" in too_much.json()["error"]
    filler.join(60)
    assert first["response"].status_code == 200, first["response"].text
    assert [r["name"] for r in first["response"].json()["results"]] == ["a.png", "b.png"]
    recovered = httpx.post(f"{url}/v1/score", content=HORSE.read_bytes())
    assert recovered.status_code == 200
    assert httpx.post(f"{url}/v1/score", content=b"\0" * (SMALL_BODY_LIMIT - 1000)).status_code == 422
    metrics = httpx.get(f"{url}/metrics").text
    assert 'jaxnsfw_rejected_total{reason="queue_full"} 1.0' in metrics
    assert 'jaxnsfw_rejected_total{reason="bodies_full"} 1.0' in metrics


def test_a_body_that_never_finishes_arriving_is_408_after_the_request_deadline(small_server):
    started = time.monotonic()
    answer: bytes | str
    with socket.create_connection(("127.0.0.1", small_server.port), timeout=REQUEST_TIMEOUT_S + 10) as sock:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"\x89PNG")
        answer = b""
        while not answer.endswith(b"}") and (chunk := sock.recv(65536)):  # headers and body may come apart
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 408"), answer
    assert '"error"' in answer
    assert REQUEST_TIMEOUT_S - 0.5 <= time.monotonic() - started < REQUEST_TIMEOUT_S + 5
    assert httpx.post(f"{small_server.url}/v1/score", content=HORSE.read_bytes()).status_code == 200


def submit_explain(client, **options) -> httpx.Response:
    return client.post("/v1/jobs", data={"kind": "explain", "options": json.dumps(options)},
                       files=[("file", ("horse.png", HORSE.read_bytes()))])


def test_past_max_pending_jobs_a_submission_is_503_with_retry_after(small_server):
    with httpx.Client(base_url=small_server.url, timeout=60) as client:
        busy = submit_explain(client, method="occlusion", box=64, stride=16).json()
        wait_for_job(client, busy["id"], until=("running", "done"))
        waiting = [submit_explain(client) for _ in range(2)]
        assert [r.status_code for r in waiting] == [202, 202]
        refused = submit_explain(client)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "30"
        assert "--max-pending-jobs" in refused.json()["error"]
        for job_id in [busy["id"], *(r.json()["id"] for r in waiting)]:
            client.delete(f"/v1/jobs/{job_id}")
            assert wait_for_job(client, job_id)["status"] in ("cancelled", "done")


def test_accepted_jobs_survive_kill_9_and_a_restart(small_server, score_root):
    url = small_server.url
    with httpx.Client(base_url=url, timeout=60) as client:
        done = client.post("/v1/jobs", data={"kind": "score", "folder": str(score_root)}).json()
        done = wait_for_job(client, done["id"])
        assert done["status"] == "done"
        before = client.get(f"/v1/jobs/{done['id']}/files/records.jsonl").content
        # A job the runner is busy with when the server dies, and one still waiting behind it.
        slow = submit_explain(client, method="occlusion", box=64, stride=16)
        queued = submit_explain(client)
        assert slow.status_code == queued.status_code == 202
        wait_for_job(client, slow.json()["id"], until=("running",))
    small_server.kill_9()
    with sqlite3.connect(small_server.state_dir / "jobs.sqlite3") as db:
        statuses = dict(db.execute("SELECT id, status FROM jobs"))
    assert statuses[slow.json()["id"]] == "running" and statuses[queued.json()["id"]] == "pending"

    small_server.start()
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.get(f"/v1/jobs/{done['id']}/files/records.jsonl").content == before
        for job_id in (slow.json()["id"], queued.json()["id"]):
            job = wait_for_job(client, job_id, timeout_s=180)
            assert job["status"] == "done", job
            assert client.get(job["files"][0]["url"]).status_code == 200
