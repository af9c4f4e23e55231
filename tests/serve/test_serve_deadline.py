"""A request not answered within --request-timeout is given up with 504, and its images leave the queue."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("fastapi")

from jaxnsfw.options import ScoringOptions  # noqa: E402
from jaxnsfw.serve.app import ApiError, Service, Upload  # noqa: E402
from jaxnsfw.serve.config import ServeConfig  # noqa: E402


class NeverDecodes:
    async def decode(self, name, data, options):
        await asyncio.sleep(3600)


def test_a_request_past_its_deadline_is_504_and_frees_its_place_in_the_queue(tmp_path):
    service = Service(ServeConfig(request_timeout_s=0.2, state_dir=tmp_path))
    service.decoder = NeverDecodes()  # type: ignore[assignment]

    async def main():
        with pytest.raises(ApiError) as refused:
            await service.score([Upload("a", b"x"), Upload("b", b"y")], ScoringOptions(), 0.2, 0.8)
        return refused.value

    error = asyncio.run(main())
    assert error.status == 504 and "longer than 0.2 s" in error.message
    assert service.admitted == 0 and service.decoding == 0
