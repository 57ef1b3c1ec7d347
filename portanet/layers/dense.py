"""Affine layers."""
from __future__ import annotations

from .. import init as initializers
from .._numbers import is_int
from ..module import Module, Parameter, check_features, check_float, check_gradient


def _positive(name, value, owner):
    """A positive count (any integer but bool); returns it as Python's int."""
    if not is_int(value) or value <= 0:
        raise ValueError(f"{owner} needs {name} to be a positive int, got {value!r}")
    return int(value)


class Dense(Module):
    """y = x @ W + b.   x: (batch, in_features) -> y: (batch, out_features).

    weight: (in_features, out_features), drawn by ``init`` (default "glorot_uniform", i.e. Xavier;
    pass init="he_normal" for deep ReLU nets). bias: (out_features,), zeros. ``seed`` draws the weights from
    their own generator; without it they come from the device's default one (see portanet.seed).
    """

    can_skip_input_grad = True

    def __init__(self, in_features, out_features, bias=True, init=None, device=None, dtype=None, seed=None):
        in_features = _positive("in_features", in_features, "Dense")
        out_features = _positive("out_features", out_features, "Dense")
        super().__init__(device)
        self.in_features, self.out_features = in_features, out_features
        dt = self._device.dtype(dtype)
        draw = initializers.get(init or "glorot_uniform")
        rng = None if seed is None else self._device.rng(seed)
        self.weight = Parameter(draw((in_features, out_features), device=self._device, dtype=dt, rng=rng))
        self.bias = Parameter(initializers.zeros((out_features,), device=self._device, dtype=dt)) if bias else None
        self._x = None

    def forward(self, x):
        y = self.product(x)
        if self.bias is not None:
            y += self.bias.data           # y is this layer's own fresh array: add in place
        return y

    def product(self, x):
        """Check x, keep it for backward, and return x @ W: this layer's own fresh array, before the bias."""
        self.check_input(x)
        self._x = x
        return self.xp.matmul(x, self.weight.data)

    def check_input(self, x):
        """x must be (batch, in_features) in the weights' dtype (cheap when it is)."""
        w = self.weight.data
        if x.ndim != 2 or x.shape[1] != self.in_features or x.shape[0] == 0:
            check_features(self, x, self.in_features)
        if x.dtype != w.dtype:
            check_float(self, x, w.dtype)

    def backward(self, dy, input_grad=True):
        """dW += x.T @ dy, db += dy summed over the batch; returns dy @ W.T (None with input_grad=False).
        dy: (batch, out_features) for the last forward's batch, in its dtype, on this layer's device; anything else
        raises a portanet error naming model.backward(loss_fn.backward()) (module.check_gradient)."""
        x = self._x
        self._needs_forward(x)
        if not (self._device.holds(dy) and dy.ndim == 2 and dy.shape[0] == x.shape[0]
                and dy.shape[1] == self.out_features and dy.dtype == x.dtype):
            dy = check_gradient(self, dy, ((x.shape[0], self.out_features), x.dtype), f"{self!r}.backward()", "its")
        self.weight.accumulate_product(x, dy)
        if self.bias is not None:
            self.bias.accumulate_sum(dy, axis=0)
        return self.xp.matmul(dy, self.weight.data.T) if input_grad else None

    def extra_repr(self):
        return f"{self.in_features} -> {self.out_features}" + ("" if self.bias is not None else ", bias=False")


Linear = Dense
