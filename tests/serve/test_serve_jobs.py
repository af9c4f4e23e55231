"""Asynchronous jobs: 202 with an id, status with progress, result files, cancel, clear failures."""

from __future__ import annotations

import json

import numpy as np
import pytest

import jaxnsfw
from serve.serving import IMAGES, wait_for_job

HORSE = IMAGES / "skimage__horse.png"


def file_url(job: dict, name: str) -> str:
    (url,) = [f["url"] for f in job["files"] if f["name"] == name]
    return url


def test_an_explain_job_writes_the_map_and_pictures(client):
    response = client.post("/v1/jobs", data={"kind": "explain", "options": json.dumps({"method": "gradcam"})},
                           files=[("file", ("horse.png", HORSE.read_bytes()))])
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "pending" and response.headers["location"] == f"/v1/jobs/{job['id']}"
    job = wait_for_job(client, job["id"])
    assert job["status"] == "done", job
    assert job["progress"] == 1.0
    names = {f["name"] for f in job["files"]}
    assert {"horse.gradcam.npy", "horse.gradcam.overlay.png", "explanation.json"} <= names
    for outside in ("..%2F..%2Fjobs.sqlite3", "..%2Finput%2Fhorse.png", "horse.png"):  # only its result files
        assert client.get(f"/v1/jobs/{job['id']}/files/{outside}").status_code == 404
    summary = client.get(file_url(job, "explanation.json")).json()
    assert abs(summary["score"] - jaxnsfw.nsfw_score(HORSE)) <= 1e-6
    import io

    saliency = np.load(io.BytesIO(client.get(file_url(job, "horse.gradcam.npy")).content))
    assert saliency.shape == (328, 400)


def test_a_score_job_reads_an_allowed_server_folder_as_jaxnsfw_score_does(client, score_root):
    response = client.post("/v1/jobs", data={"kind": "score", "folder": str(score_root)})
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["id"])
    assert job["status"] == "done", job
    records = [json.loads(line) for line in client.get(file_url(job, "records.jsonl")).text.splitlines()]
    by_name = {record["path"].rsplit("/", 1)[1]: record for record in records}
    assert set(by_name) == {"astronaut_cmyk.jpg", "notes.txt", "skimage__camera.png", "skimage__horse.png"}
    assert abs(by_name["skimage__horse.png"]["score"] - jaxnsfw.nsfw_score(HORSE)) <= 1e-6
    assert by_name["notes.txt"]["error"]
    assert client.get(file_url(job, "summary.json")).json()["errors"] == 1


@pytest.mark.parametrize("data, files, fragment", [
    ({"kind": "score", "folder": "/etc"}, None, "not under a folder this server may read"),
    ({"kind": "score", "folder": "relative/../../"}, None, "not under"),
    ({"kind": "paint"}, None, "unknown job kind"),
    ({"kind": "explain"}, None, "exactly one uploaded image"),
    ({"kind": "explain", "options": '{"colour": "red"}'}, [("file", ("a.png", b"x"))], "unknown explain options"),
    ({"kind": "explain", "options": "[1"}, [("file", ("a.png", b"x"))], "not JSON"),
    ({"kind": "atlas"}, None, "uploaded images"),
])
def test_a_job_that_cannot_run_is_refused_at_submission(client, data, files, fragment):
    response = client.post("/v1/jobs", data=data, files=files)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


def test_an_explain_job_on_an_unreadable_image_fails_with_the_reason(client):
    response = client.post("/v1/jobs", data={"kind": "explain"}, files=[("file", ("bad.png", b"not an image"))])
    job = wait_for_job(client, response.json()["id"])
    assert job["status"] == "failed" and "cannot identify image file" in job["error"]
    assert "files" not in job
    assert client.get(f"/v1/jobs/{job['id']}/files/bad.gradcam.npy").status_code == 404


def test_a_pending_job_can_be_cancelled_and_never_runs(client):
    # An occlusion map of 225 boxes keeps the runner busy while the second job waits.
    slow = client.post("/v1/jobs", data={"kind": "explain", "options": json.dumps(
        {"method": "occlusion", "box": 64, "stride": 24})}, files=[("file", ("horse.png", HORSE.read_bytes()))])
    waiting = client.post("/v1/jobs", data={"kind": "explain"}, files=[("file", ("horse.png", HORSE.read_bytes()))])
    cancelled = client.delete(f"/v1/jobs/{waiting.json()['id']}").json()
    assert cancelled["status"] == "cancelled"
    running = client.delete(f"/v1/jobs/{slow.json()['id']}").json()
    assert running["status"] in ("cancelled", "running", "done")
    assert wait_for_job(client, slow.json()["id"])["status"] in ("cancelled", "done")
    assert wait_for_job(client, waiting.json()["id"])["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{waiting.json()['id']}").json()["started"] is None


def test_an_atlas_job_on_uploaded_images(client):
    pytest.importorskip("jaxnsfw.atlas")
    names = ["skimage__horse.png", "skimage__camera.png", "astronaut_cmyk.jpg", "skimage__moon.png",
             "skimage__text.png", "skimage__page.png"]
    files = [("files", (name, (IMAGES / name).read_bytes())) for name in names]
    options = {"tile": 16, "seed": 0, "perplexity": 2.0}
    response = client.post("/v1/jobs", data={"kind": "atlas", "options": json.dumps(options)}, files=files)
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["id"], timeout_s=300)
    assert job["status"] == "done", job
    assert job["files"]
    for entry in job["files"]:
        assert client.get(entry["url"]).status_code == 200
