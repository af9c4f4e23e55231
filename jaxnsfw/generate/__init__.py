"""Images made to score: `inverse` edits an image's own pixels, within an L-infinity budget, until
the reference pipeline scores it at a target; `evolve` evolves pictures of coloured shapes until
the network scores them at a target (or until they imitate a picture).

    >>> from jaxnsfw import generate
    >>> result = generate.inverse("photo.jpg", 0.5, out="photo.inverse.png", max_change=2)
    >>> result.score, result.max_change, result.psnr          # the PNG's score, read back
    >>> picture = generate.evolve(generate.EvolveConfig(shape="circles", count=50), out="circles.png")
    >>> picture.score, picture.generations, picture.evaluations_per_s

The names below load their module on first use, so that `jaxnsfw.generate.command` (imported to
build the `jaxnsfw` parser) does not pull in JAX.
"""

from __future__ import annotations

from jaxnsfw.lazy import lazy_exports

_MODULE_OF = {
    **dict.fromkeys(("InverseConfig", "InverseResult", "inverse", "inverse_rgb"), "search"),
    **dict.fromkeys(("OptimizerConfig", "UpdateRule"), "step"),
    **dict.fromkeys(("EvolveConfig", "EvolveResult", "evolve", "target_rgb256"), "evolution"),
    **dict.fromkeys(("Shape", "render", "render_population"), "shapes"),
    **dict.fromkeys(("Strategy",), "strategies"),
}

__all__ = sorted(_MODULE_OF)


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)
