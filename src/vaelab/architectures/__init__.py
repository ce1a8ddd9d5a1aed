"""Every architecture vaelab can build, one module each in this package: adding one is adding a module that
calls ``register(Architecture(...))``. The modules are found and imported here, so nothing else lists them.

``get("conv")`` is an architecture's declaration, ``names()`` their names in their stated order.
"""

from __future__ import annotations

import importlib
import pkgutil

from .registry import REGISTRY, Architecture, Networks, register

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")


def names() -> tuple[str, ...]:
    return tuple(sorted(REGISTRY, key=lambda name: REGISTRY[name].position))


def get(name: str) -> Architecture:
    """The architecture called ``name``; a KeyError for an unknown one (the config's choices catch that first)."""
    return REGISTRY[name]


__all__ = ["Architecture", "Networks", "get", "names", "register"]
