"""POST /v1/score answers nsfw_score's numbers, one image or many, alone or under 64 concurrent
clients; the opennsfw2-compatible routes answer the same numbers."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx
import pytest

import jaxnsfw
from jaxnsfw.classifier import default_classifier
from jaxnsfw.preprocess import ImageError
from serve.serving import IMAGES

TOLERANCE = 1e-6
SHARED_IMAGES = Path(__file__).resolve().parents[3] / "shared" / "caffe_reference" / "images"


def expected_scores(paths, mode="reference") -> dict[str, float]:
    """nsfw_score of every readable image among `paths`, by file name."""
    scores = {}
    for path in paths:
        try:
            scores[path.name] = jaxnsfw.nsfw_score(path, mode=mode)
        except ImageError:
            pass
    return scores


@pytest.fixture(scope="module")
def test_images() -> dict[str, float]:
    return expected_scores(sorted(IMAGES.iterdir()))


@pytest.fixture(scope="module")
def reference_images() -> dict[Path, float]:
    if not SHARED_IMAGES.is_dir():
        pytest.skip("../shared/caffe_reference/images is not beside this checkout")
    paths = sorted(SHARED_IMAGES.glob("*/*"))
    scores = expected_scores(paths)
    return {path: scores[path.name] for path in paths if path.name in scores}


def score_one(client, data: bytes, **params) -> httpx.Response:
    return client.post("/v1/score", content=data, params=params)


def score_many(client, files: list[tuple[str, bytes]], **params) -> httpx.Response:
    return client.post("/v1/score", files=[("files", (name, data)) for name, data in files], params=params)


def test_a_raw_image_scores_as_nsfw_score(client, test_images):
    for name, expected in test_images.items():
        response = score_one(client, (IMAGES / name).read_bytes(), name=name)
        assert response.status_code == 200, response.text
        (result,) = response.json()["results"]
        assert result["name"] == name
        assert abs(result["score"] - expected) <= TOLERANCE, name
        assert result["verdict"] in ("sfw", "unsure", "nsfw")


def test_many_images_in_one_request_are_answered_in_order_with_errors_in_place(client, test_images):
    files = [(path.name, path.read_bytes()) for path in sorted(IMAGES.iterdir())]
    response = score_many(client, files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["name"] for r in results] == [name for name, _ in files]
    for result in results:
        if result["name"] in test_images:
            assert abs(result["score"] - test_images[result["name"]]) <= TOLERANCE, result
        else:  # the reference cannot read it either (a multi-page TIFF Pillow cannot identify)
            assert set(result) == {"name", "error"} and result["error"]


def test_every_readable_reference_image_scores_as_nsfw_score(client, reference_images):
    paths = list(reference_images)
    for path in paths:
        (result,) = score_one(client, path.read_bytes(), name=path.name).json()["results"]
        assert abs(result["score"] - reference_images[path]) <= TOLERANCE, path.name
    for start in range(0, len(paths), 16):  # and in multi-image requests
        chunk = paths[start:start + 16]
        results = score_many(client, [(p.name, p.read_bytes()) for p in chunk]).json()["results"]
        assert [abs(r["score"] - reference_images[p]) <= TOLERANCE for r, p in zip(results, chunk)] == [True] * len(
            chunk)


def test_robust_mode_names_the_frame_and_view_that_gave_the_score(client):
    path = IMAGES / "chelsea_rgba_halftransparent.png"
    verdict = default_classifier().verdict(path, mode="robust")
    (result,) = score_one(client, path.read_bytes(), mode="robust").json()["results"]
    assert abs(result["score"] - verdict.score) <= TOLERANCE
    assert (result["frame"], result["view"]) == (verdict.frame, verdict.rendering)


def test_verdicts_follow_the_thresholds(client, test_images):
    name, score = next(iter(test_images.items()))
    data = (IMAGES / name).read_bytes()
    assert score_one(client, data, low=0.0, high=score).json()["results"][0]["verdict"] == "unsure"
    assert score_one(client, data, low=0.0, high=0.0).json()["results"][0]["verdict"] == "nsfw"
    assert score_one(client, data, low=1.0, high=1.0).json()["results"][0]["verdict"] == "sfw"


def test_64_concurrent_clients_all_get_their_own_answer(server, test_images):
    names = [name for name in test_images for _ in range(4)][:64]
    assert len(names) == 64

    async def one(http: httpx.AsyncClient, name: str) -> tuple[str, float]:
        response = await http.post("/v1/score", content=(IMAGES / name).read_bytes(), params={"name": name})
        assert response.status_code == 200, response.text
        (result,) = response.json()["results"]
        return result["name"], result["score"]

    async def all_clients():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:
            return await asyncio.gather(*(one(http, name) for name in names))

    answers = asyncio.run(all_clients())
    assert [name for name, _ in answers] == names
    assert all(abs(score - test_images[name]) <= TOLERANCE for name, score in answers)
    batches = [line for line in httpx.get(f"{server.url}/metrics").text.splitlines()
               if line.startswith("jaxnsfw_batch_views_count")]
    assert batches and float(batches[0].split()[-1]) > 0


def test_opennsfw2_clients_switch_by_changing_the_url(client, test_images, image_host):
    name, expected = next(iter(test_images.items()))
    encoded = base64.b64encode((IMAGES / name).read_bytes()).decode()
    answer = client.post("/predict/image", json={"input": {"type": "base64", "data": encoded}}).json()
    assert answer["success"] is True
    assert abs(answer["result"]["nsfw_probability"] - expected) <= TOLERANCE
    assert abs(answer["result"]["sfw_probability"] - (1 - expected)) <= TOLERANCE
    names = list(test_images)[:3]
    inputs = [{"type": "base64", "data": base64.b64encode((IMAGES / n).read_bytes()).decode()} for n in names]
    results = client.post("/predict/images", json={"inputs": inputs, "options": {"preprocessing": "YAHOO"}}).json()
    assert [abs(r["nsfw_probability"] - test_images[n]) <= TOLERANCE for r, n in zip(results["results"], names)] \
        == [True] * 3
    # By URL, from a host the operator allowed (--allow-url-fetch 127.0.0.1)
    fetched = client.post("/predict/image", json={"input": {"type": "url", "data": f"{image_host}/{name}"}}).json()
    assert abs(fetched["result"]["nsfw_probability"] - expected) <= TOLERANCE


def test_a_fetched_image_over_the_size_limit_or_missing_is_refused(client, image_host):
    url = f"{image_host}/astronaut_cmyk.jpg"
    too_large = client.post("/predict/image", json={"input": {"type": "url", "data": url}})
    assert too_large.status_code == 400 and "over the limit of 150000" in too_large.json()["detail"]
    missing = client.post("/predict/image", json={"input": {"type": "url", "data": f"{image_host}/nothing.png"}})
    assert missing.status_code == 400 and "download failed" in missing.json()["detail"]


@pytest.mark.parametrize("payload, message", [
    ({"input": {"type": "base64", "data": "not base64!"}}, "base64"),
    ({"input": {"type": "url", "data": "http://localhost/a.png"}}, "not one this server fetches from"),
    ({"input": {"type": "url", "data": "file:///etc/passwd"}}, "not an http(s) URL"),
    ({"input": {"type": "base64", "data": ""}, "options": {"preprocessing": "SIMPLE"}}, "YAHOO"),
    ({"input": {"type": "ftp", "data": "x"}}, "input.type"),
])
def test_opennsfw2_routes_refuse_bad_input_with_400(client, payload, message):
    response = client.post("/predict/image", json=payload)
    assert response.status_code == 400
    assert message in response.json()["detail"] and response.json()["error"] == response.json()["detail"]


def test_health_readiness_metrics_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["batch_sizes"][-1] == 8
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("jaxnsfw_requests_total", "jaxnsfw_request_seconds_bucket", "jaxnsfw_batch_views_bucket",
                 "jaxnsfw_queue_depth", "jaxnsfw_jobs"):
        assert name in metrics.text
    paths = json.loads(client.get("/openapi.json").text)["paths"]
    assert {"/v1/score", "/v1/jobs", "/v1/jobs/{job_id}", "/predict/image"} <= set(paths)
    assert "multipart/form-data" in paths["/v1/score"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200
