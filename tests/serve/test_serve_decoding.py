"""The decoding pool of a long-lived service: a worker that dies or hangs on an image costs that
image only; the others in flight are decoded again in fresh workers."""

from __future__ import annotations

import asyncio

import pytest

from serve.serving import IMAGES, decode_or_crash

pytest.importorskip("fastapi")

from jaxnsfw.options import ScoringOptions  # noqa: E402
from jaxnsfw.serve.decoding import Decoder  # noqa: E402

GOOD = (IMAGES / "skimage__horse.png").read_bytes()


def decode_all(decoder: Decoder, uploads: list[bytes]):
    async def main():
        return await asyncio.gather(*(decoder.decode(f"{i}", data, ScoringOptions())
                                      for i, data in enumerate(uploads)))

    return asyncio.run(main())


@pytest.fixture
def decoder(request):
    timeout_s = getattr(request, "param", 30.0)
    decoder = Decoder(2, None, timeout_s, decode_or_crash)
    yield decoder
    decoder.close()


def test_a_crashing_image_gets_an_error_and_the_others_are_decoded(decoder):
    results = decode_all(decoder, [GOOD, b"crash", GOOD, GOOD])
    assert [r.error is None for r in results] == [True, False, True, True]
    assert results[1].error.startswith("WorkerCrashed")
    assert decoder.restarts >= 1
    assert decode_all(decoder, [GOOD])[0].image is not None  # and the pool works afterwards


@pytest.mark.parametrize("decoder", [2.0], indirect=True)
def test_a_hanging_image_is_given_up_after_the_timeout(decoder):
    # Both workers hang; the good images wait behind them until the pool is replaced.
    results = decode_all(decoder, [b"hang", b"hang", GOOD, GOOD])
    assert [r.error.startswith("Timeout: decoding took longer than 2 s") for r in results[:2]] == [True, True]
    assert all(r.image is not None for r in results[2:]), [r.error for r in results[2:]]
    assert decode_all(decoder, [GOOD])[0].image is not None


def test_unreadable_bytes_are_an_error_without_the_stream_repr(decoder):
    (result,) = decode_all(decoder, [b"not an image"])
    assert result.error == "UnidentifiedImageError: cannot identify image file"
