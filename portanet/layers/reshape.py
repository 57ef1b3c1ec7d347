"""Shape-only layers."""
from __future__ import annotations

from ..errors import ShapeError
from ..module import Module


class Flatten(Module):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...). Images (batch, 28, 28) become (batch, 784)."""

    def __init__(self, device=None):
        super().__init__(device)
        self._shape = None

    def forward(self, x):
        if x.ndim < 1:
            raise ShapeError("Flatten needs a batch axis (batch, ...); got a 0-d array")
        self._shape = tuple(x.shape)
        if x.ndim == 2:
            return x                 # already (batch, features): no reshape call per step
        n = 1
        for s in x.shape[1:]:
            n *= s
        return self.xp.reshape(x, (x.shape[0], n))

    def backward(self, dy):
        self._needs_forward(self._shape)
        return self.xp.reshape(dy, self._shape)
