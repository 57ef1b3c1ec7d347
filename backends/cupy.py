"""CuPy on CUDA GPUs. Imports cleanly, and reports why, on machines without one."""
from __future__ import annotations

import numpy as np

from .base import (Backend, DeviceError, DeviceUnavailableError, Generator, decode_state,
                   encode_state)

INSTALL_HINT = "pip install 'portanet[gpu]'"


class CupyGenerator(Generator):
    """cuRAND XORWOW streams. Its state is (seed, draws): restoring one reseeds deterministically
    from that pair, so a resumed run is reproducible but not the continuation of the same stream."""

    backend_name = "cupy"

    def __init__(self, seed, native):
        self._native = native
        self._reseed(int(seed), 0)

    def _reseed(self, seed, draws):
        import cupy

        self._seed, self._draws = seed, draws
        with self._native:
            self._gen = cupy.random.default_rng(np.random.SeedSequence([seed, draws]))

    def _next(self):
        self._draws += 1
        return self._gen

    def normal(self, shape, dtype, mean=0.0, std=1.0):
        with self._native:
            a = self._next().standard_normal(shape, dtype=dtype)
            return a * std + mean if (mean, std) != (0.0, 1.0) else a

    def uniform(self, shape, dtype, low=0.0, high=1.0):
        with self._native:
            a = self._next().random(shape, dtype=dtype)
            return a * (high - low) + low if (low, high) != (0.0, 1.0) else a

    def bernoulli(self, shape, p, dtype):
        with self._native:
            return (self._next().random(shape, dtype=dtype) < p).astype(dtype)

    def permutation(self, n):
        import cupy

        with self._native:
            return cupy.argsort(self._next().random(n)).astype(cupy.int64)

    def get_state(self):
        return encode_state([self._seed, self._draws])

    def set_state(self, state):
        seed, draws = decode_state(state)
        self._reseed(seed, draws)


class CupyBackend(Backend):
    name = "cupy"
    is_gpu = True

    def _load_namespace(self):
        reason = self.unavailable()
        if reason:
            raise DeviceUnavailableError(reason)
        import array_api_compat.cupy as xp

        return xp

    _reason = ...

    def unavailable(self):
        if self._reason is ...:
            self._reason = self._probe()
        return self._reason

    def _probe(self):
        try:
            import cupy
        except Exception as e:  # ImportError, or a broken CUDA install raising at import
            return (f"device='gpu' needs CuPy and a CUDA device: {INSTALL_HINT}, or use device='cpu' "
                    f"(importing cupy failed: {e})")
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:
            return (f"device='gpu' needs CuPy and a CUDA device; CuPy is installed but reports: {e}. "
                    "Use device='cpu', or install a CUDA driver that matches cupy-cuda12x")
        if count == 0:
            return "device='gpu' needs a CUDA device; CuPy sees none. Use device='cpu'"
        return None

    def devices(self):
        if self.unavailable():
            return []
        import cupy

        return [cupy.cuda.Device(i) for i in range(cupy.cuda.runtime.getDeviceCount())]

    def parse(self, rest):
        reason = self.unavailable()
        if reason:
            raise DeviceUnavailableError(reason)
        index = 0 if rest in (None, "") else _index(rest)
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        if index >= count:
            raise DeviceError(f"device 'gpu:{index}' is out of range: CuPy sees {count} GPU(s), gpu:0..gpu:{count - 1}")
        native = cupy.cuda.Device(index)
        # array-api-compat's CuPy creation functions allocate on CuPy's *current* device and CuPy kernels run
        # there, so resolving gpu:N makes GPU N current (one GPU per process, as with CUDA_VISIBLE_DEVICES).
        native.use()
        return native

    def label(self, native):
        return f"gpu:{native.id}"

    def array_types(self):
        import cupy

        return (cupy.ndarray,)

    def same_device(self, a, native):
        return a.device.id == native.id

    def asarray(self, host, native, dtype=None, copy=None):
        import cupy

        with native:
            if copy:
                return cupy.array(host, dtype=dtype, copy=True)
            return cupy.asarray(host, dtype=dtype)

    def to_host(self, a):
        return a.get()

    def rng(self, seed, native):
        return CupyGenerator(seed, native)

    def synchronize(self, native):
        with native:
            import cupy

            cupy.cuda.get_current_stream().synchronize()

    def free_memory(self, native):
        import cupy

        with native:
            return cupy.cuda.runtime.memGetInfo()[0]

    def streamer(self, native):
        return PinnedStreamer(native)


class PinnedStreamer:
    """Host -> GPU batch copies through pinned buffers on a side stream, one batch ahead.

    ``submit(host_batch)`` starts the asynchronous copy of a NumPy batch and returns a handle;
    ``collect(handle)`` makes the compute stream wait on the copy's event (the host does not
    wait) and returns the device array. Two pinned buffers alternate (double buffering); a buffer
    is refilled only after its previous copy has finished.
    """

    def __init__(self, native):
        import cupy

        self._cupy = cupy
        self._native = native
        with native:
            self._stream = cupy.cuda.Stream(non_blocking=True)
        self._pinned = [None, None]
        self._done = [None, None]
        self._turn = 0

    def _buffer(self, slot, like):
        buf = self._pinned[slot]
        if buf is None or buf.nbytes < like.nbytes:
            mem = self._cupy.cuda.alloc_pinned_memory(like.nbytes)
            buf = np.frombuffer(mem, dtype=np.uint8, count=like.nbytes)
            self._pinned[slot] = buf
        return buf[: like.nbytes].view(like.dtype).reshape(like.shape)

    def submit(self, host_batch):
        cupy = self._cupy
        slot, self._turn = self._turn, 1 - self._turn
        if self._done[slot] is not None:
            self._done[slot].synchronize()       # the copy that last read this buffer is finished
        pinned = self._buffer(slot, host_batch)
        pinned[...] = host_batch
        with self._native:
            compute = cupy.cuda.get_current_stream()
            # allocated on the compute stream, so the pool recycles it in compute order ...
            out = cupy.empty(host_batch.shape, dtype=host_batch.dtype)
            # ... and the copy starts only after the work already queued there (which may
            # still read memory the pool just handed us)
            self._stream.wait_event(compute.record())
            out.set(pinned, stream=self._stream)
            done = self._stream.record()
        self._done[slot] = done
        return out, done

    def collect(self, handle):
        out, done = handle
        with self._native:
            self._cupy.cuda.get_current_stream().wait_event(done)
        return out


def _index(rest: str) -> int:
    try:
        i = int(rest)
    except ValueError:
        raise DeviceError(f"'gpu:{rest}' is not a device: write 'gpu' or 'gpu:N' with N a GPU index") from None
    if i < 0:
        raise DeviceError(f"'gpu:{rest}' is not a device: GPU indices start at 0")
    return i


BACKEND = CupyBackend()
