"""Softmax and log-softmax along an axis, with their true Jacobian-vector products."""
from __future__ import annotations

from .activations import Activation


class Softmax(Activation):
    """y = exp(x - max) / sum exp(x - max).   backward: dx = y * (dy - sum(dy * y)).

    For training a classifier, feed logits to CrossEntropyLoss instead: it fuses the two.
    """

    def __init__(self, axis=-1, device=None):
        super().__init__(device)
        self.axis = axis

    def forward(self, x):
        xp = self.xp
        e = xp.exp(x - xp.max(x, axis=self.axis, keepdims=True))
        y = e / xp.sum(e, axis=self.axis, keepdims=True)
        self._saved = y
        return y

    def _grad(self, dy, y):
        return y * (dy - self.xp.sum(dy * y, axis=self.axis, keepdims=True))

    def extra_repr(self):
        return f"axis={self.axis}"


class LogSoftmax(Activation):
    """y = x - logsumexp(x).   backward: dx = dy - softmax(x) * sum(dy)."""

    def __init__(self, axis=-1, device=None):
        super().__init__(device)
        self.axis = axis

    def forward(self, x):
        xp = self.xp
        shifted = x - xp.max(x, axis=self.axis, keepdims=True)
        y = shifted - xp.log(xp.sum(xp.exp(shifted), axis=self.axis, keepdims=True))
        self._saved = y
        return y

    def _grad(self, dy, y):
        xp = self.xp
        return dy - xp.exp(y) * xp.sum(dy, axis=self.axis, keepdims=True)

    def extra_repr(self):
        return f"axis={self.axis}"
