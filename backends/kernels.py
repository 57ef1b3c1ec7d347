"""Fused kernels for host (NumPy) arrays: the per-backend overrides of portanet's hottest loops.

The Array API code is the definition and the default. Where the standard cannot say "in one pass" — an optimizer
update is four to six separate elementwise passes over arrays too big for L2 cache — a backend may offer a
kernel that does the same arithmetic in one. The NumPy backend offers the C ones in _kernels.c, compiled at
install when a C compiler is there (setup.py, ``optional=True``). All but softmax_ce round exactly as the
standard code does (same operation order, float32 in float32, no FMA contraction); softmax_ce has its own exp and
agrees to float tolerance. tests/test_kernels.py checks both, for every option of every optimizer that uses them.

Callers ask ``Device.kernel(name)`` and get a callable or None; a kernel that refuses its arguments (a
non-contiguous gradient, mixed dtypes) raises TypeError, ValueError or BufferError and the caller runs the
standard code instead. PORTANET_KERNELS=0 turns them off for the whole process; ``set_enabled`` does so in code.
"""
from __future__ import annotations

import os

try:
    from . import _kernels as _compiled
    _missing = None
except ImportError as exc:                    # no C compiler at install time: the standard code runs
    _compiled, _missing = None, str(exc)

REFUSALS = (TypeError, ValueError, BufferError)
NAMES = ("sgd", "adam", "softmax_ce", "relu_grad", "bias_relu", "relu_grad_sum", "bias_add", "bias_grad",
         "scale_u8")
_enabled = os.environ.get("PORTANET_KERNELS", "1").strip() not in ("0", "false", "no", "off")


def set_enabled(flag: bool) -> None:
    """Use the fused kernels (True, the default when they are built) or the standard code everywhere (False)."""
    global _enabled
    _enabled = bool(flag)


def built() -> bool:
    """Whether the C kernels were compiled at install."""
    return _compiled is not None


def status() -> str:
    """One line for bug reports and the benchmark header."""
    if _compiled is None:
        return f"standard code (fused kernels not built: {_missing})"
    if not _enabled:
        return "standard code (fused kernels turned off)"
    return f"fused C kernels: {', '.join(NAMES)}"


def get(name: str):
    """The kernel called ``name``, or None when it is not built or kernels are turned off."""
    if name not in NAMES:
        raise ValueError(f"no kernel named {name!r}; kernels are {', '.join(NAMES)}")
    if _compiled is None or not _enabled:
        return None
    return getattr(_compiled, name)
