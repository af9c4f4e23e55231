"""Pictures made of coloured, translucent shapes, drawn in JAX for a whole population at once.

A genome is an (N, G) array of genes in [0, 1]: one row per shape, painted in row order over a
plain background, each blended with its own alpha. Coverage is hard-edged, decided at pixel
centres, as Pillow's ImageDraw fills (no anti-aliasing), so a genome drawn here and by Pillow
differs only on pixels that straddle an edge. Genes outside [0, 1] (evolution strategies sample
unbounded reals) are clipped when drawn.
"""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
import numpy as np


class Shape(enum.Enum):
    CIRCLES = "circles"
    TRIANGLES = "triangles"

    @property
    def genes(self) -> int:
        """Genes per shape: the geometry, then red, green, blue and alpha."""
        return GEOMETRY_GENES[self] + 4


# circles: centre x, centre y, radius; triangles: centre x, centre y, then each corner's offset
# from it (x, y). A triangle placed by its centre moves whole when that gene mutates, as a circle
# does, and its corners stay near each other.
GEOMETRY_GENES = {Shape.CIRCLES: 3, Shape.TRIANGLES: 8}
# A radius gene of 1 is a quarter of the canvas side: 50 such circles cover it several times over,
# while the small ones still make detail. A triangle's corners reach as far from its centre.
MAX_RADIUS_FRACTION = 0.25
# In square pixels: below this a triangle is a line, however its corners' float32 rounding falls.
MIN_TRIANGLE_AREA = 1e-2


def _pixel_centres(size: int) -> tuple[jax.Array, jax.Array]:
    centres = jnp.arange(size, dtype=jnp.float32) + 0.5
    return centres[None, :], centres[:, None]  # x varies along columns, y along rows


def circle_coverage(geometry: jax.Array, size: int) -> jax.Array:
    """(size, size) float mask of the pixels whose centres lie inside the circle (genes in [0, 1])."""
    x, y = _pixel_centres(size)
    cx, cy = geometry[0] * size, geometry[1] * size
    radius = geometry[2] * size * MAX_RADIUS_FRACTION
    return ((x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2).astype(jnp.float32)


def triangle_corners(geometry: jax.Array) -> jax.Array:
    """(3, 2) corners (x, y) in canvas units (0..1) of a triangle's 8 geometry genes."""
    offsets = (geometry[2:].reshape(3, 2) - 0.5) * (2 * MAX_RADIUS_FRACTION)
    return geometry[:2] + offsets


def triangle_coverage(geometry: jax.Array, size: int) -> jax.Array:
    """(size, size) float mask of the pixels whose centres lie inside the triangle (either winding;
    a triangle of no area covers nothing, though float32 rounding leaves its area a hair off zero)."""
    x, y = _pixel_centres(size)
    corners = triangle_corners(geometry) * size
    edges = []
    for i in range(3):
        (x0, y0), (x1, y1) = corners[i], corners[(i + 1) % 3]
        edges.append((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0))
    inside = ((edges[0] >= 0) & (edges[1] >= 0) & (edges[2] >= 0)) | \
             ((edges[0] <= 0) & (edges[1] <= 0) & (edges[2] <= 0))
    (ax, ay), (bx, by), (qx, qy) = corners[0], corners[1], corners[2]
    area = (bx - ax) * (qy - ay) - (by - ay) * (qx - ax)
    return (inside & (jnp.abs(area) > MIN_TRIANGLE_AREA)).astype(jnp.float32)


COVERAGE = {Shape.CIRCLES: circle_coverage, Shape.TRIANGLES: triangle_coverage}


def render(genome: jax.Array, shape: Shape, size: int, background: tuple[int, int, int] = (0, 0, 0)) -> jax.Array:
    """One (N, G) genome -> (size, size, 3) float32 RGB in 0..255, before rounding."""
    coverage = COVERAGE[shape]
    genome = jnp.clip(genome, 0.0, 1.0)

    def paint(canvas, gene_row):
        geometry, colour, alpha = gene_row[:-4], gene_row[-4:-1] * 255.0, gene_row[-1]
        weight = (alpha * coverage(geometry, size))[..., None]
        return canvas + weight * (colour - canvas), None

    start = jnp.broadcast_to(jnp.asarray(background, jnp.float32), (size, size, 3))
    canvas, _ = jax.lax.scan(paint, start, genome)
    return canvas


def render_population(genomes: jax.Array, shape: Shape, size: int,
                      background: tuple[int, int, int] = (0, 0, 0)) -> jax.Array:
    """(P, N, G) genomes -> (P, size, size, 3) int32 pixels, 0..255: exactly what is saved and scored."""
    canvases = jax.vmap(lambda genome: render(genome, shape, size, background))(genomes)
    return jnp.round(jnp.clip(canvases, 0.0, 255.0)).astype(jnp.int32)


def random_genomes(key: jax.Array, population: int, count: int, shape: Shape) -> jax.Array:
    """(P, N, G) genes uniform in [0, 1]."""
    return jax.random.uniform(key, (population, count, shape.genes))


def as_uint8(pixels) -> np.ndarray:
    return np.asarray(pixels).astype(np.uint8)
