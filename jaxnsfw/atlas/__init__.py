"""See a whole collection at once: embeddings and the gridded t-SNE atlas.

    embed(paths, out="e.parquet")    jaxnsfw.atlas.embedding  records + 1024-d embeddings (bulk pipeline)
    read_embeddings(file)            jaxnsfw.atlas.embedding  what `jaxnsfw embed` wrote, checked
    layout(embeddings, grid=...)     jaxnsfw.atlas.placement  t-SNE, then one grid cell per image
    render(paths, scores, layout, d) jaxnsfw.atlas.pictures   atlas.png, atlas.json, index.html, tsne.png
    run_job(paths, file, d, opts, p) jaxnsfw.atlas.job        all of it, with progress (the HTTP service)

Importing this package imports neither pyarrow, openTSNE, scipy nor JAX (the `atlas` extra is
needed only when they are used, and says so: pip install 'jaxnsfw[atlas]').
"""

from jaxnsfw.atlas.errors import AtlasExtraMissing, AtlasInputError
from jaxnsfw.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "embed": "embedding", "read_embeddings": "embedding", "EmbeddingTable": "embedding",
    "EmbeddingWriter": "embedding",
    "layout": "placement", "Layout": "placement", "PlacementConfig": "placement", "default_grid": "placement",
    "assign": "placement", "neighbour_distance_ratio": "placement",
    "render": "pictures", "RenderOptions": "pictures",
    "run_job": "job", "AtlasOptions": "job",
})

__all__ = ["AtlasExtraMissing", "AtlasInputError", "AtlasOptions", "EmbeddingTable", "EmbeddingWriter", "Layout",
           "PlacementConfig", "RenderOptions", "assign", "default_grid", "embed", "layout",
           "neighbour_distance_ratio", "read_embeddings", "render", "run_job"]
