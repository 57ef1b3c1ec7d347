"""Maxout: the max over k affine pieces per output unit (Goodfellow et al., 2013)."""
from __future__ import annotations

from .. import init as initializers
from ..module import Module, Parameter, check_features, check_float
from .dense import _positive


class Maxout(Module):
    """y[:, o] = max_k (x @ W + b)[:, o * pieces + k].   x: (batch, in_features) -> (batch, out_features).

    weight: (in_features, out_features * pieces), the pieces of a unit side by side.
    The gradient goes to the winning piece (the first one on ties).
    """

    can_skip_input_grad = True

    def __init__(self, in_features, out_features, pieces, bias=True, init=None, device=None, dtype=None,
                 seed=None):
        in_features, out_features, pieces = (_positive(name, v, "Maxout") for name, v in (
            ("in_features", in_features), ("out_features", out_features), ("pieces", pieces)))
        super().__init__(device)
        self.in_features, self.out_features, self.pieces = in_features, out_features, pieces
        dt = self._device.dtype(dtype)
        draw = initializers.get(init or "glorot_uniform")
        width = out_features * pieces
        rng = None if seed is None else self._device.rng(seed)
        self.weight = Parameter(draw((in_features, width), device=self._device, dtype=dt, rng=rng))
        self.bias = Parameter(initializers.zeros((width,), device=self._device, dtype=dt)) if bias else None
        self._saved = None

    def forward(self, x):
        xp = self.xp
        w = self.weight.data
        if x.ndim != 2 or x.shape[1] != self.in_features or x.shape[0] == 0:
            check_features(self, x, self.in_features)
        if x.dtype != w.dtype:
            check_float(self, x, w.dtype)
        z = xp.matmul(x, w)
        if self.bias is not None:
            z += self.bias.data
        z = xp.reshape(z, (x.shape[0], self.out_features, self.pieces))
        winner = xp.argmax(z, axis=-1)
        self._saved = (x, winner)
        return xp.max(z, axis=-1)

    def backward(self, dy, input_grad=True):
        xp = self.xp
        self._needs_forward(self._saved)
        x, winner = self._saved
        dy = self._checked_dy(dy, (winner.shape, x.dtype))
        pieces = xp.arange(self.pieces, device=self._device.native)
        routed = xp.where(winner[..., None] == pieces, dy[..., None], 0.0)
        dz = xp.reshape(routed, (x.shape[0], self.out_features * self.pieces))
        self.weight.accumulate_product(x, dz)
        if self.bias is not None:
            self.bias.accumulate_sum(dz, axis=0)
        return xp.matmul(dz, self.weight.data.T) if input_grad else None

    def extra_repr(self):
        return f"{self.in_features} -> {self.out_features}, pieces={self.pieces}"
