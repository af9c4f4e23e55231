"""What goes wrong with an atlas, as exceptions a caller (the command, the HTTP service) can tell apart.

No third-party imports here: `import jaxnsfw.atlas` must work without the `atlas` extra."""

from __future__ import annotations

import importlib.util

EXTRA_MODULES = ("pyarrow", "openTSNE", "scipy")
INSTALL_HINT = "pip install 'jaxnsfw[atlas]'"


class AtlasInputError(ValueError):
    """Bad input: no images, a grid smaller than the number of images, a file without embeddings..."""


class AtlasExtraMissing(RuntimeError):
    """pyarrow, openTSNE or scipy (the `atlas` extra) is not installed."""


def require_extra(*modules: str) -> None:
    """AtlasExtraMissing, naming what is missing and how to install it, unless `modules` (default:
    the whole extra) can be imported."""
    missing = [name for name in modules or EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise AtlasExtraMissing(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; "
                                f"the atlas needs them: {INSTALL_HINT}")
