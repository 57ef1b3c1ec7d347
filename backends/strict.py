"""array-api-strict: the standard and nothing else, with simulated devices.

Its ``device1`` refuses to mix with CPU arrays, so running the suite there catches every
device bug that would break CuPy, on a machine with no GPU.
"""
from __future__ import annotations

import numpy as np

from .._words import a as _a
from .base import Backend, DeviceError, DeviceUnavailableError, NumpyHostGenerator


class StrictBackend(Backend):
    name = "strict"

    def _load_namespace(self):
        try:
            import array_api_strict
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise DeviceUnavailableError(
                "device='strict' needs array-api-strict: pip install array-api-strict"
            ) from e
        return array_api_strict

    def unavailable(self):
        try:
            self.xp
        except DeviceUnavailableError as e:
            return str(e)
        return None

    def devices(self):
        if self.unavailable():
            return []
        return list(self.xp.__array_namespace_info__().devices())

    def parse(self, rest):
        name = rest or "CPU_DEVICE"
        for d in self.devices():
            if _device_name(d).lower() == name.lower():
                return d
        names = ", ".join(f"'strict:{_device_name(d)}'" for d in self.devices())
        raise DeviceError(f"array-api-strict has no device '{rest}'; it has {names or 'none'}.")

    def label(self, native):
        return f"strict:{_device_name(native)}"

    def array_types(self):
        return (self.xp._array_object.Array,)

    def asarray(self, host, native, dtype=None, copy=None):
        xp = self.xp
        if isinstance(host, xp._array_object.Array):
            a = host if host.device == native else xp.asarray(host, device=native)
            if dtype is not None and a.dtype != dtype:
                a = xp.astype(a, dtype)
            return xp.asarray(a, copy=True) if copy else a
        host = np.asarray(host)
        if host.dtype == np.float16 or host.dtype.kind not in "biuf":
            raise TypeError(f"cannot place {_a(host.dtype)} array on {self.label(native)}: array-api-strict takes "
                            "bool, int, uint, float32 and float64 arrays (the Array API standard's real dtypes); "
                            "convert it first, x.astype('float32') (or 'float64' for a float64 model)")
        return xp.asarray(host, device=native, dtype=dtype, copy=copy)

    def to_host(self, a):
        xp = self.xp
        if a.device != xp.Device("CPU_DEVICE"):
            a = a.to_device(xp.Device("CPU_DEVICE"))
        return np.asarray(a)

    def rng(self, seed, native):
        return NumpyHostGenerator(seed, place=_Upload(native))


class _Upload:
    """Puts a host draw on a strict device (a class, not a lambda, so generators pickle)."""

    def __init__(self, native):
        self.native = native

    def __call__(self, host):
        return BACKEND.xp.asarray(host, device=self.native)


def _device_name(d) -> str:
    # array_api_strict.Device('device1') -> 'device1'
    return getattr(d, "_device", None) or str(d).split("'")[1]


BACKEND = StrictBackend()
