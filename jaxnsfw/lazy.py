"""Package attributes imported from their modules on first use.

The `jaxnsfw` parser imports every feature's command module, and bulk's worker processes import
the package to decode; neither may pull in JAX. A package lists which module holds each public
name and takes its `__getattr__` and `__dir__` from here (PEP 562).
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_exports(package: str, module_of: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose name N lives in module `module_of[N]`: a
    sub-module's bare name ("search") or a full module path ("jaxnsfw.classifier"). A name, once
    loaded, is kept in the package."""

    def __getattr__(name: str) -> object:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = module_of[name]
        value = getattr(importlib.import_module(module if "." in module else f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(module_of))

    return __getattr__, __dir__
