"""NumPy's floating-point notes ("overflow encountered in multiply", "invalid value encountered in subtract"),
silenced in the portanet code that meets those edges on purpose and whose results there are the documented limits.

``quiet`` wraps a function so that NumPy (and array-api-strict, which computes with NumPy) neither warns of
overflow, invalid operations nor division by zero while it runs: a loss whose ``z - max`` is inf - inf at an
infinite logit, a value that ``where`` then replaces by the limit (portanet/losses.py's docstring); an optimizer's
g * g that overflows to the documented inf. ``quiet_overflow`` silences overflow alone, for code whose overflows
round to the limit (exp(-x * x) = 0, tanh(inf) = 1) but whose invalid operations still mean a NaN result. CuPy
and torch do not warn, so this costs them nothing; on NumPy it is one context switch per call (~0.4 us).
"""
from __future__ import annotations

import numpy as np

_SILENT = {"over": "ignore", "invalid": "ignore", "divide": "ignore"}
quiet = np.errstate(**_SILENT)
quiet_overflow = np.errstate(over="ignore")


def quieted():
    """``quiet``'s settings as a fresh ``with`` context (~1 us): NumPy 2's errstate objects enter a ``with`` block
    once in their life (as decorators, afresh per call). fit's step runs in one: the non-finite loss it checks for
    raises NonFiniteError, which says more than NumPy's "invalid value encountered in matmul" before it."""
    return np.errstate(**_SILENT)
