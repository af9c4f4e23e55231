"""Routes for clients written for opennsfw2's HTTP service (bhky/opennsfw2, README-API.md), so that
they switch by changing the URL:

    POST /predict/image   {"input": {"type": "base64"|"url", "data": ...}, "options": {"preprocessing": "YAHOO"}}
    POST /predict/images  {"inputs": [{"type": ..., "data": ...}, ...], "options": {...}}

answered {"success": true, "result": {"nsfw_probability": p, "sfw_probability": 1 - p}, ...} and
{"success": true, "results": [...], ...}; errors 400 with {"detail": ..., "error": ...}. Only the
YAHOO preprocessing exists here (it is the reference pipeline, `mode=reference`).

Fetching by URL is off unless the operator names hosts (--allow-url-fetch HOST ...): only http(s)
URLs on those hosts, no redirects (a redirect could lead anywhere), at most `url_max_bytes`, within
`url_timeout_s`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Literal

from pydantic import BaseModel, Field

from jaxnsfw.serve.config import ServeConfig


class CompatError(ValueError):
    """A compatibility request that cannot be served (400)."""


class CompatInput(BaseModel):
    type: Literal["base64", "url"]
    data: str


class CompatOptions(BaseModel):
    preprocessing: str = "YAHOO"


class CompatImageRequest(BaseModel):
    input: CompatInput
    options: CompatOptions = Field(default_factory=CompatOptions)


class CompatImagesRequest(BaseModel):
    inputs: list[CompatInput]
    options: CompatOptions = Field(default_factory=CompatOptions)


def check_options(options: CompatOptions) -> None:
    if options.preprocessing.upper() != "YAHOO":
        raise CompatError(f"preprocessing {options.preprocessing!r} is not offered: this service runs Yahoo's "
                          f"reference pipeline (YAHOO) only")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"redirects are not followed (to {newurl})", headers, fp)


def _fetch(url: str, config: ServeConfig) -> bytes:
    opener = urllib.request.build_opener(_NoRedirects)
    deadline = time.monotonic() + config.url_timeout_s
    with opener.open(urllib.request.Request(url, headers={"User-Agent": "jaxnsfw-serve"}),
                     timeout=config.url_timeout_s) as response:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > config.url_max_bytes:
            raise CompatError(f"{url}: {declared} bytes, over the limit of {config.url_max_bytes}")
        chunks, size = [], 0
        while chunk := response.read(1 << 16):
            size += len(chunk)
            if size > config.url_max_bytes:
                raise CompatError(f"{url}: more than the limit of {config.url_max_bytes} bytes")
            if time.monotonic() > deadline:
                raise CompatError(f"{url}: took longer than {config.url_timeout_s:g} s")
            chunks.append(chunk)
    return b"".join(chunks)


async def input_bytes(item: CompatInput, config: ServeConfig) -> bytes:
    """The image bytes of one input: base64 decoded, or fetched from an allowed host."""
    if item.type == "base64":
        data = item.data.split(",", 1)[1] if item.data.startswith("data:") else item.data
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as err:
            raise CompatError(f"data is not valid base64: {err}") from None
    if not config.url_hosts:
        raise CompatError("fetching images by URL is off on this server (the operator enables it with "
                          "--allow-url-fetch HOST ...)")
    parsed = urllib.parse.urlsplit(item.data)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise CompatError(f"{item.data!r} is not an http(s) URL")
    if parsed.hostname.lower() not in config.url_hosts:
        raise CompatError(f"host {parsed.hostname!r} is not one this server fetches from")
    try:
        return await asyncio.wait_for(asyncio.to_thread(_fetch, item.data, config), config.url_timeout_s + 1)
    except TimeoutError:
        raise CompatError(f"{item.data}: took longer than {config.url_timeout_s:g} s") from None
    except (urllib.error.URLError, OSError) as err:
        raise CompatError(f"{item.data}: download failed: {getattr(err, 'reason', None) or err}") from None


def image_result(score: float) -> dict:
    return {"nsfw_probability": score, "sfw_probability": 1.0 - score}
