"""NumPy on the host CPU, through array-api-compat's NumPy namespace."""
from __future__ import annotations

import numpy as np

from . import kernels
from .base import Backend, DeviceError, NumpyHostGenerator, namespace_with


class NumpyBackend(Backend):
    name = "numpy"

    def _load_namespace(self):
        import array_api_compat.numpy as compat

        if int(np.__version__.split(".")[0]) < 2:
            return compat
        # NumPy 2's own allocation functions take the standard's arguments (device="cpu" included) and give the
        # same arrays; array-api-compat's wrappers around them only check the device again, at ~1 us a call,
        # and a training step allocates a handful of arrays (gradients, a batch, the loss). Its matmul wrapper
        # only forwards to np.matmul, which follows the standard (~1 us a call, five calls a step). The rest is
        # array-api-compat's namespace as it is.
        own = ("empty", "empty_like", "asarray", "matmul")
        return namespace_with(compat, {name: getattr(np, name) for name in own})

    def devices(self):
        return ["cpu"]

    def parse(self, rest):
        if rest in (None, "", "cpu", "0"):
            return "cpu"
        raise DeviceError(f"numpy has one device, 'cpu'; got 'numpy:{rest}'. Use device='cpu'.")

    def label(self, native):
        return "cpu"

    def array_types(self):
        return (np.ndarray,)

    def same_device(self, a, native):
        return True

    def device_of(self, a):
        return "cpu"

    def asarray(self, host, native, dtype=None, copy=None):
        if copy:
            return np.array(host, dtype=dtype, copy=True)
        return np.asarray(host, dtype=dtype)

    def to_host(self, a):
        return np.asarray(a)

    def rng(self, seed, native):
        return NumpyHostGenerator(seed)

    def kernel(self, name):
        return kernels.get(name)


BACKEND = NumpyBackend()
