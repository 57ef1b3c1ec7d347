"""Elementwise activations. Each keeps the one array its backward needs."""
from __future__ import annotations

import math

from .. import _special
from ..backends.quiet import quiet_overflow
from .._numbers import is_int
from ..module import Module, Parameter, check_float


class Activation(Module):
    """Base: ``forward`` stores what ``_grad`` needs in ``_saved``; ``backward`` checks that forward ran first and
    that dy is shaped like its output (``_output``), then hands both to ``_grad``."""

    def __init__(self, device=None):
        super().__init__(device)
        self._saved = None

    def backward(self, dy):
        saved = self._saved
        self._needs_forward(saved)
        return self._grad(self._checked_dy(dy, self._output(saved)), saved)

    def _output(self, saved):
        """The last output's (shape, dtype), from what forward saved: here the output itself (the step plan's
        fused ReLU saves its output there too)."""
        return saved.shape, saved.dtype


class Identity(Activation):
    """y = x."""

    def forward(self, x):
        self._saved = (x.shape, x.dtype)
        return x

    def _output(self, saved):
        return saved

    def _grad(self, dy, _):
        return dy


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x)), computed from exp(-|x|) so it never overflows. dy/dx = y (1 - y)."""

    def forward(self, x):
        xp = self.xp
        e = xp.exp(-xp.abs(x))
        r = 1.0 / (1.0 + e)
        y = xp.where(x >= 0, r, e * r)
        self._saved = y
        return y

    def _grad(self, dy, y):
        return dy * y * (1.0 - y)


class Tanh(Activation):
    """y = tanh(x). dy/dx = 1 - y^2."""

    def forward(self, x):
        y = self.xp.tanh(x)
        self._saved = y
        return y

    def _grad(self, dy, y):
        return dy * (1.0 - y * y)


class ReLU(Activation):
    """y = max(x, 0). dy/dx = 1 where x > 0, else 0."""

    def forward(self, x):
        y = self.xp.maximum(x, 0.0)
        self._saved = y
        return y

    def _grad(self, dy, y):
        # multiplying by the 0/1 mask is ~3.5x faster than where(y > 0, dy, 0.0) on NumPy, and standard
        return dy * self.xp.astype(y > 0, dy.dtype)


class LeakyReLU(Activation):
    """y = x for x > 0, else negative_slope * x."""

    def __init__(self, negative_slope=0.01, device=None):
        super().__init__(device)
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        positive = x > 0
        self._saved = (positive, x.dtype)
        return self.xp.where(positive, x, self.negative_slope * x)

    def _output(self, saved):
        positive, dtype = saved
        return positive.shape, dtype

    def _grad(self, dy, saved):
        positive, _ = saved
        return self.xp.where(positive, dy, self.negative_slope * dy)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class ELU(Activation):
    """y = x for x > 0, else alpha (exp(x) - 1). dy/dx = 1, or y + alpha."""

    def __init__(self, alpha=1.0, device=None):
        super().__init__(device)
        self.alpha = float(alpha)

    def forward(self, x):
        xp = self.xp
        y = xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0.0)))
        self._saved = (x > 0, y)
        return y

    def _output(self, saved):
        return saved[1].shape, saved[1].dtype

    def _grad(self, dy, saved):
        positive, y = saved
        return self.xp.where(positive, dy, dy * (y + self.alpha))

    def extra_repr(self):
        return f"alpha={self.alpha}"


class GELU(Activation):
    """y = x * Phi(x) (Phi the normal CDF); approximate="tanh" uses
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as PyTorch does."""

    _K = math.sqrt(2.0 / math.pi)

    def __init__(self, approximate="none", device=None):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")
        super().__init__(device)
        self.approximate = approximate

    @quiet_overflow      # x^3 overflows for huge |x|: tanh(+-inf) = +-1, the limit
    def forward(self, x):
        xp = self.xp
        if self.approximate == "tanh":
            t = xp.tanh(self._K * (x + 0.044715 * x * x * x))
            self._saved = (x, t)
            return 0.5 * x * (1.0 + t)
        cdf = 0.5 * (1.0 + _special.erf(xp, x * (1.0 / math.sqrt(2.0))))
        self._saved = (x, cdf)
        return x * cdf

    def _output(self, saved):
        return saved[0].shape, saved[0].dtype

    @quiet_overflow      # x * x overflows for huge |x|: exp(-inf) = 0, the limit
    def _grad(self, dy, saved):
        xp = self.xp
        x, c = saved
        if self.approximate == "tanh":
            # |x| clipped where tanh is +-1 already, so that 1 - c^2 = 0 meets a finite x^2 (float32 overflows it
            # from 1.8e19, and 0 * inf is NaN; the limit is 0)
            xc = xp.clip(x, -1e9, 1e9)
            dt = (1.0 - c * c) * self._K * (1.0 + 3 * 0.044715 * xc * xc)
            return dy * (0.5 * (1.0 + c) + 0.5 * x * dt)
        pdf = xp.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
        return dy * (c + x * pdf)

    def extra_repr(self):
        return "" if self.approximate == "none" else "approximate='tanh'"


class PReLU(Activation):
    """y = x for x > 0, else a * x, with a learned: one slope (num_parameters=1) or one per
    feature (num_parameters=features).   x: (batch, features) or any shape when num_parameters=1."""

    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        if not is_int(num_parameters) or num_parameters <= 0:
            raise ValueError(f"PReLU num_parameters must be a positive int, got {num_parameters!r}")
        num_parameters = int(num_parameters)
        super().__init__(device)
        self.num_parameters = num_parameters
        dt = self._device.dtype(dtype)
        self.weight = Parameter(self.xp.full((num_parameters,), float(init), dtype=dt, device=self._device.native))

    def forward(self, x):
        a = self.weight.data
        if x.dtype != a.dtype:
            check_float(self, x, a.dtype)
        if self.num_parameters > 1 and (x.ndim < 2 or x.shape[1] != self.num_parameters):
            from ..errors import ShapeError

            one = x.ndim == 1 and x.shape[0] == self.num_parameters
            raise ShapeError(f"{self!r} got input of shape {tuple(x.shape)}; it expects "
                             f"(batch, {self.num_parameters}, ...): one slope per feature on axis 1"
                             + ("; it is one sample: add a batch axis (x[None, :])" if one else ""))
        a = self._broadcast(a, x.ndim)
        positive = x > 0
        self._saved = (x, positive)
        return self.xp.where(positive, x, a * x)

    def _broadcast(self, a, ndim):
        if self.num_parameters == 1:
            return a[0]
        return self.xp.reshape(a, (1, self.num_parameters) + (1,) * (ndim - 2))

    def _output(self, saved):
        return saved[0].shape, saved[0].dtype

    def _grad(self, dy, saved):
        xp = self.xp
        x, positive = saved
        neg = xp.where(positive, 0.0, x * dy)
        if self.num_parameters == 1:
            ga = xp.reshape(xp.sum(neg), (1,))
        else:
            axes = (0,) + tuple(range(2, x.ndim))
            ga = xp.sum(neg, axis=axes)
        self.weight.accumulate(ga)
        return xp.where(positive, dy, self._broadcast(self.weight.data, x.ndim) * dy)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"
