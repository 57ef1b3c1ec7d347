"""Special functions the Array API standard lacks, written in it."""
from __future__ import annotations

import math

from .backends.quiet import quiet_overflow

_SQRT_PI = math.sqrt(math.pi)
_CUT = 2.5        # |x| below: Taylor series; above: continued fraction for erfc
_SERIES_TERMS = 40
_FRACTION_TERMS = 60


@quiet_overflow      # b * b overflows for huge |x|: exp(-inf) = 0, erf = +-1, the limit
def erf(xp, x):
    """erf(x) to about 1e-14 absolute in float64 (float32 rounds it), for any x.

    |x| < 2.5: erf = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)); beyond, erfc by the
    continued fraction erfc(x) = exp(-x^2)/sqrt(pi) / (x + 1/2 / (x + 1 / (x + 3/2 / ...))).
    Both branches are evaluated everywhere (no data-dependent branching), then selected.
    """
    a = xp.abs(x)
    s = xp.minimum(a, _CUT)
    s2 = -(s * s)
    term = s
    total = s
    for n in range(1, _SERIES_TERMS):
        term = term * s2 / n
        total = total + term / (2 * n + 1)
    small = total * (2.0 / _SQRT_PI)
    b = xp.maximum(a, _CUT)
    f = b
    for k in range(_FRACTION_TERMS, 0, -1):
        f = b + (k / 2.0) / f
    large = 1.0 - xp.exp(-(b * b)) / (_SQRT_PI * f)
    return xp.sign(x) * xp.where(a < _CUT, small, large)
