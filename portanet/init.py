"""Weight initialisers, drawn from the device's generator so parameters are born on the device.

Each takes ``(shape, *, device=None, dtype="float32", rng=None)`` and returns an array.
For a 2-D weight the fans are fan_in = shape[0] and fan_out = shape[1], as in Dense's (in_features, out_features)
layout. A weight of 3 or more axes is a convolution kernel in PyTorch's (out_channels, in_channels, *kernel)
layout (Conv2d's): fan_in = in_channels * receptive field and fan_out = out_channels * receptive field (the
receptive field being the kernel's size, kh * kw), as PyTorch and Keras count them.

glorot (Xavier): Var = 2 / (fan_in + fan_out)  — for sigmoid/tanh; Dense's default.
he (Kaiming):    Var = 2 / fan_in             — for ReLU families (pass init="he_normal").
lecun:           Var = 1 / fan_in             — for SELU-like activations.
"""
from __future__ import annotations

import math

from . import devices


def _fans(shape):
    if len(shape) < 2:
        n = shape[0] if shape else 1
        return n, n
    if len(shape) == 2:
        return shape[0], shape[1]
    field = 1
    for s in shape[2:]:
        field *= s
    return shape[1] * field, shape[0] * field


def _setup(shape, device, dtype, rng):
    dev = devices.device(device)
    return tuple(int(s) for s in shape), dev.dtype(dtype), (rng if rng is not None else dev.rng()), dev


def zeros(shape, *, device=None, dtype="float32", rng=None):
    shape, dt, _, dev = _setup(shape, device, dtype, rng=0)
    return dev.xp.zeros(shape, dtype=dt, device=dev.native)


def ones(shape, *, device=None, dtype="float32", rng=None):
    return constant(shape, 1.0, device=device, dtype=dtype)


def constant(shape, value, *, device=None, dtype="float32", rng=None):
    shape, dt, _, dev = _setup(shape, device, dtype, rng=0)
    return dev.xp.full(shape, float(value), dtype=dt, device=dev.native)


def normal(shape, mean=0.0, std=0.05, *, device=None, dtype="float32", rng=None):
    shape, dt, gen, _ = _setup(shape, device, dtype, rng)
    return gen.normal(shape, dt, mean=mean, std=std)


def uniform(shape, low=-0.05, high=0.05, *, device=None, dtype="float32", rng=None):
    shape, dt, gen, _ = _setup(shape, device, dtype, rng)
    return gen.uniform(shape, dt, low=low, high=high)


def glorot_uniform(shape, *, device=None, dtype="float32", rng=None):
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(shape, -limit, limit, device=device, dtype=dtype, rng=rng)


def glorot_normal(shape, *, device=None, dtype="float32", rng=None):
    fan_in, fan_out = _fans(shape)
    return normal(shape, 0.0, math.sqrt(2.0 / (fan_in + fan_out)), device=device, dtype=dtype, rng=rng)


def he_uniform(shape, *, device=None, dtype="float32", rng=None):
    fan_in, _ = _fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return uniform(shape, -limit, limit, device=device, dtype=dtype, rng=rng)


def he_normal(shape, *, device=None, dtype="float32", rng=None):
    fan_in, _ = _fans(shape)
    return normal(shape, 0.0, math.sqrt(2.0 / fan_in), device=device, dtype=dtype, rng=rng)


def lecun_normal(shape, *, device=None, dtype="float32", rng=None):
    fan_in, _ = _fans(shape)
    return normal(shape, 0.0, math.sqrt(1.0 / fan_in), device=device, dtype=dtype, rng=rng)


def lecun_uniform(shape, *, device=None, dtype="float32", rng=None):
    fan_in, _ = _fans(shape)
    limit = math.sqrt(3.0 / fan_in)
    return uniform(shape, -limit, limit, device=device, dtype=dtype, rng=rng)


def torch_default(shape, *, device=None, dtype="float32", rng=None):
    """PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    fan_in, _ = _fans(shape)
    limit = 1.0 / math.sqrt(fan_in)
    return uniform(shape, -limit, limit, device=device, dtype=dtype, rng=rng)


# Aliases under the names the literature uses.
xavier_uniform, xavier_normal = glorot_uniform, glorot_normal
kaiming_uniform, kaiming_normal = he_uniform, he_normal

_NAMED = {name: fn for name, fn in dict(globals()).items()
          if callable(fn) and not name.startswith("_") and name not in ("annotations", "devices", "math")}


def get(init):
    """A name ("he_normal", "xavier_uniform", ...) or a callable -> the initialiser."""
    if callable(init):
        return init
    try:
        return _NAMED[init]
    except KeyError:
        raise ValueError(f"unknown initialiser '{init}': use one of {', '.join(sorted(_NAMED))}, "
                         "or a callable(shape, *, device, dtype, rng)") from None
