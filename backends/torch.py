"""PyTorch tensors through array-api-compat: proves portanet is not NumPy in disguise.

Only torch's tensors and generators are used; autograd is never involved.
"""
from __future__ import annotations

import numpy as np

from .base import (Backend, CaptureUnsupported, DeviceError, DeviceUnavailableError, Generator, StepGraph,
                   namespace_with)


class TorchGenerator(Generator):
    backend_name = "torch"

    def __init__(self, seed, native):
        import torch

        self._torch = torch
        self._device = native
        self._gen = torch.Generator(device=native)
        self._gen.manual_seed(int(seed) % (2**63))

    # pickles and deep copies (a model with Dropout) carry the device and the stream's position
    def __getstate__(self):
        return {"device": str(self._device), "state": self.get_state()}

    def __setstate__(self, saved):
        import torch

        self._torch, self._device = torch, torch.device(saved["device"])
        self._gen = torch.Generator(device=self._device)
        self.set_state(saved["state"])

    def normal(self, shape, dtype, mean=0.0, std=1.0):
        a = self._torch.randn(shape, generator=self._gen, dtype=dtype, device=self._device)
        if std != 1.0:
            a.mul_(std)
        if mean != 0.0:
            a.add_(mean)
        return a

    def uniform(self, shape, dtype, low=0.0, high=1.0):
        a = self._torch.rand(shape, generator=self._gen, dtype=dtype, device=self._device)
        if (low, high) != (0.0, 1.0):
            a.mul_(high - low).add_(low)
        return a

    def bernoulli(self, shape, p, dtype):
        u = self._torch.rand(shape, generator=self._gen, dtype=dtype, device=self._device)
        return (u < p).to(dtype)

    def permutation(self, n):
        return self._torch.randperm(n, generator=self._gen, device=self._device)

    def get_state(self):
        return self._gen.get_state().cpu().numpy().copy()

    def set_state(self, state):
        self._gen.set_state(self._torch.from_numpy(np.asarray(state, dtype=np.uint8).copy()))


# array-api-compat's torch functions that turn a Python scalar argument (by position) into a tensor with
# torch.asarray(value, device=the other argument's device): on a CUDA tensor that is a host-to-device copy and a stream
# synchronisation (PyTorch copies pageable memory with memcpy_and_sync), which a CUDA graph capture refuses
# (pytorch/pytorch#91302, #168991) and which stalls every eager step: ReLU is maximum(x, 0.0).
SCALAR_ARGS = {name: (0, 1) for name in ("atan2", "hypot", "logaddexp", "logical_and", "logical_or", "logical_xor",
                                         "maximum", "minimum", "nextafter")}
SCALAR_ARGS.update({name: (0,) for name in ("copysign", "equal", "greater", "greater_equal", "less", "less_equal",
                                            "not_equal")})


def _filled_scalars(fn, positions, compat, torch):
    """``fn`` with its Python scalars made on the other argument's device by torch.full (a fill kernel, recordable)
    in the dtype array-api-compat would give them, so the result is compat's own."""
    scalars = (bool, int, float)

    def wrapped(x1, x2, /, **kwargs):
        args = [x1, x2]
        for i in positions:
            other = args[1 - i]
            if isinstance(args[i], scalars) and isinstance(other, torch.Tensor):
                args[i] = torch.full((), args[i], dtype=compat.result_type(args[i], other), device=other.device)
        return fn(*args, **kwargs)

    wrapped.__name__, wrapped.__doc__, wrapped.__wrapped__ = fn.__name__, fn.__doc__, fn
    return wrapped


class TorchBackend(Backend):
    name = "torch"

    def _load_namespace(self):
        try:
            import array_api_compat.torch as compat
            import torch
        except ImportError as e:
            raise DeviceUnavailableError(
                "device='torch:...' needs PyTorch: pip install torch"
            ) from e
        return namespace_with(compat, {name: _filled_scalars(getattr(compat, name), positions, compat, torch)
                                       for name, positions in SCALAR_ARGS.items()})

    def unavailable(self):
        try:
            self.xp
        except DeviceUnavailableError as e:
            return str(e)
        return None

    def devices(self):
        if self.unavailable():
            return []
        import torch

        found = [torch.device("cpu")]
        if torch.cuda.is_available():
            found += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        return found

    def parse(self, rest):
        import torch

        if self.unavailable():
            raise DeviceUnavailableError(self.unavailable())
        rest = rest or "cpu"
        try:
            dev = torch.device(rest)
        except RuntimeError as e:
            raise DeviceError(f"torch does not know the device '{rest}': use 'torch:cpu' or 'torch:cuda:N'") from e
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise DeviceUnavailableError(
                    f"device='torch:{rest}' needs a CUDA build of PyTorch and a CUDA device; "
                    "torch.cuda.is_available() is False here: use device='torch:cpu'"
                )
            dev = torch.device("cuda", dev.index or 0)
            if dev.index >= torch.cuda.device_count():
                raise DeviceError(
                    f"device='torch:{rest}' is out of range: this machine has "
                    f"{torch.cuda.device_count()} CUDA device(s), cuda:0..cuda:{torch.cuda.device_count() - 1}"
                )
        elif dev.type != "cpu":
            raise DeviceError(f"portanet's torch backend has no '{rest}' device: use 'torch:cpu' or 'torch:cuda:N'")
        return dev

    def label(self, native):
        return f"torch:{native.type}" + (f":{native.index}" if native.type == "cuda" else "")

    def array_types(self):
        import torch

        return (torch.Tensor,)

    def asarray(self, host, native, dtype=None, copy=None):
        import torch

        if isinstance(host, torch.Tensor):
            t = host
        else:
            h = np.asarray(host)
            # from_numpy shares memory; a copy keeps in-place updates away from the user's array
            t = torch.from_numpy(h.copy() if copy or not h.flags.writeable else h)
            copy = False
        t = t.to(device=native, dtype=dtype)
        return t.clone() if copy else t

    def to_host(self, a):
        return a.detach().cpu().numpy()

    def rng(self, seed, native):
        return TorchGenerator(seed, native)

    def in_host_memory(self, native):
        return native.type == "cpu"

    def synchronize(self, native):
        if native.type == "cuda":
            import torch

            torch.cuda.synchronize(native)

    def step_graph(self, native):
        return TorchStepGraph(native) if native.type == "cuda" else None

    def free_memory(self, native):
        if native.type == "cuda":
            import torch

            return torch.cuda.mem_get_info(native)[0]
        return None


class TorchStepGraph(StepGraph):
    """A training step in a torch.cuda.CUDAGraph, as PyTorch's whole-network capture recipe does it: warm-up on a
    side stream, capture through torch.cuda.graph (its private memory pool keeps every address the graph uses), and
    replay on the current stream. The graph's pool is shared by the next capture (a re-capture after the learning
    rate changed)."""

    _shared: dict = {}          # device -> (side stream, memory pool) every step graph on that device shares

    def __init__(self, native):
        import torch

        self._torch, self._native = torch, native
        # one side stream and one graph memory pool per device, whatever the number of fits (PyTorch allows graphs
        # to share a pool when they replay one after another, as fit's do)
        shared = self._shared.get(str(native))
        if shared is None:
            shared = self._shared[str(native)] = (torch.cuda.Stream(device=native), torch.cuda.graph_pool_handle())
        self._side, self._pool = shared
        self._graph = None

    def warmup(self, fn):
        torch = self._torch
        current = torch.cuda.current_stream(self._native)
        self._side.wait_stream(current)
        with torch.cuda.stream(self._side):
            out = fn()
        current.wait_stream(self._side)
        return out

    def capture(self, fn, generators=()):
        torch = self._torch
        graph = torch.cuda.CUDAGraph()
        for gen in generators:
            # a generator other than the device's default must be registered, so each replay advances its offset
            if not hasattr(graph, "register_generator_state"):
                raise CaptureUnsupported(f"this PyTorch ({torch.__version__}) cannot register a generator of its own "
                                         "with a CUDA graph (CUDAGraph.register_generator_state), so Dropout's masks "
                                         "would repeat on every replay")
            graph.register_generator_state(gen._gen)
        self._side.wait_stream(torch.cuda.current_stream(self._native))
        with torch.cuda.graph(graph, pool=self._pool, stream=self._side):
            out = fn()
        self._graph = graph
        return out

    def replay(self):
        self._graph.replay()


BACKEND = TorchBackend()
