"""Shape-only layers."""
from __future__ import annotations

from ..errors import ShapeError
from ..module import Module


class Flatten(Module):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...). Images (batch, 28, 28) become (batch, 784).

    Axis 0 is always the batch, as in PyTorch's nn.Flatten (start_dim=1): a 1-D input is one sample without its
    batch axis, a ShapeError naming x[None] (PyTorch raises an IndexError there; Keras makes (n,) into (n, 1))."""

    def __init__(self, device=None):
        super().__init__(device)
        self._shape = None

    def forward(self, x):
        if x.ndim < 1:
            raise ShapeError("Flatten needs a batch axis (batch, ...); got a 0-d array")
        if x.ndim == 1:
            raise ShapeError(f"Flatten got input of shape {tuple(x.shape)}, one sample without a batch axis; it takes "
                             "(batch, ...) and keeps axis 0 as the batch: add the batch axis with x[None] or "
                             "x.reshape(1, -1) (for a batch of single values, x[:, None])")
        self._shape = tuple(x.shape)
        if x.ndim == 2:
            self._out = (x.shape, x.dtype)
            return x                 # already (batch, features): no reshape call per step
        n = 1
        for s in x.shape[1:]:
            n *= s
        self._out = ((x.shape[0], n), x.dtype)
        return self.xp.reshape(x, (x.shape[0], n))

    def backward(self, dy):
        self._needs_forward(self._shape)
        return self.xp.reshape(self._checked_dy(dy, self._out), self._shape)
