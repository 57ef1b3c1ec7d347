"""Array-library adapters. ``get(name)`` imports a backend only when it is first asked for."""
from __future__ import annotations

import importlib

from .base import Backend, DeviceError, DeviceUnavailableError, Generator

NAMES = ("numpy", "cupy", "torch", "strict")
_loaded: dict[str, Backend] = {}


def get(name: str) -> Backend:
    if name not in NAMES:
        raise DeviceError(f"unknown backend '{name}': portanet has {', '.join(NAMES)}")
    if name not in _loaded:
        _loaded[name] = importlib.import_module(f"{__name__}.{name}").BACKEND
    return _loaded[name]


__all__ = ["Backend", "DeviceError", "DeviceUnavailableError", "Generator", "NAMES", "get"]
