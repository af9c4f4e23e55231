"""Every kind of bad request gets its status code and a JSON error, and never affects the next
good request."""

from __future__ import annotations

import pytest
from PIL import Image

from serve.serving import IMAGES, MAX_BODY_BYTES, MAX_QUEUE, png_bytes

GOOD = (IMAGES / "skimage__horse.png").read_bytes()


@pytest.fixture(scope="module")
def decompression_bomb() -> bytes:
    """400 million pixels (over twice Pillow's limit) in a PNG of a few kB."""
    return png_bytes(Image.new("1", (20_000, 20_000)))


def assert_still_serves(client) -> None:
    response = client.post("/v1/score", content=GOOD)
    assert response.status_code == 200, response.text
    assert 0 <= response.json()["results"][0]["score"] <= 1


def assert_error(response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert all(fragment in error for fragment in fragments), error


@pytest.mark.parametrize("body, fragment", [
    (b"this is not an image", "cannot identify image file"),
    (GOOD[: len(GOOD) // 2], "truncated"),
    ((IMAGES / "skimage__multipage_rgb.tif").read_bytes(), "UnidentifiedImageError"),
])
def test_a_single_unreadable_image_is_422_with_the_reason(client, body, fragment):
    assert_error(client.post("/v1/score", content=body), 422, fragment)
    assert_still_serves(client)


def test_a_decompression_bomb_is_422_and_never_decoded(client, decompression_bomb):
    assert_error(client.post("/v1/score", content=decompression_bomb), 422, "DecompressionBombError")
    assert_still_serves(client)


def test_in_a_multi_image_request_a_bad_image_gets_an_error_in_its_place(client, decompression_bomb):
    files = [("files", ("good.png", GOOD)), ("files", ("bomb.png", decompression_bomb)),
             ("files", ("text.png", b"text")), ("files", ("again.png", GOOD))]
    response = client.post("/v1/score", files=files)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["name"] for r in results] == ["good.png", "bomb.png", "text.png", "again.png"]
    assert "DecompressionBombError" in results[1]["error"] and "cannot identify" in results[2]["error"]
    assert results[0]["score"] == results[3]["score"]


def test_a_body_over_the_limit_is_413(client):
    assert_error(client.post("/v1/score", content=b"\0" * (MAX_BODY_BYTES + 1)), 413, "--max-body-bytes")
    assert_still_serves(client)


def test_more_images_in_one_request_than_the_queue_holds_is_413(client):
    files = [("files", (f"{i}.png", GOOD)) for i in range(MAX_QUEUE + 1)]
    assert_error(client.post("/v1/score", files=files), 413, "--max-queue")
    assert_still_serves(client)


@pytest.mark.parametrize("request_args, status, fragment", [
    ({"content": b""}, 400, "empty body"),
    ({"files": [("other", ("a.png", GOOD))]}, 400, "`files`"),
    ({"content": GOOD, "params": {"mode": "fast"}}, 422, "mode"),
    ({"content": GOOD, "params": {"low": 0.9, "high": 0.1}}, 422, "low"),
    ({"content": GOOD, "params": {"high": 2}}, 422, "high"),
])
def test_malformed_requests_are_refused_with_a_json_error(client, request_args, status, fragment):
    assert_error(client.post("/v1/score", **request_args), status, fragment)
    assert_still_serves(client)


def test_unknown_routes_and_methods_answer_json(client):
    assert_error(client.get("/v1/nothing"), 404, "Not Found")
    assert_error(client.get("/v1/score"), 405, "Method Not Allowed")
    assert_error(client.get("/v1/jobs/0123456789abcdef0123456789abcdef"), 404, "no job")
    assert_error(client.get("/v1/jobs/../../etc/passwd"), 404, "")
    assert_still_serves(client)


def test_a_client_that_goes_away_mid_request_does_not_hurt_the_service(server, client):
    import socket

    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + GOOD[:1000])
    assert_still_serves(client)
    assert client.get("/readyz").json()["queued"] == 0
