"""CuPy on CUDA GPUs. Imports cleanly, and reports why, on machines without one."""
from __future__ import annotations

import numpy as np

from . import kernels as host_kernels
from .base import Backend, CaptureUnsupported, DeviceError, DeviceUnavailableError, StepGraph, namespace_with
from .counter_rng import PhiloxGenerator

INSTALL_HINT = "pip install 'portanet[gpu]' (CUDA 12) or 'portanet[gpu-cuda13]' (CUDA 13)"


class CupyGenerator(PhiloxGenerator):
    """Philox4x32-10 on the GPU (backends/counter_rng.py): state (seed, offset), so get_state/set_state continue
    the very stream, and the draws have the bits of the NumPy reference (normals to float tolerance). Each draw
    is one kernel launch on ``native``."""

    def __init__(self, seed, native):
        from .cuda_kernels import PhiloxEngine

        super().__init__(seed, engine=PhiloxEngine(native))


class CupyBackend(Backend):
    name = "cupy"
    is_gpu = True

    def _load_namespace(self):
        reason = self.unavailable()
        if reason:
            raise DeviceUnavailableError(reason)
        import array_api_compat.cupy as compat

        from . import cublas

        # array-api-compat's namespace, with a matmul that sends 2-D float products straight to cuBLAS (cupy.matmul
        # measured ~140 us of CPU a call; backends/cublas.py aims at PyTorch's ~21) and anything else to compat's own.
        return namespace_with(compat, {"matmul": cublas.make_matmul(compat.matmul)})

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
            return (f"device='gpu' needs CuPy and a CUDA device; CuPy is installed but reports: {e}; "
                    f"{_driver_fix(cupy)}")
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

    _kernels = None

    def kernel(self, name):
        """The CUDA kernel ``name`` (cuda_kernels.TABLE: those of backends/kernels.py's names that have a CUDA twin),
        or None when kernels are turned off (PORTANET_KERNELS=0, kernels.set_enabled(False))."""
        table = self._kernels
        if table is None:                    # every step asks several times: after the first, two dict lookups
            from .cuda_kernels import TABLE

            table = self._kernels = TABLE
        kernel = table.get(name)
        if kernel is None:
            if name in host_kernels.NAMES:   # NumPy's window kernels have no CUDA twin: the standard code runs
                return None
            raise ValueError(f"no kernel named {name!r}; kernels are {', '.join(table)}")
        return kernel if host_kernels.enabled() else None

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

    def step_graph(self, native):
        return CupyStepGraph(native)


class CupyStepGraph(StepGraph):
    """A training step in a CUDA graph through CuPy's stream capture (Stream.begin_capture / end_capture, relaxed
    mode, so CuPy's memory pool may still call cudaMalloc while recording).

    Memory: every block allocated while recording is held by this object until the graph is replaced, so the
    addresses the recorded kernels read and write stay allocated for every replay, even when the pool's
    ``free_all_blocks()`` runs (CuPy calls it itself before it reports out of memory; users call it to give memory
    back), which would otherwise return a block the recording freed to the driver while the graph still uses it.
    The cost is that a recording's temporaries are not reused within it (PyTorch gives each graph a private pool
    for the same reason). The warm-up and the capture run on a stream of their own that nothing else uses, so a
    held block, once released, goes back to this stream's arena, which only the next warm-up or capture draws
    from, after the last replay has finished (it waits on the current stream first). Replays run on the current
    stream.
    GEMMs: CuPy refuses its own cuBLAS calls during a capture (cupy/cupy#6290); portanet's go through its own handle
    (backends/cublas.py), whose stream and workspace are set during the warm-up on this same stream, so nothing is
    allocated inside a recorded GEMM.
    Random numbers: the Philox generator's counter lives on the host (backends/counter_rng.py), so a recorded draw
    would repeat its mask on every replay; a model with Dropout is refused (CaptureUnsupported), and fit's
    capture="auto" trains it eagerly."""

    _streams: dict = {}         # device id -> the recording stream every step graph on that device shares

    def __init__(self, native):
        import cupy

        self._cupy, self._native = cupy, native
        # one recording stream per device, whatever the number of fits: its arena's blocks are reused by every
        # recording, which is safe because replays run one after another on the current stream, and a block a
        # recording keeps (its outputs, a layer's saved activations) stays referenced, so no other takes it
        stream = self._streams.get(native.id)
        if stream is None:
            with native:
                stream = self._streams[native.id] = cupy.cuda.Stream(non_blocking=True)
        self._stream = stream
        self._graph = self._held = None

    def _after_current(self):
        self._stream.wait_event(self._cupy.cuda.get_current_stream().record())

    def warmup(self, fn):
        cupy = self._cupy
        with self._native:
            current = cupy.cuda.get_current_stream()
            self._after_current()
            with self._stream:
                out = fn()
            current.wait_event(self._stream.record())
        return out

    def capture(self, fn, generators=()):
        if generators:
            raise CaptureUnsupported("the model draws random numbers (Dropout) from CuPy's Philox generator, whose "
                                     "counter lives on the host: a recorded draw would repeat its mask on every replay")
        cupy = self._cupy
        with self._native:
            self._after_current()
            self._graph = self._held = None         # the last graph's replays are behind the event just waited on
            allocate, held = cupy.cuda.get_allocator(), []

            def holding(size):
                memory = allocate(size)
                held.append(memory)
                return memory

            with self._stream, cupy.cuda.using_allocator(holding):
                self._stream.begin_capture()
                try:
                    out = fn()
                except BaseException:
                    try:                            # leave the stream usable; the step's own error is the one to see
                        self._stream.end_capture()
                    except Exception:
                        pass
                    raise
                graph = self._stream.end_capture()
        self._graph, self._held = graph, held
        return out

    def replay(self):
        self._graph.launch(stream=self._cupy.cuda.get_current_stream())


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


def _driver_fix(cupy) -> str:
    """The fix for a CUDA runtime error: where there is no driver at all (cudaDriverGetVersion answers 0: CuPy then
    reports an "insufficient" driver all the same), a GPU machine; else a driver for the CUDA CuPy was built for."""
    try:
        driver = cupy.cuda.runtime.driverGetVersion()
    except Exception:
        driver = None
    if driver == 0:
        return (f"this machine has no NVIDIA driver: use device='cpu', or run on a machine with an NVIDIA GPU and a "
                f"driver that supports {_cupy_build(cupy)}")
    return f"use device='cpu', or install a CUDA driver that supports {_cupy_build(cupy)}"


def _cupy_build(cupy) -> str:
    """"CUDA 13.0 (cupy-cuda13x 14.2.0)": the CUDA runtime the installed CuPy was built for, which the driver must
    support, and the wheel it came from (cupy-cuda12x and cupy-cuda13x both install the module ``cupy``)."""
    try:
        version = cupy.cuda.runtime.runtimeGetVersion()         # 13000 for 13.0; needs no driver
        cuda = f"CUDA {version // 1000}.{version % 1000 // 10}"
    except Exception:
        cuda = "the CUDA version CuPy was built for"
    from importlib import metadata

    wheels = metadata.packages_distributions().get("cupy") or []
    found = [f"{w} {metadata.version(w)}" for w in wheels]
    return f"{cuda} ({', '.join(found)})" if found else cuda
