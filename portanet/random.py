"""Seeds. ``seed(n)`` makes every later draw reproducible; each device gets its own default
generator, seeded from one process-wide stream, so creation order alone fixes the numbers."""
from __future__ import annotations

import os

from ._numbers import is_int

_MASK = (1 << 64) - 1
_state = int.from_bytes(os.urandom(8), "little")
_default_generators: dict = {}


def seed(n: int) -> None:
    """Seed portanet: initial weights, dropout masks and unseeded loaders become reproducible.

    Runs are then bit-identical on CPU backends; a GPU backend may differ in the last bits
    where its kernels are not deterministic.
    """
    global _state
    if not is_int(n) or n < 0:
        raise ValueError(f"seed must be a non-negative int, got {n!r}")
    _state = int(n) & _MASK
    _default_generators.clear()


def next_seed() -> int:
    """The next 63-bit seed of the process-wide stream (SplitMix64: pure Python, no array library)."""
    global _state
    _state = (_state + 0x9E3779B97F4A7C15) & _MASK
    z = _state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) >> 1


def default_generator(device):
    """The device's default generator, created from the seed stream on first use."""
    gen = _default_generators.get(device)
    if gen is None:
        gen = _default_generators[device] = device.backend.rng(next_seed(), device.native)
    return gen
