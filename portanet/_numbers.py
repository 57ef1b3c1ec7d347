"""What counts as a number where portanet checks a count or an option: any ``numbers.Integral`` / ``numbers.Real``
but bool, so NumPy's scalars (``np.int64(32)`` from ``len`` arithmetic on arrays, ``np.float32(0.1)``) pass where
Python's do. Callers store ``int(value)`` / ``float(value)``, so what they keep (and save in checkpoints) is
Python's."""
from __future__ import annotations

from numbers import Integral, Real


def is_int(a) -> bool:
    return isinstance(a, Integral) and not isinstance(a, bool)


def is_real(a) -> bool:
    return isinstance(a, Real) and not isinstance(a, bool)
