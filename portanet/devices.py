"""Devices: one object that says where arrays live and which library computes on them.

``device("cpu")`` -> NumPy, ``device("gpu")`` / ``"gpu:1"`` / ``"cuda"`` -> CuPy,
``device("auto")`` -> the GPU when one is usable, else the CPU; backend-qualified specs
(``"torch:cpu"``, ``"strict:device1"``) reach the other backends.
"""
from __future__ import annotations

import os

from . import backends
from . import random as _random
from ._words import a as _a
from .errors import DeviceError, DeviceMismatchError, DeviceUnavailableError

VALID_SPECS = ("cpu", "gpu", "gpu:N", "cuda", "cuda:N", "auto", "numpy", "cupy", "cupy:N",
               "torch", "torch:cpu", "torch:cuda:N", "strict", "strict:CPU_DEVICE", "strict:device1")
_FLOAT_NAMES = ("float32", "float64")


class Device:
    """Where arrays live. ``xp`` is the Array API namespace that computes there.

    asarray(host, dtype=None, copy=None)  host array (or another library's array here) -> array on this device
    from_dlpack(a)                        another library's array on this same device, sharing its memory, or None
    to_host(a)                            array on this device -> NumPy (a NumPy array as it is)
    rng(seed=None)                        a seeded Generator drawing on this device
    kernel(name)                          a fused kernel the backend offers here, or None (backends/kernels.py)
    synchronize()                         wait for queued work (no-op on CPU)
    """

    __slots__ = ("backend", "native", "label", "xp", "_types", "_floats", "_key", "_dlpack")

    def __init__(self, backend, native):
        self.backend = backend
        self.native = native
        self.label = backend.label(native)
        self.xp = backend.xp
        self._types = backend.array_types()
        # both the namespace's dtype objects and what arrays report (np.float32 vs dtype('float32'))
        self._floats = {}
        for n in _FLOAT_NAMES:
            dt = backend.dtype(n)
            self._floats[dt] = n
            self._floats[backend.xp.empty((0,), dtype=dt, device=native).dtype] = n
        self._key = (backend.name, self.label)
        self._dlpack = _dlpack_device(backend, native)
        backend.prepare(native)

    # -- identity -----------------------------------------------------------------------
    def __str__(self):
        return self.label

    def __repr__(self):
        return f"Device('{self.label}')"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = device(other)
            except (DeviceError, RuntimeError):
                return False
        return isinstance(other, Device) and other._key == self._key

    def __hash__(self):
        return hash(self._key)

    def __reduce__(self):
        # a Device pickles (for multiprocessing, copy.deepcopy) as its spec
        return (device, (self.label,))

    @property
    def is_gpu(self) -> bool:
        return self.backend.is_gpu or self.label.startswith("torch:cuda")

    # -- arrays -------------------------------------------------------------------------
    def asarray(self, host, dtype=None, copy=None):
        """``host`` (a NumPy array, anything NumPy takes, or an array of another library) as an array here.
        Another library's array already on this device (a torch CPU tensor for "cpu", a torch CUDA tensor for
        "gpu:0") is taken through DLPack without a copy unless ``dtype`` or ``copy`` asks for one. A torch tensor
        that requires grad is taken as its values (``t.detach()``, the same memory): portanet keeps no autograd
        graph, and data is what asarray is for."""
        if getattr(host, "requires_grad", False):
            host = host.detach()
        if (not isinstance(host, self._types) and self._dlpack is not None and hasattr(host, "__dlpack__")
                and not _is_host_array(host)):
            shared = self.from_dlpack(host)
            if shared is not None:
                host = shared
        return self.backend.asarray(host, self.native, self.dtype(dtype) if dtype is not None else None, copy)

    def from_dlpack(self, a):
        """``a``, an array of another library on this same physical device, as an array of this device's library
        sharing its memory (DLPack: no copy); None where that cannot be: no DLPack, another device, a read-only
        array (the model may update it in place), a library that refuses (a torch tensor that requires grad),
        or array-api-strict's simulated devices."""
        if self._dlpack is None or not hasattr(a, "__dlpack_device__") or is_simulated(a):
            return None
        if getattr(getattr(a, "flags", None), "writeable", True) is False:
            return None
        try:
            kind, index = a.__dlpack_device__()
            if (int(kind), int(index)) != self._dlpack:
                return None
            shared = self.xp.from_dlpack(a)
        except (BufferError, RuntimeError, TypeError, ValueError, AttributeError):
            return None
        return shared if self.holds(shared) else None

    def to_host(self, a):
        """``a``, an array on this device (or on another device of its library), as a NumPy array. The mirror of
        ``asarray``, which takes host arrays and other libraries' arrays: a NumPy array is on the host already and
        comes back as it is, another library's array is read through its own device (``pn.device_of(a)``), and
        other host data (a NumPy scalar, a list) through ``np.asarray``, as on "cpu"."""
        if isinstance(a, self._types):
            return self.backend.to_host(a)
        if _is_host_array(a):
            return a
        try:
            owner = device_of(a).backend
        except DeviceMismatchError:          # no library's array: whatever NumPy makes of it
            owner = backends.get("numpy")
        return owner.to_host(a)

    def rng(self, seed=None):
        """A generator on this device: seeded with ``seed``, or the device's default one."""
        if seed is None:
            return _random.default_generator(self)
        return self.backend.rng(seed, self.native)

    def kernel(self, name):
        """The backend's fused kernel ``name`` for arrays here, or None: callers keep the standard code as the
        fallback and the reference (backends/kernels.py)."""
        return self.backend.kernel(name)

    def synchronize(self):
        self.backend.synchronize(self.native)

    def free_memory(self):
        return self.backend.free_memory(self.native)

    def dtype(self, spec):
        """'float32' | 'float64' | a dtype of this backend -> this backend's dtype object."""
        if spec is None:
            spec = "float32"
        if isinstance(spec, str):
            if spec not in _FLOAT_NAMES:
                raise TypeError(f"dtype must be 'float32' or 'float64', got '{spec}'")
            return self.backend.dtype(spec)
        if spec in self._floats:
            return spec
        name = getattr(spec, "__name__", None) or str(spec).rsplit(".", 1)[-1]
        if name in _FLOAT_NAMES:
            return self.backend.dtype(name)
        raise TypeError(f"dtype must be float32 or float64, got {spec}")

    def dtype_name(self, dt) -> str:
        return self._floats.get(dt) or str(dt).rsplit(".", 1)[-1]

    def is_float(self, dt) -> bool:
        return dt in self._floats

    # -- checks -------------------------------------------------------------------------
    def holds(self, a) -> bool:
        """True when ``a`` is an array of this device's library on this device (cheap)."""
        return isinstance(a, self._types) and self.backend.same_device(a, self.native)

    def check(self, a, where: str, fix: str = "") -> None:
        if not self.holds(a):
            if not fix and getattr(a, "requires_grad", False) and self.from_dlpack(a.detach()) is not None:
                # torch will not share a tensor of its graph through DLPack; its detached values it shares
                fix = "it requires grad, and portanet keeps no autograd graph: pass x.detach() (the same memory)"
            raise DeviceMismatchError(f"{where} is on {self.label} but got {describe(a)}: "
                                      + (fix or f"move it with {self!r}.asarray(x), or pass device='{self.label}' "
                                         "to the DataLoader"))


def _dlpack_device(backend, native):
    """(DLPack device type, index) of this device's arrays, or None where portanet does not exchange through
    DLPack: array-api-strict's devices are simulated, and its device1 must refuse other arrays."""
    if backend.name == "strict":
        return None
    try:
        kind, index = backend.xp.empty((0,), device=native).__dlpack_device__()
    except (AttributeError, TypeError, RuntimeError, BufferError):
        return None
    return int(kind), int(index)


def is_simulated(a) -> bool:
    """array-api-strict's arrays say "CPU" to DLPack whatever their simulated device: they never take that way."""
    strict = backends.get("strict")
    return strict.unavailable() is None and isinstance(a, strict.array_types())


def _is_host_array(a) -> bool:
    """NumPy arrays take each backend's own path (which copies read-only ones, and shares the rest)."""
    return isinstance(a, backends.get("numpy").array_types())


def describe(a) -> str:
    """'a numpy.ndarray on cpu', 'a torch.Tensor on torch:cpu', 'a list' ..."""
    t = type(a)
    name = f"{t.__module__.split('.')[0]}.{t.__name__}"
    for bname in ("numpy", "cupy", "torch", "strict"):
        try:
            b = backends.get(bname)
            if b.unavailable() is None and isinstance(a, b.array_types()):
                return f"{_a(name)} on {b.label(b.device_of(a))}"
        except Exception:
            continue
    return _a(name)


def device_of(a) -> Device:
    """The Device an array lives on (any backend's array)."""
    for bname in backends.NAMES:
        b = backends.get(bname)
        if b.unavailable() is None and isinstance(a, b.array_types()):
            return device(b.label(b.device_of(a)))
    raise DeviceMismatchError(f"expected an array of numpy, cupy, torch or array-api-strict, got {describe(a)}")


def kernel_for(a, name):
    """The fused kernel ``name`` that a's library offers (Device.kernel), or None; for code that holds arrays,
    not a Device (losses)."""
    return _backend_for(a).kernel(name)


def namespace_of(a):
    """The namespace a's Device computes with (Device.xp): for code that holds arrays, not a Device (losses).
    For NumPy arrays it is faster than array_api_compat.array_namespace(a)."""
    return _backend_for(a).xp


def _backend_for(a):
    """The backend that owns a's array type, looked up once per type: every training step asks."""
    b = _backend_of_type.get(type(a))
    if b is None:
        b = _backend_of_type[type(a)] = device_of(a).backend
    return b


_backend_of_type: dict = {}
_cache: dict[str, Device] = {}
_default_spec: str | None = None


def set_default_device(spec) -> Device:
    """Set the device used by objects created without ``device=``. Returns it."""
    global _default_spec
    d = device(spec)
    _default_spec = d
    return d


def default_device() -> Device:
    if _default_spec is not None:
        return _default_spec
    spec = os.environ.get("PORTANET_DEVICE")
    if not spec:
        return device("cpu")
    try:
        return device(spec)
    except (DeviceError, DeviceUnavailableError) as e:
        # the user may not know the variable is set: name it, and the way out
        raise type(e)(f"PORTANET_DEVICE={spec!r} in the environment sets the default device, and {e}; change or "
                      "unset PORTANET_DEVICE, or pass device= explicitly") from e


def device(spec=None) -> Device:
    """Resolve a device spec (or a Device, or None for the default) into a Device."""
    if spec is None:
        return default_device()
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'gpu', or a portanet Device; got {spec!r}")
    key = spec.strip().lower()
    if key in _cache:
        return _cache[key]
    d = _resolve(spec.strip())
    _cache[key] = d
    return d


def _resolve(spec: str) -> Device:
    low = spec.lower()
    if low == "auto":
        gpu = backends.get("cupy")
        return _make("cupy", "0") if gpu.unavailable() is None else _make("numpy", None)
    if low == "cpu":
        return _make("numpy", None)
    for alias in ("gpu", "cuda", "cupy"):
        if low == alias or low.startswith(alias + ":"):
            index = low[len(alias) + 1:] if ":" in low else None
            if index is not None and not index.isdigit():     # the spec's form, before asking for CuPy and a GPU
                raise DeviceError(f"unknown device '{spec}': the GPU index after '{alias}:' must be a whole number "
                                  f"('{alias}:0', '{alias}:1'); use one of {', '.join(repr(s) for s in VALID_SPECS)}")
            return _make("cupy", index)
    name, _, rest = spec.partition(":")
    if name.lower() in ("numpy", "torch", "strict"):
        return _make(name.lower(), rest or None)
    raise DeviceError(f"unknown device '{spec}': use one of {', '.join(repr(s) for s in VALID_SPECS)}")


def _make(backend_name, rest) -> Device:
    b = backends.get(backend_name)
    return Device(b, b.parse(rest))
