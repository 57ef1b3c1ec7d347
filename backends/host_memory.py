"""Host memory: keep glibc from giving freed training-step arrays back to the kernel, one page fault at a time.

Every step allocates and frees the same large arrays: weight gradients and optimizer temporaries (0.8 MB each
for a 784x256 layer, 16 MB at width 2048). glibc gives the free memory at the top of its heap back to the
kernel once it exceeds the trim threshold (by its dynamic rule, twice the largest mmapped block freed so far),
so the next step's allocation takes one minor page fault per 4 KiB page to get it back: on the 784-256-256-10
MLP at batch 128, ~380 faults per step with the standard optimizer code when first measured (~0.4 ms, more than
the step's own elementwise work; 100-210 with today's, varying with what the process freed before), ~40 with the
first fused kernels and ~0 since the batch is gathered and converted in one pass (backends/kernels.py); at width
2048 and batch 512, ~1200. Setting
the two thresholds to the ceiling glibc's own rule would reach (mmap 32 MiB, trim 64 MiB) keeps those blocks in
the heap for the next step. It is what preloading jemalloc or tcmalloc gives PyTorch on CPU,
without the preload; memory above the trim threshold still goes back to the kernel.

It applies to the whole process, once, when the first host device (numpy, strict, torch:cpu) is created.
PORTANET_HOST_MALLOC=system leaves the allocator as it is. Where the C library is not glibc (macOS, musl,
Windows) there is nothing to tune.
"""
from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3    # glibc's mallopt parameter numbers (malloc.h)

_state: str | None = None


def tune() -> str:
    """Apply the thresholds once per process; returns ``status()``."""
    global _state
    if _state is None:
        _state = _apply()
    return _state


def status() -> str:
    """"tuned", "system (PORTANET_HOST_MALLOC=system)", "not glibc: ...", or "not yet" before the first host device."""
    return _state or "not yet"


def _apply() -> str:
    choice = os.environ.get("PORTANET_HOST_MALLOC", "tuned").strip().lower()
    if choice == "system":
        return "system (PORTANET_HOST_MALLOC=system)"
    if choice != "tuned":
        raise ValueError(f"PORTANET_HOST_MALLOC must be 'tuned' or 'system', got {choice!r}")
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        version = libc.gnu_get_libc_version().decode()
        mallopt = libc.mallopt
    except (AttributeError, OSError) as exc:
        return f"not glibc: {exc}"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # the mmap threshold first: setting either one turns glibc's dynamic rule off for both
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return f"not tuned: glibc {version} refused mallopt"
    return "tuned"
