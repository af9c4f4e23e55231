"""The network side of a distributed run: a Classifier per Ray actor (one per accelerator), fed
fixed-size batches of prepared files, scoring them with the local engine's own batching
(jaxnsfw.bulk.pipeline.score_prepared, or embed_prepared for embeddings), so the records are the
ones a local run writes."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from jaxnsfw.options import ScoringOptions


class ScoringActor:
    """Ray Data callable class: weights loaded and programs compiled once per actor."""

    def __init__(self, options: ScoringOptions, weights: str | None = None, exact: bool = False,
                 batch_size: int = 8):
        # JAX is imported here, in the actor's own process (never in the driver before Ray starts).
        from jaxnsfw.bulk.command import use_one_cpu_device_per_core

        use_one_cpu_device_per_core()
        from jaxnsfw.classifier import Classifier

        self.classifier = Classifier(weights, exact=exact, batch_size=batch_size)
        self.mode = options.mode

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        prepared = [pickle.loads(data) for data in batch["prepared"]]
        records = self.records(prepared)
        results = np.empty(len(prepared), dtype=object)
        for i, (item, record) in enumerate(zip(prepared, records)):
            results[i] = pickle.dumps((record, item.warnings))
        return {"block": batch["block"], "slot": batch["slot"], "result": results}

    def records(self, prepared: list) -> list:
        from jaxnsfw.bulk.pipeline import score_prepared

        return list(score_prepared(prepared, self.classifier, self.mode, on_warning=lambda path, message: None))


class EmbeddingActor(ScoringActor):
    """As ScoringActor, each record carrying the 1024-d embedding of the view that gave its score
    (jaxnsfw.bulk.pipeline.embed_prepared: the same batches, one pass of the network)."""

    def records(self, prepared: list) -> list:
        from jaxnsfw.bulk.pipeline import embed_prepared
        from jaxnsfw.distributed.kinds import EmbeddedRecord

        return [EmbeddedRecord(record, embedding) for record, embedding
                in embed_prepared(prepared, self.classifier, self.mode, on_warning=lambda path, message: None)]
