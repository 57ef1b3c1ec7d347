"""The Backend protocol: the one place where an array library is adapted to portanet.

A backend turns a device name into the library's own device object, moves arrays between
the host (NumPy) and that device, and hands out seeded random generators. Everything else
portanet computes through ``backend.xp``, the library's Array API namespace.
"""
from __future__ import annotations

import json
import types

import numpy as np

from . import host_memory


class DeviceError(ValueError):
    """A device spec that names no device portanet knows (a typo, a bad index)."""


class DeviceUnavailableError(RuntimeError):
    """A well-formed device request that this machine cannot serve (no CuPy, no CUDA device)."""


def namespace_with(compat, functions):
    """A copy of the module ``compat`` (array-api-compat's namespace for a library) with ``functions`` (name ->
    function) in place of its own: how a backend swaps in a faster or capture-safe version of a few functions."""
    xp = types.ModuleType(compat.__name__, compat.__doc__)
    xp.__dict__.update(vars(compat))
    xp.__dict__.update(functions)
    return xp


class Generator:
    """A seeded random generator whose draws land on one device.

    normal(shape, dtype, mean, std), uniform(shape, dtype, low, high), bernoulli(shape, p, dtype)
    (1 with probability p, else 0), permutation(n) (int64 on the device).
    get_state() returns the whole state as a host uint8 array; set_state() restores it.
    """

    backend_name = "base"

    def normal(self, shape, dtype, mean=0.0, std=1.0):
        raise NotImplementedError

    def uniform(self, shape, dtype, low=0.0, high=1.0):
        raise NotImplementedError

    def bernoulli(self, shape, p, dtype):
        raise NotImplementedError

    def permutation(self, n):
        raise NotImplementedError

    def get_state(self) -> np.ndarray:
        raise NotImplementedError

    def set_state(self, state) -> None:
        raise NotImplementedError


def encode_state(obj) -> np.ndarray:
    """JSON-able generator state -> host uint8 array (checkpoints store arrays, never pickles)."""
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8).copy()


def decode_state(arr):
    return json.loads(np.asarray(arr, dtype=np.uint8).tobytes().decode("utf-8"))


class NumpyHostGenerator(Generator):
    """PCG64 on the host; ``place`` moves each draw to the device (identity for NumPy).

    NumPy and array-api-strict share it, so the same seed gives the same numbers on both.
    """

    backend_name = "numpy"

    def __init__(self, seed, place=None):
        self._gen = np.random.Generator(np.random.PCG64(seed))
        self._place = place or _on_host       # picklable (a model with Dropout pickles and deep-copies)

    def normal(self, shape, dtype, mean=0.0, std=1.0):
        a = self._gen.standard_normal(shape, dtype=_host_float(dtype))
        if std != 1.0:
            a *= std
        if mean != 0.0:
            a += mean
        return self._place(a)

    def uniform(self, shape, dtype, low=0.0, high=1.0):
        a = self._gen.random(shape, dtype=_host_float(dtype))
        if (low, high) != (0.0, 1.0):
            a *= high - low
            a += low
        return self._place(a)

    def bernoulli(self, shape, p, dtype):
        hd = _host_float(dtype)
        return self._place((self._gen.random(shape, dtype=hd) < p).astype(hd))

    def permutation(self, n):
        return self._place(self._gen.permutation(n).astype(np.int64))

    def get_state(self):
        return encode_state(self._gen.bit_generator.state)

    def set_state(self, state):
        self._gen.bit_generator.state = decode_state(state)


def _on_host(a):
    return a


def _host_float(dtype):
    """A backend float dtype -> the NumPy dtype of the same name."""
    try:
        name = np.dtype(dtype).name
    except TypeError:  # array-api-strict dtypes print as 'array_api_strict.float32'
        name = str(dtype).rsplit(".", 1)[-1]
    if name not in ("float32", "float64"):
        raise TypeError(f"random draws need float32 or float64, got {dtype}")
    return np.dtype(name)


class Backend:
    """Adapter for one array library. Subclasses fill in the library-specific parts.

    name              "numpy" | "cupy" | "torch" | "strict"
    xp                the Array API namespace
    devices()         the native devices this backend can use here (empty when none, never raises)
    unavailable()     None when usable, else the reason (quoting the library's own message)
    parse(rest)       the part after "name:" of a device spec -> native device
    label(native)     the user-facing name: "cpu", "gpu:0", "torch:cpu", "strict:device1"
    asarray(host, native, dtype, copy)   host NumPy -> device array
    to_host(a)        device array -> NumPy (the one sanctioned way out)
    rng(seed, native) Generator
    kernel(name)      a fused kernel for this library's arrays (backends/kernels.py), or None
    prepare(native)   once, when the first Device on ``native`` is made (host memory: tunes the allocator)
    synchronize(native)
    free_memory(native)  bytes free, or None where it does not apply (host memory)
    """

    name = "base"
    inplace = True          # arrays support x += y without reallocation
    is_gpu = False

    def __init__(self):
        self._xp = None

    @property
    def xp(self):
        if self._xp is None:
            self._xp = self._load_namespace()
        return self._xp

    def _load_namespace(self):
        raise NotImplementedError

    def devices(self) -> list:
        raise NotImplementedError

    def unavailable(self):
        return None

    def parse(self, rest):
        raise NotImplementedError

    def label(self, native) -> str:
        raise NotImplementedError

    def array_types(self) -> tuple:
        raise NotImplementedError

    def device_of(self, a):
        return a.device

    def same_device(self, a, native) -> bool:
        return a.device == native

    def asarray(self, host, native, dtype=None, copy=None):
        raise NotImplementedError

    def to_host(self, a) -> np.ndarray:
        raise NotImplementedError

    def rng(self, seed, native) -> Generator:
        raise NotImplementedError

    def kernel(self, name):
        return None

    def prepare(self, native) -> None:
        if self.in_host_memory(native):
            host_memory.tune()

    def in_host_memory(self, native) -> bool:
        return not self.is_gpu

    def synchronize(self, native) -> None:
        return None

    def free_memory(self, native):
        return None

    def dtype(self, name: str):
        return getattr(self.xp, name)

    def streamer(self, native):
        """Per-batch host -> device copies for placement="stream" (CuPy overrides with pinned, async ones)."""
        return SyncStreamer(self, native)

    def step_graph(self, native):
        """A StepGraph that records a training step on ``native`` into a CUDA graph, or None where this backend
        cannot (every host backend). CuPy and torch on CUDA override it."""
        return None


class CaptureUnsupported(RuntimeError):
    """A step that cannot be recorded into a CUDA graph (what it contains, and why)."""


class StepGraph:
    """One training step recorded into a CUDA graph and replayed (the protocol backends implement).

    warmup(fn)                 run fn() eagerly where the capture will happen (lazy allocations, kernel loading,
                               cuBLAS workspaces), ordered after the work already queued; returns fn()'s result
    capture(fn, generators)    record fn() into the graph without running it; returns what fn() returned, arrays
                               whose storage every replay rewrites. ``generators``: the model's random generators,
                               which must advance on every replay; CaptureUnsupported where that cannot be arranged
    replay()                   run the recorded step on the current stream, asynchronously
    """

    def warmup(self, fn):
        raise NotImplementedError

    def capture(self, fn, generators=()):
        raise NotImplementedError

    def replay(self):
        raise NotImplementedError


class SyncStreamer:
    """Per-batch host -> device copy, done when submitted (CPU backends, array-api-strict)."""

    def __init__(self, backend, native):
        self._backend, self._native = backend, native

    def submit(self, host_batch):
        return self._backend.asarray(host_batch, self._native)

    def collect(self, handle):
        return handle

