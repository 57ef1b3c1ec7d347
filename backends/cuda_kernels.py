"""The CuPy backend's fused kernels: the same names, signatures and refusals as the NumPy backend's C kernels
(backends/kernels.py), launched as RawKernels from cuda_sources.py.

Each wrapper checks its arrays the way _kernels.c does and raises TypeError or ValueError (the callers' REFUSALS)
for anything it would compute differently from the standard code: a non-CuPy or non-float array, mixed dtypes or
sizes, a non-C-contiguous array, an array on another GPU than the current one, a written array that overlaps
another. The checks read only array metadata: nothing here waits for the GPU. Differences from the C kernels,
each because the GPU cannot answer without a sync:

- softmax_ce returns the summed loss as a 0-d array of the logits' dtype on the device, not a Python float;
  ``total / n`` and ``xp.asarray(..., dtype=z.dtype)`` in losses.py take either.
- take_scale_u8 cannot refuse a row index outside the dataset (that needs the indices on the host): it writes
  that row as NaN.

Two more names than the C kernels: count_correct(z, labels, counts, k) (see cuda_sources.COUNT_CORRECT), and
adam_counted (Adam with its step count on the device, for a recorded step).
The CPU cost of a call (the checks plus CuPy's RawKernel launch) has not been measured on a GPU yet; an
ElementwiseKernel launch measured ~11 us on an H200 host, and the aim is to stay near that.
"""
from __future__ import annotations

import numpy as np

from . import cuda_sources
from .counter_rng import PER_BLOCK, index_mask

_THREADS = 256
_MAX_BLOCKS = 4096          # with the grid-stride loops, more blocks than the GPU holds at once only adds launch cost
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_SUFFIX = {_F32: "_f32", _F64: "_f64"}
_SCALAR = {_F32: np.float32, _F64: np.float64}
_I64 = np.dtype(np.int64)

_kernels: dict = {}
_modules: dict = {}


def _kernel(module: str, name: str):
    """The RawKernel ``name`` of cuda_sources.SOURCES[module]; CuPy compiles the module on first use (per device,
    cached on disk under ~/.cupy/kernel_cache)."""
    k = _kernels.get(name)
    if k is None:
        import cupy

        mod = _modules.get(module)
        if mod is None:
            mod = _modules[module] = cupy.RawModule(code=cuda_sources.SOURCES[module],
                                                    options=cuda_sources.OPTIONS)
        k = _kernels[name] = mod.get_function(name)
    return k


def _grid(n: int) -> tuple:
    return (max(1, min(-(-n // _THREADS), _MAX_BLOCKS)),)


# ---- checks -------------------------------------------------------------------------------------------------

_nd = None                  # cupy.ndarray, and CuPy's runtime.getDevice: looked up once, used on every call
_get_device = None


def _cupy_types():
    global _nd, _get_device
    if _nd is None:
        import cupy
        from cupy_backends.cuda.api import runtime

        _nd, _get_device = cupy.ndarray, runtime.getDevice
    return _nd


def _floats(name, arrays, writable):
    """The common dtype and size of ``arrays`` (float32 or float64, one size, C-contiguous, on the current GPU,
    written ones not overlapping any other); TypeError or ValueError otherwise, as _kernels.c's ``acquire``."""
    dt, size = _same_floats(name, arrays)
    _placed(name, arrays, writable)
    return dt, size


def _same_floats(name, arrays):
    nd = _cupy_types()
    first = arrays[0]
    if type(first) is not nd or first.dtype not in _SUFFIX:
        raise TypeError(f"{name} takes float32 or float64 CuPy arrays, got {_describe(first)}")
    dt, size = first.dtype, first.size
    for a in arrays:
        if type(a) is not nd or a.dtype != dt or a.size != size:
            raise ValueError(f"{name} takes CuPy arrays of one dtype and one size, got {_describe(first)} and "
                             f"{_describe(a)}")
    return dt, size


def _placed(name, arrays, writable):
    """C-contiguous, on the current device, and no written array sharing memory with another."""
    dev = _get_device()
    spans = []
    for a in arrays:
        if not a._c_contiguous:
            raise ValueError(f"{name} takes C-contiguous arrays, got one with strides {a.strides}")
        if a.data.device_id != dev:
            raise ValueError(f"{name} runs on the current GPU ({dev}), got an array on GPU {a.data.device_id}")
        spans.append((a.data.ptr, a.data.ptr + a.nbytes))
    for i, w in enumerate(writable):
        lo, hi = spans[i]
        if not w or lo == hi:
            continue
        for j, (lo2, hi2) in enumerate(spans):
            if j != i and lo2 < hi2 and lo < hi2 and lo2 < hi:
                raise ValueError(f"{name}: fused kernels take arrays that do not overlap")


def _describe(a) -> str:
    dt = getattr(a, "dtype", None)
    return f"{type(a).__module__}.{type(a).__name__}" + (f" of {dt}" if dt is not None else "")


def _rows(name, arrays, writable, bias, bias_writable):
    """arrays share one (n, c) shape; bias is (c,) of their dtype. Returns (dtype, n, c)."""
    dt, _ = _same_floats(name, arrays)
    if arrays[0].ndim != 2:
        raise ValueError(f"{name} takes (batch, features) arrays, got shape {arrays[0].shape}")
    n, c = arrays[0].shape
    if type(bias) is not _nd or bias.dtype != dt or bias.size != c:
        raise ValueError(f"{name}: the bias must be (features,) = ({c},) of {dt}, got {_describe(bias)}")
    _placed(name, tuple(arrays) + (bias,), tuple(writable) + (bias_writable,))
    return dt, n, c


# ---- the kernels, as backends/kernels.py names them -----------------------------------------------------------

def sgd(w, grad, buf, lr, momentum, damp, wd, nesterov):
    """sgd(w, grad, buf, lr, momentum, dampening_factor, weight_decay, nesterov): one SGD step in place on w, buf."""
    dt, n = _floats("sgd", (w, grad, buf), (True, False, True))
    if n:
        T = _SCALAR[dt]
        _kernel("sgd", "sgd" + _SUFFIX[dt])(_grid(n), (_THREADS,), (
            w, grad, buf, np.int64(n), T(lr), T(momentum), T(damp), np.int32(damp != 1.0), T(wd),
            np.int32(wd != 0.0), np.int32(bool(nesterov))))


def sgd_apply(w, buf, lr, wd):
    """sgd_apply(w, buf, lr, wd): buf += wd * w (wd != 0); w = w - lr * buf, one pass."""
    dt, n = _floats("sgd_apply", (w, buf), (True, True))
    if n:
        T = _SCALAR[dt]
        _kernel("sgd", "sgd_apply" + _SUFFIX[dt])(_grid(n), (_THREADS,), (
            w, buf, np.int64(n), T(lr), T(wd), np.int32(wd != 0.0)))


def adam(w, grad, m, v, vmax, b1, b2, inv_sqrt_c2, eps, step_size, wd, mode):
    """adam(w, grad, m, v, vmax_or_None, b1, b2, inv_sqrt_c2, eps, step_size, wd, mode): one Adam step in place
    (mode 0: no weight decay, 1: L2 (Adam), 2: decoupled (AdamW), wd then being 1 - lr * weight_decay)."""
    arrays = (w, grad, m, v) if vmax is None else (w, grad, m, v, vmax)
    dt, n = _floats("adam", arrays, (True, False, True, True, True)[:len(arrays)])
    if n:
        T = _SCALAR[dt]
        _kernel("adam", "adam" + _SUFFIX[dt])(_grid(n), (_THREADS,), (
            w, grad, m, v, v if vmax is None else vmax, np.int32(vmax is not None), np.int64(n), T(b1),
            T(1.0 - b1), T(b2), T(1.0 - b2), T(inv_sqrt_c2), T(eps), T(step_size), T(wd), np.int32(mode)))


def adam_counted(w, grad, m, v, vmax, count, b1, b2, eps, lr, wd, mode):
    """adam_counted(w, grad, m, v, vmax_or_None, count, b1, b2, eps, lr, wd, mode): ``count += 1``, then one Adam step
    with the bias corrections computed on the GPU from that count, a 0-d array of w's dtype on the device (a step
    recorded into a CUDA graph keeps its count there: portanet/step/flat.py, counts_to_device). Two launches where
    adam.py's _update makes about twenty (23 with weight decay, 2 more with amsgrad); the same arithmetic in the same
    order, so the bits of _update with that count wherever both take b^t from one pow (CUDA's, on a GPU). mode and
    wd as adam's."""
    arrays = (w, grad, m, v) if vmax is None else (w, grad, m, v, vmax)
    dt, n = _same_floats("adam_counted", arrays)
    if type(count) is not _nd or count.dtype != dt or count.shape != ():
        raise ValueError(f"adam_counted takes its step count as a 0-d {dt} CuPy array, got {_describe(count)}")
    _placed("adam_counted", arrays + (count,), (True, False, True, True, True)[:len(arrays)] + (True,))
    T = _SCALAR[dt]
    _kernel("adam", "advance_count" + _SUFFIX[dt])((1,), (1,), (count,))
    if n:
        _kernel("adam", "adam_counted" + _SUFFIX[dt])(_grid(n), (_THREADS,), (
            w, grad, m, v, v if vmax is None else vmax, np.int32(vmax is not None), np.int64(n), count, T(b1),
            T(1.0 - b1), T(b2), T(1.0 - b2), T(eps), T(lr), T(wd), np.int32(mode)))


def relu_grad(dy, y, dx):
    """relu_grad(dy, y, dx): dx = dy * (y > 0), one pass."""
    dt, n = _floats("relu_grad", (dy, y, dx), (False, False, True))
    if n:
        _kernel("elementwise", "relu_grad" + _SUFFIX[dt])(_grid(n), (_THREADS,), (dy, y, dx, np.int64(n)))


def _bias_add(name, y, b, relu):
    dt, n, c = _rows(name, (y,), (True,), b, False)
    if n * c:
        _kernel("elementwise", "bias_add" + _SUFFIX[dt])(_grid(n * c), (_THREADS,), (
            y, b, np.int64(n), np.int64(c), np.int32(relu)))


def bias_add(y, b):
    """bias_add(y, b): y += b in place (y (n, c), b (c,))."""
    _bias_add("bias_add", y, b, False)


def bias_relu(y, b):
    """bias_relu(y, b): y = max(y + b, 0) in place, NaN kept, one pass."""
    _bias_add("bias_relu", y, b, True)


def _column_sum(dt, dy, y, dz, db, n, c, masked):
    if c:
        grid = (-(-c // 32),)
        _kernel("column_sum", "column_sum" + _SUFFIX[dt])(grid, (32, 8), (
            dy, y, dz, db, np.int64(n), np.int64(c), np.int32(masked)))


def bias_grad(dy, db):
    """bias_grad(dy, db): db = dy.sum(axis=0) (dy (n, c), db (c,))."""
    dt, n, c = _rows("bias_grad", (dy,), (False,), db, True)
    _column_sum(dt, dy, dy, dy, db, n, c, False)


def relu_grad_sum(dy, y, dz, db):
    """relu_grad_sum(dy, y, dz, db): dz = dy * (y > 0) and db = dz.sum(axis=0), one pass."""
    dt, n, c = _rows("relu_grad_sum", (dy, y, dz), (False, False, True), db, True)
    _column_sum(dt, dy, y, dz, db, n, c, True)


def _uint8(name, x):
    if type(x) is not _cupy_types() or x.dtype != np.uint8:
        raise TypeError(f"{name} takes a uint8 CuPy array, got {_describe(x)}")


def scale_u8(x, scale, out):
    """scale_u8(x_uint8, scale, out): out = float(x) * scale, one pass."""
    _uint8("scale_u8", x)
    if type(out) is not _nd or out.dtype not in _SUFFIX or out.size != x.size:
        raise TypeError(f"scale_u8 takes a uint8 array and a float array of as many elements, got "
                        f"{_describe(out)}")
    _placed("scale_u8", (x, out), (False, True))
    if x.size:
        dt = out.dtype
        _kernel("batch", "scale_u8" + _SUFFIX[dt])(_grid(x.size), (_THREADS,), (
            x, out, np.int64(x.size), _SCALAR[dt](scale)))


def take_scale_u8(x, rows, scale, out):
    """take_scale_u8(x_uint8, rows_int64, scale, out): out = float(x[rows]) * scale, gather and conversion in one
    pass. A row index outside 0..len(x)-1 gives a NaN row (the C kernel refuses it; here that needs a sync)."""
    nd = _cupy_types()
    if type(x) is not nd or x.dtype != np.uint8 or x.ndim < 1 or type(out) is not nd or out.dtype not in _SUFFIX:
        raise ValueError(f"take_scale_u8 takes a uint8 array of rows and a float32 or float64 output, got "
                         f"{_describe(x)} and {_describe(out)}")
    if type(rows) is not nd or rows.dtype != _I64 or rows.ndim != 1:
        raise ValueError(f"take_scale_u8 takes int64 row indices, got {_describe(rows)}")
    n_x = x.shape[0]
    width = x.size // n_x if n_x else 0
    if out.size != rows.size * width:
        raise ValueError("take_scale_u8's output must hold len(rows) rows of x")
    _placed("take_scale_u8", (x, rows, out), (False, False, True))
    if out.size:
        dt = out.dtype
        _kernel("batch", "take_scale_u8" + _SUFFIX[dt])(_grid(out.size), (_THREADS,), (
            x, np.int64(n_x), rows, out, np.int64(rows.size), np.int64(width), _SCALAR[dt](scale)))


def _head(name, z, labels):
    """z (n, c) float logits with n, c > 0 and (n,) int64 labels. Returns (dtype, n, c)."""
    nd = _cupy_types()
    if (type(z) is not nd or z.dtype not in _SUFFIX or z.ndim != 2 or type(labels) is not nd
            or labels.dtype != _I64 or labels.ndim != 1 or labels.size != z.shape[0] or z.size == 0):
        raise TypeError(f"{name} takes (n, c) float logits and (n,) int64 labels, got {_describe(z)} "
                        f"{getattr(z, 'shape', '')} and {_describe(labels)} {getattr(labels, 'shape', '')}")
    return z.dtype, z.shape[0], z.shape[1]


def softmax_ce(z, labels, grad, scale):
    """softmax_ce(z, labels, grad, scale) -> 0-d device array (z's dtype): the sum of the per-row losses;
    grad = (softmax(z) - onehot) * scale. A bad label or a NaN logit makes its row's loss and gradient NaN."""
    dt, n, c = _head("softmax_ce", z, labels)
    if type(grad) is not _nd or grad.dtype != dt or grad.size != z.size:
        raise ValueError(f"softmax_ce's gradient must be like the logits ({dt}, {z.shape}), got {_describe(grad)}")
    _placed("softmax_ce", (z, labels, grad), (False, False, True))
    total = _nd((), dtype=dt)
    _kernel("softmax_ce", "softmax_ce" + _SUFFIX[dt])((1,), (256,), (
        z, labels, grad, total, np.int64(n), np.int64(c), _SCALAR[dt](scale)))
    return total


def count_correct(z, labels, counts, k):
    """count_correct(z, labels, counts, k): counts[k] = number of rows whose argmax (the first maximum, as NumPy's)
    equals the label. z (n, c) float, labels (n,) int64, counts a 1-d int64 array, 0 <= k < len(counts)."""
    _head("count_correct", z, labels)
    if type(counts) is not _nd or counts.dtype != _I64 or counts.ndim != 1 or not 0 <= k < counts.size:
        raise ValueError(f"count_correct writes counts[k] of a 1-d int64 array, got {_describe(counts)} and k={k}")
    _placed("count_correct", (z, labels, counts), (False, False, True))
    n, c = z.shape
    _kernel("count_correct", "count_correct" + _SUFFIX[z.dtype])((1,), (256,), (
        z, labels, counts, np.int64(k), np.int64(n), np.int64(c)))


def gemm_tn(a, b, c, alpha, beta):
    """gemm_tn(a, b, c, alpha, beta): c = alpha * a.T @ b + beta * c through cuBLAS (backends/cublas.py)."""
    from . import cublas

    cublas.gemm_tn(a, b, c, alpha, beta)


TABLE = {"sgd": sgd, "adam": adam, "adam_counted": adam_counted, "softmax_ce": softmax_ce, "relu_grad": relu_grad,
         "bias_relu": bias_relu, "relu_grad_sum": relu_grad_sum, "bias_add": bias_add, "bias_grad": bias_grad,
         "scale_u8": scale_u8, "take_scale_u8": take_scale_u8, "gemm_tn": gemm_tn, "sgd_apply": sgd_apply,
         "count_correct": count_correct}
"""backends/kernels.py's NAMES but the NumPy-only ones (ReLU forward, the image and row kernels: CuPy runs the
standard code there)."""


# ---- random streams -----------------------------------------------------------------------------------------

class PhiloxEngine:
    """counter_rng.HostEngine on the GPU: the same draws, the same bits (normals to float tolerance), made on
    ``device`` (a cupy.cuda.Device, entered for the allocation and the launch)."""

    def __init__(self, device):
        self._device = device

    def _draw(self, kernel, per_block, n, dtype, key, start, *params):
        nd = _cupy_types()
        with self._device:
            out = nd((n,), dtype=dtype)
            if n:
                _kernel("rng", kernel)(_grid(-(-n // per_block)), (_THREADS,), (
                    out, np.int64(n), np.uint32(key[0]), np.uint32(key[1]), np.uint64(start), *params))
        return out

    def uniform(self, n, dtype, key, start, scale, shift):
        T = _SCALAR[dtype]
        return self._draw("uniform" + _SUFFIX[dtype], PER_BLOCK["uniform", dtype.name], n, dtype, key, start,
                          T(scale), T(shift))

    def normal(self, n, dtype, key, start, std, mean):
        T = _SCALAR[dtype]
        return self._draw("normal" + _SUFFIX[dtype], PER_BLOCK["normal", dtype.name], n, dtype, key, start,
                          T(std), T(mean))

    def bernoulli(self, n, dtype, key, start, p):
        return self._draw("bernoulli" + _SUFFIX[dtype], PER_BLOCK["bernoulli", dtype.name], n, dtype, key, start,
                          np.float64(p))

    def permutation(self, n, key, start):
        mask = index_mask(n)
        keys = self._draw("permutation_keys", PER_BLOCK["permutation", "int64"], n, np.dtype(np.uint64), key, start,
                          np.uint64(mask))
        with self._device:
            keys.sort()                                   # distinct keys: one order, whatever the sort
            return keys.view(np.int64) & np.int64(mask)   # the mask is below 2**63: the int64 view is the value
