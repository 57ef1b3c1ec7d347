"""NumPy on the host CPU, through array-api-compat's NumPy namespace."""
from __future__ import annotations

import numpy as np

from . import kernels
from .base import Backend, DeviceError, NumpyHostGenerator


class NumpyBackend(Backend):
    name = "numpy"

    def _load_namespace(self):
        import array_api_compat.numpy as xp

        return xp

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
