"""Dynamic batching, with a stand-in classifier that records the batches it is given."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")

from jaxnsfw.classifier import Verdict  # noqa: E402
from jaxnsfw.preprocess import PreparedImage  # noqa: E402
from jaxnsfw.serve.batcher import Batcher  # noqa: E402


class RecordingClassifier:
    batch_sizes = (1, 8, 32)

    def __init__(self, seconds_per_call: float = 0.0):
        self.batches: list[list[str]] = []
        self.seconds_per_call = seconds_per_call

    def verdicts(self, prepared):
        self.batches.append([p.name for p in prepared])
        time.sleep(self.seconds_per_call)
        return [Verdict(float(p.name), 0, "stored", np.zeros(1)) for p in prepared]


def image(name: str, views: int = 1) -> PreparedImage:
    return PreparedImage(name, tuple(range(views)), ("stored",) * views, np.zeros((views, 1, 1, 3), np.uint8))


def run(batcher_args: dict, arrivals, classifier=None, on_the_way=lambda: 1):
    """Each arrival (delay_s, name) asks for a verdict after its delay; returns the answers and batches."""
    classifier = classifier or RecordingClassifier()

    async def main():
        batcher = Batcher(classifier, on_the_way=on_the_way, **batcher_args)
        batcher.start()

        async def ask(delay, name):
            await asyncio.sleep(delay)
            return (await batcher.verdict(image(name))).score

        try:
            return await asyncio.gather(*(ask(delay, name) for delay, name in arrivals))
        finally:
            await batcher.stop()

    return asyncio.run(main()), classifier.batches


def test_concurrent_images_share_batches_of_at_most_max_batch_and_each_gets_its_own_answer():
    arrivals = [(0, str(i)) for i in range(20)]
    answers, batches = run({"max_batch": 8, "max_wait_s": 0.05}, arrivals)
    assert answers == [float(i) for i in range(20)]
    assert [len(b) for b in batches] == [8, 8, 4]


def test_a_batch_waits_at_most_max_wait_for_company():
    started = time.perf_counter()
    answers, batches = run({"max_batch": 8, "max_wait_s": 0.2}, [(0, "1")])
    assert answers == [1.0] and batches == [["1"]]
    assert 0.15 <= time.perf_counter() - started < 2


def test_with_nothing_being_decoded_a_batch_goes_at_once():
    started = time.perf_counter()
    run({"max_batch": 8, "max_wait_s": 5.0}, [(0, "1")], on_the_way=lambda: 0)
    assert time.perf_counter() - started < 1


def test_avoiding_padding_a_batch_takes_the_largest_compiled_size_its_images_fill():
    slow = RecordingClassifier(seconds_per_call=0.2)
    arrivals = [(0, "0")] + [(0.05, str(i)) for i in range(1, 11)]  # 10 arrive while the first is scored
    answers, batches = run({"max_batch": 32, "max_wait_s": 0.0, "avoid_padding": True}, arrivals, slow,
                           on_the_way=lambda: 0)
    assert answers == [float(i) for i in range(11)]
    assert [len(b) for b in batches] == [1, 8, 1, 1]
