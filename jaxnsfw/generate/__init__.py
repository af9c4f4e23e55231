"""Images made to score: `inverse` edits an image's own pixels, within an L-infinity budget, until
the reference pipeline scores it at a target.

    >>> from jaxnsfw import generate
    >>> result = generate.inverse("photo.jpg", 0.5, out="photo.inverse.png", max_change=2)
    >>> result.score, result.max_change, result.psnr          # the PNG's score, read back

The names below load their module on first use, so that `jaxnsfw.generate.command` (imported to
build the `jaxnsfw` parser) does not pull in JAX.
"""

from __future__ import annotations

import importlib

_MODULE_OF = {
    **dict.fromkeys(("InverseConfig", "InverseResult", "inverse", "inverse_rgb"), "search"),
    **dict.fromkeys(("OptimizerConfig",), "step"),
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(list(globals()) + list(_MODULE_OF))
