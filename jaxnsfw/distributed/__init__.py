"""Bulk scoring past one machine: a Ray Data pipeline (`jaxnsfw score --engine ray`).

    >>> from jaxnsfw.distributed import score_with_ray, read_shards
    >>> score_with_ray(["photos/"], "scores/", recursive=True)   # a local Ray, or the session's
    >>> records = read_shards("scores/")                         # one Record per file, input order
    >>> embed_with_ray(["photos/"], "embeddings/", recursive=True) # records with 1024-d embeddings

Inputs are walked as by the local engine (or read from a manifest of paths and URIs), cut into
blocks; CPU tasks decode and preprocess each block with the local engine's code; Classifier actors
(one per GPU) score fixed-size batches; the driver writes one shard per finished block, atomically,
so a run is exactly once across crashes of tasks, of files and of the driver itself.

Needs the `ray` extra: pip install "jaxnsfw[ray]". Importing this package does not import Ray or
JAX; the names below load their module on first use.
"""

from __future__ import annotations

from jaxnsfw.lazy import lazy_exports

_MODULE_OF = {
    **dict.fromkeys(("ENGINE_NAMES", "RAY_INSTALL_HINT", "Engine", "RayMissing", "add_engine_arguments",
                     "check_engine_args"), "engine"),
    **dict.fromkeys(("InputBlock", "ManifestError", "input_blocks", "is_uri", "manifest_entries",
                     "manifest_inputs"), "inputs"),
    **dict.fromkeys(("EmbeddedRecord", "RecordKind", "embed_kind", "score_kind"), "kinds"),
    **dict.fromkeys(("RaySettings", "RunReport", "connect", "embed_with_ray", "run_distributed", "score_with_ray"),
                    "pipeline"),
    **dict.fromkeys(("ShardFolder", "read_shards", "shard_files"), "shards"),
}

__all__ = sorted(_MODULE_OF)


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)
