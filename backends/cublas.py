"""GEMMs on CuPy arrays straight through cuBLAS: a lean ``matmul`` for the namespace, and ``gemm_tn`` (the weight
gradient into an optimizer's state, backends/kernels.py's kernel of that name).

Why. ``cupy.matmul`` measured ~140 us of CPU a call on an H200 host (cupy issues 5075, 8191: type resolution,
broadcasting, shape bookkeeping), against ~21 us for PyTorch's; a training step of a 3-layer MLP makes 8. Here a 2-D
float32/float64 product with operands that cuBLAS can read in place goes to cublas<S|D>gemm after a handful of
attribute reads, and anything else goes to the namespace's own matmul.

The handle, as PyTorch keeps its own (aten/src/ATen/cuda/CublasHandlePool.cpp):
- one per (thread, device), created lazily, never shared with CuPy's (so nothing else changes its settings);
- bound to CuPy's current stream before a call whenever that stream changed, and then given a preallocated
  workspace of its own for that stream, because cublasSetStream "unconditionally resets the cuBLAS library
  workspace back to the default workspace pool" (cuBLAS docs, cublasSetStream). With a fixed workspace nothing is
  allocated inside a call, which is what lets a stream capture (CUDA graphs) record it later; size as PyTorch:
  CUBLAS_WORKSPACE_CONFIG (":KiB:count" pairs) if set, else 32 MiB on compute capability 9.0 (cuBLAS's
  recommendation for Hopper) and 8 MiB + 128 KiB elsewhere;
- math mode CUBLAS_DEFAULT_MATH: float32 products in float32, no TF32 (portanet promises float32 results);
  ``set_tf32(True)`` opts in to CUBLAS_TF32_TENSOR_OP_MATH, as torch.backends.cuda.matmul.allow_tf32 does.

The handle's lifecycle and math mode go through CuPy's binding (cupy_backends.cuda.libs.cublas). Three calls go
through ctypes on the same libcublas, because the binding cannot make them as needed: cublasSetWorkspace_v2 (not
bound at all); cublasSetStream_v2, because the binding's setStream raises NotImplementedError on a stream that is
capturing (CuPy 14's guard, cupy/cupy#6290), and a handle last bound to another stream is rebound inside a
recording (epoch 2 of a captured fit, after the last batch ran eagerly); and the GEMMs themselves: the binding's
sgemm/dgemm call cublasSetStream first whenever any CuPy stream has been made current (its ``_setStream``), which
would throw the workspace away on every call and refuse every GEMM of a recording.

Layout. cuBLAS is column-major, and a C-contiguous (r, s) array read column-major is its transpose (s x r, leading
dimension s); an F-contiguous one (the .T of a C-contiguous array) is itself (r x s, leading dimension r). So C =
A @ B (row-major, m x n) is computed as C^T = B^T A^T: gemm(op_B, op_A, n, m, k, B, A, C, ldc = n), op = N for a
C-contiguous operand and T for an F-contiguous one.
"""
from __future__ import annotations

import ctypes
import os
import re
import threading

import numpy as np

from . import kernels as _host_kernels

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_INT_MAX = 2**31 - 1
OP_N, OP_T = 0, 1                               # cublasOperation_t
DEFAULT_MATH, TF32_TENSOR_OP_MATH = 0, 3        # cublasMath_t
_tf32 = False
_local = threading.local()
_lib = None


def set_tf32(allowed: bool) -> bool:
    """Let float32 GEMMs use TF32 tensor cores (10-bit mantissa products, float32 sums), or not (the default).
    Returns the previous setting."""
    global _tf32
    previous, _tf32 = _tf32, bool(allowed)
    return previous


# ---- the library ------------------------------------------------------------------------------------------------

class _Library:
    """libcublas through ctypes: the functions CuPy's binding cannot call as we need (module doc)."""

    def __init__(self):
        path = _library_path()
        lib = ctypes.CDLL(path)
        self.path = path
        vp, i = ctypes.c_void_p, ctypes.c_int
        self.set_workspace = _function(lib, "cublasSetWorkspace_v2", [vp, vp, ctypes.c_size_t])
        self.set_stream = _function(lib, "cublasSetStream_v2", [vp, vp])
        gemm_args = [vp, i, i, i, i, i, vp, vp, i, vp, i, vp, vp, i]
        self.gemm = {_F32: _function(lib, "cublasSgemm_v2", gemm_args),
                     _F64: _function(lib, "cublasDgemm_v2", gemm_args)}


def _function(lib, name, argtypes):
    fn = getattr(lib, name)
    fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return fn


def _library_path() -> str:
    """The libcublas CuPy loaded: where cuda-pathfinder (which CuPy loads it with) found it, else the process's
    own memory map."""
    from cupy_backends.cuda.libs import cublas  # noqa: F401  (makes CuPy load the library)

    try:
        from cuda import pathfinder

        path = pathfinder.load_nvidia_dynamic_lib("cublas").abs_path
        if path:
            return path
    except Exception:               # an older CuPy that loads it another way: the memory map still has it
        pass
    with open("/proc/self/maps") as maps:
        for line in maps:
            found = re.search(r"(/\S*/libcublas\.so[.\d]*)$", line.strip())
            if found:
                return found.group(1)
    raise RuntimeError("cuBLAS is not loaded in this process (CuPy loads it on first use)")


def _library() -> _Library:
    global _lib
    if _lib is None:
        _lib = _Library()
    return _lib


def _check(status, what):
    if status != 0:
        raise RuntimeError(f"cuBLAS {what} failed with status {status} (cublasStatus_t; 7 is an invalid value, "
                           "13 an execution failure)")


def workspace_bytes(compute_capability: str) -> int:
    """The workspace a handle gets per stream: CUBLAS_WORKSPACE_CONFIG's ":KiB:count" pairs summed, else 32 MiB
    on compute capability 9.0 and 8 MiB + 128 KiB elsewhere (PyTorch's choice, after cuBLAS's recommendation)."""
    config = os.environ.get("CUBLAS_WORKSPACE_CONFIG", "")
    pairs = re.findall(r":(\d+):(\d+)", config)
    if pairs:
        return sum(int(kib) * 1024 * int(count) for kib, count in pairs)
    return 4096 * 8 * 1024 if compute_capability == "90" else 4096 * 1024 * 2 + 16 * 1024 * 8


# ---- handles ----------------------------------------------------------------------------------------------------

class _Handle:
    """One cuBLAS handle of this thread on one device, with a workspace per stream it has run on."""

    def __init__(self, device_id: int):
        import cupy
        from cupy_backends.cuda.libs import cublas

        self._cublas, self._cupy = cublas, cupy
        self.lib = _library()
        self.ptr = cublas.create()                 # on the current device, which is device_id
        self.tf32 = None
        self.stream = None
        self.size = workspace_bytes(cupy.cuda.Device(device_id).compute_capability)
        self.workspaces = {}                       # stream pointer -> MemoryPointer, kept for the handle's life
        # host scalars (cuBLAS's default pointer mode), by dtype: matmul's 1 and 0, gemm_tn's alpha and beta.
        # Their addresses are taken once: numpy's .ctypes costs a microsecond a call.
        self._host = {dt: np.array([1, 0, 0, 0], dt) for dt in (_F32, _F64)}
        self.one = {dt: a.ctypes.data for dt, a in self._host.items()}
        self.zero = {dt: p + dt.itemsize for dt, p in self.one.items()}
        self.scalars = {dt: a[2:] for dt, a in self._host.items()}
        self.scalars_ptr = {dt: p + 2 * dt.itemsize for dt, p in self.one.items()}

    def bind(self, stream: int):
        """Run on ``stream``, with this handle's workspace for it (allocated on first use of that stream). Works
        while ``stream`` is recording a CUDA graph: cublasSetStream and cublasSetWorkspace only set the handle's
        state (PyTorch's getCurrentCUDABlasHandle makes both calls on every use, captures included)."""
        _check(self.lib.set_stream(self.ptr, stream), "cublasSetStream")
        ws = self.workspaces.get(stream)
        if ws is None:
            ws = self.workspaces[stream] = self._cupy.cuda.alloc(self.size)   # CuPy's pool: 512-byte aligned
        _check(self.lib.set_workspace(self.ptr, ws.ptr, self.size), "cublasSetWorkspace")
        self.stream = stream

    def set_math(self, tf32: bool):
        self._cublas.setMathMode(self.ptr, TF32_TENSOR_OP_MATH if tf32 else DEFAULT_MATH)
        self.tf32 = tf32


_get_device = None
_get_stream = None
_nd = None


def _imports():
    global _get_device, _get_stream, _nd
    import cupy
    from cupy_backends.cuda.api import runtime

    _get_device, _get_stream, _nd = runtime.getDevice, cupy.cuda.get_current_stream, cupy.ndarray


def handle(device_id: int | None = None) -> _Handle:
    """This thread's handle on the current device, bound to the current stream and math mode."""
    if _get_device is None:
        _imports()
    dev = _get_device() if device_id is None else device_id
    handles = _local.__dict__
    h = handles.get(dev)
    if h is None:
        h = handles[dev] = _Handle(dev)
    stream = _get_stream().ptr
    if stream != h.stream:
        h.bind(stream)
    if h.tf32 is not _tf32:
        h.set_math(_tf32)
    return h


# ---- products ---------------------------------------------------------------------------------------------------

def _op(c_contiguous, f_contiguous, rows, cols):
    """(op, leading dimension) that makes cuBLAS read a row-major (rows, cols) array as the matrix itself
    transposed, i.e. as the column-major transpose it is stored as; None if it cannot read it in place."""
    if c_contiguous:
        return OP_N, cols
    if f_contiguous:
        return OP_T, rows
    return None


def matmul_plan(m, k, n, a_layout, b_layout):
    """cuBLAS's arguments for C (m, n) = A (m, k) @ B (k, n), all row-major, C fresh and C-contiguous:
    (op_B, op_A, n, m, k, ldb, lda, ldc), to pass with B's and C's pointers in that order; None where a layout
    is neither C- nor F-contiguous. a_layout, b_layout: (C-contiguous, F-contiguous) flags."""
    la, lb = _op(*a_layout, m, k), _op(*b_layout, k, n)
    if la is None or lb is None:
        return None
    return lb[0], la[0], n, m, k, lb[1], la[1], n


def gemm_tn_plan(k, m, n):
    """cuBLAS's arguments for C (m, n) = alpha A^T B + beta C with A (k, m), B (k, n), C C-contiguous:
    C^T (n x m) = B^T (B as stored, n x k, ld n) times A (A^T as stored, transposed back: k x m, ld m)."""
    return OP_N, OP_T, n, m, k, n, m, n


def matmul_or_none(a, b):
    """a @ b through cuBLAS for 2-D CuPy arrays of one float dtype, each C- or F-contiguous, on the current
    device, with no empty dimension; None for anything else (the caller's matmul then computes it)."""
    if _nd is None:
        _imports()
    if type(a) is not _nd or type(b) is not _nd or a.ndim != 2 or b.ndim != 2:
        return None
    dt = a.dtype
    if dt != b.dtype or (dt != _F32 and dt != _F64):
        return None
    m, k = a.shape
    k2, n = b.shape
    if k != k2 or not (m and n and k) or max(m, n, k) > _INT_MAX:
        return None
    plan = matmul_plan(m, k, n, (a._c_contiguous, a._f_contiguous), (b._c_contiguous, b._f_contiguous))
    dev = _get_device()
    if plan is None or a.data.device_id != dev or b.data.device_id != dev:
        return None
    op_b, op_a, n_, m_, k_, ldb, lda, ldc = plan
    h = handle(dev)
    c = _nd((m, n), dtype=dt)
    _check(h.lib.gemm[dt](h.ptr, op_b, op_a, n_, m_, k_, h.one[dt], b.data.ptr, ldb, a.data.ptr, lda,
                          h.zero[dt], c.data.ptr, ldc), "gemm")
    return c


def make_matmul(fallback):
    """The namespace's ``matmul``: cuBLAS directly where ``matmul_or_none`` can, else ``fallback`` (array-api-compat's
    CuPy matmul). PORTANET_KERNELS=0 (kernels.set_enabled(False)) sends everything to the fallback."""

    def matmul(x1, x2, /):
        if _host_kernels._enabled:
            c = matmul_or_none(x1, x2)
            if c is not None:
                return c
        return fallback(x1, x2)

    matmul.__doc__ = fallback.__doc__
    matmul.__wrapped__ = fallback
    return matmul


def gemm_tn(a, b, c, alpha, beta):
    """c = alpha * a.T @ b + beta * c in place. a: (k, m), b: (k, n), c: (m, n) or any C-contiguous array of
    m * n elements, all C-contiguous float32 or float64 of one dtype on the current device, k, m, n > 0, c sharing
    no memory with a or b. Anything else raises ValueError (callers fall back to the standard code), as the NumPy
    kernel of that name does. With beta == 0, c is not read (NaN in c does not propagate)."""
    if _nd is None:
        _imports()
    dt = getattr(a, "dtype", None)
    ok = (type(a) is _nd and type(b) is _nd and type(c) is _nd and (dt == _F32 or dt == _F64)
          and b.dtype == dt and c.dtype == dt and a.ndim == 2 and b.ndim == 2)
    k, m = a.shape if ok else (0, 0)
    n = b.shape[1] if ok else 0
    ok = (ok and k > 0 and m > 0 and n > 0 and b.shape[0] == k and c.size == m * n
          and max(k, m, n) <= _INT_MAX)
    if not ok:
        raise ValueError("gemm_tn takes float CuPy arrays a (k, m), b (k, n), c (m * n elements) of one dtype, "
                         "k, m, n > 0")
    dev = _get_device()
    if not (a._c_contiguous and b._c_contiguous and c._c_contiguous):
        raise ValueError("gemm_tn takes C-contiguous arrays")
    if a.data.device_id != dev or b.data.device_id != dev or c.data.device_id != dev:
        raise ValueError(f"gemm_tn runs on the current GPU ({dev}); an array is on another")
    lo, hi = c.data.ptr, c.data.ptr + c.nbytes
    for x in (a, b):
        if x.data.ptr < hi and lo < x.data.ptr + x.nbytes:
            raise ValueError("gemm_tn: fused kernels take arrays that do not overlap")
    h = handle(dev)
    s = h.scalars[dt]
    s[0], s[1] = alpha, beta
    p = h.scalars_ptr[dt]
    op_b, op_a, n_, m_, k_, ldb, lda, ldc = gemm_tn_plan(k, m, n)
    _check(h.lib.gemm[dt](h.ptr, op_b, op_a, n_, m_, k_, p, b.data.ptr, ldb, a.data.ptr, lda, p + dt.itemsize,
                          c.data.ptr, ldc), "gemm")


def status() -> str:
    """One line for bug reports: the library, the workspace, the math mode."""
    try:
        lib = _library()
    except Exception as e:          # no CuPy, no cuBLAS: say why
        return f"cuBLAS not loaded ({e})"
    return f"cuBLAS {lib.path}; math {'TF32 allowed' if _tf32 else 'float32 (no TF32)'}"
