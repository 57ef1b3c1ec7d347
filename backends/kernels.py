"""Fused kernels for host (NumPy) arrays: the per-backend overrides of portanet's hottest loops.

The Array API code is the definition and the default. Where the standard cannot say "in one pass" — an optimizer
update is four to six separate elementwise passes over arrays too big for L2 cache — a backend may offer a
kernel that does the same arithmetic in one; and the standard's strided slices cannot walk an image plane by plane
the way im2col, col2im and max pooling want. The NumPy backend offers the C ones in _kernels.c, compiled at
install when a C compiler is there (setup.py, ``optional=True``). All but softmax_ce round exactly as the
standard code does (same operation order, float32 in float32, no FMA contraction); softmax_ce has its own exp and
agrees to float tolerance. tests/test_kernels.py checks both, for every option of every optimizer that uses them;
tests/test_window_kernels.py the image kernels.

Callers ask ``Device.kernel(name)`` and get a callable or None; a kernel that refuses its arguments (a
non-contiguous gradient, mixed dtypes) raises TypeError, ValueError or BufferError and the caller runs the
standard code instead. PORTANET_KERNELS=0 turns them off for the whole process; ``set_enabled`` does so in code.

Edge values are part of a kernel's contract, the same on every backend (a CuPy kernel included), and
tests/test_edges.py holds each kernel and the standard code to them. softmax_ce(z, labels, grad, scale), per row:
    m = max(z);  d = z - m, but exactly 0 wherever z == m (an infinite max: no inf - inf);  e = exp(d);
    s = sum(e);  loss = log(s) - d[label];  grad = (e / s - onehot(label)) * scale.
So exp(-inf) = 0 gives a -inf logit probability 0 and gradient 0 ([2, -inf, 1], label 0: 0.3132617); a label
at -inf, or under a +inf, gives loss +inf with a finite gradient; ties at the max share the probability, infinite
ones too ([inf, inf, 0] -> 1/2, 1/2, 0; a row of -inf is uniform); a NaN anywhere in the row makes its loss and
gradient NaN (the max may skip it, but its d is NaN and poisons s); a label outside 0..c-1 gives a NaN row. Never
pick the label's entry by multiplying with a one-hot (0 * -inf = NaN); select it. The float32 kernel's own exp
must give exactly 0 for -inf (and may flush below ~-87.7, where expf is subnormal).

Threads: a kernel with enough work (the optimizer updates, the Dense + ReLU forward, a uint8 batch's gather and
conversion) is split over the threads of the OpenBLAS that NumPy uses, which spin between GEMMs anyway: each thread
takes the share of rows the GEMM before it just wrote into that thread's own cache. The split gives the same bits
as one thread. ``threads()`` says how many it uses now: OpenBLAS's own count (OPENBLAS_NUM_THREADS, threadpoolctl),
capped by PORTANET_KERNEL_THREADS or ``set_threads``; 1 where NumPy's BLAS is not OpenBLAS or off Linux.
"""
from __future__ import annotations

import numbers
import os

try:
    from . import _kernels as _compiled
    _missing = None
except ImportError as exc:                    # no C compiler at install time: the standard code runs
    _compiled, _missing = None, str(exc)

REFUSALS = (TypeError, ValueError, BufferError)
NAMES = ("sgd", "adam", "softmax_ce", "relu", "relu_grad", "bias_relu", "relu_grad_sum", "bias_add", "bias_grad",
         "scale_u8", "take_scale_u8", "gemm_tn", "sgd_apply", "im2col", "col2im", "maxpool", "maxpool_grad",
         "bias_add_rows", "bias_grad_rows", "bias_relu_rows", "relu_grad_sum_rows",
         "count_correct", "adam_counted")   # CuPy's only
_enabled = os.environ.get("PORTANET_KERNELS", "1").strip() not in ("0", "false", "no", "off")


def set_threads(n: int | None) -> int | None:
    """Split kernels over at most ``n`` threads (1: the calling thread only); None: as many as OpenBLAS uses.
    Returns the previous setting."""
    if n is not None and (not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1):
        raise ValueError(f"set_threads takes a positive int or None, got {n!r}")
    if _compiled is None:
        return None
    return _compiled.set_threads(int(n or 0)) or None


def threads() -> int:
    """How many threads a kernel big enough to share is split over now (1 without the kernels or the pool)."""
    return _compiled.threads() if _compiled is not None else 1


def pool() -> str | None:
    """Path of the OpenBLAS library whose threads the kernels share, or None."""
    return _compiled.pool() if _compiled is not None else None


def _threads_from_env():
    raw = os.environ.get("PORTANET_KERNEL_THREADS", "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"PORTANET_KERNEL_THREADS must be a positive int (1: the calling thread only), got {raw!r}; "
                         "unset it to use as many threads as OpenBLAS does")
    return n


set_threads(_threads_from_env())


def set_enabled(flag: bool) -> None:
    """Use the fused kernels (True, the default when they are built) or the standard code everywhere (False)."""
    global _enabled
    _enabled = bool(flag)


def enabled() -> bool:
    """Whether kernels are on (PORTANET_KERNELS, set_enabled): every backend's kernels follow this switch."""
    return _enabled


def built() -> bool:
    """Whether the C kernels were compiled at install."""
    return _compiled is not None


def status() -> str:
    """One line for bug reports and the benchmark header."""
    if _compiled is None:
        return f"standard code (fused kernels not built: {_missing})"
    if not _enabled:
        return "standard code (fused kernels turned off)"
    lib = pool()
    if lib is None:
        where = "on the calling thread (no OpenBLAS thread pool found)"
    else:
        where = f"the big ones split over {threads()} thread{'s' * (threads() > 1)} of {os.path.basename(lib)}"
    return f"fused C kernels: {', '.join(_TABLE)}; {where}"


# gemm_tn exists only where the extension found the GEMM of NumPy's OpenBLAS
_TABLE = {name: getattr(_compiled, name) for name in NAMES if hasattr(_compiled, name)} if _compiled else {}


def get(name: str):
    """The kernel called ``name``, or None when it is not built or kernels are turned off."""
    kernel = _TABLE.get(name) if _enabled else None     # every step asks several times: one dict lookup
    if kernel is None and name not in NAMES:
        raise ValueError(f"no kernel named {name!r}; kernels are {', '.join(NAMES)}")
    return kernel
