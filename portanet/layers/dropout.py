"""Inverted dropout: of single values (Dropout) and of whole image channels (Dropout2d)."""
from __future__ import annotations

from .. import random as _random
from .._numbers import is_real
from ..errors import ShapeError
from ..module import Module


class Dropout(Module):
    """Zeroes each element with probability p during training and scales the rest by 1/(1-p),
    so evaluation needs no rescaling. Identity in eval mode. The mask is drawn on the device
    from this layer's own generator (seeded by ``seed``, else from ``portanet.seed``)."""

    def __init__(self, p=0.5, seed=None, device=None):
        if not is_real(p) or not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout p is the probability of dropping a unit and must be in [0, 1); got {p!r}. "
                             "p=0 disables dropout")
        super().__init__(device)
        self.p = float(p)
        self.seed = _random.next_seed() if seed is None else int(seed)
        self._gen = None
        self._mask = None

    @property
    def generator(self):
        if self._gen is None:
            object.__setattr__(self, "_gen", self._device.rng(self.seed))
        return self._gen

    def _moved(self):
        # The seed stays: a model built on one device and moved draws the masks it would draw there. A generator
        # already in use continues its stream where the two devices share a generator (NumPy and array-api-strict
        # both run PCG64 on the host); elsewhere the new device's generator starts from the seed again.
        old = self._gen
        self._gen = None
        if old is not None:
            new = self.generator
            if new.backend_name == old.backend_name == "numpy":     # NumPy's and strict's: backends/base.py
                new.set_state(old.get_state())

    def forward(self, x):
        return self._drop(x, tuple(x.shape))

    def _drop(self, x, mask_shape):
        """x times a mask of ``mask_shape`` (broadcast over x), kept for backward with the output's shape and dtype."""
        self._out = (x.shape, x.dtype)
        if not self.training or self.p == 0.0:
            self._mask = 1.0
            return x
        keep = 1.0 - self.p
        mask = self.generator.bernoulli(mask_shape, keep, x.dtype)
        mask *= 1.0 / keep
        self._mask = mask
        return x * mask

    def backward(self, dy):
        self._needs_forward(self._mask)
        return self._checked_dy(dy, self._out) * self._mask

    def extra_repr(self):
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Channel dropout, as PyTorch's Dropout2d: during training each whole channel of each sample is zeroed with
    probability p and the rest are scaled by 1/(1-p). x: (batch, channels, H, W); the mask is (batch, channels, 1, 1),
    drawn like Dropout's (this layer's own generator, ``seed`` or portanet.seed). Identity in eval mode."""

    def forward(self, x):
        if x.ndim != 4:
            raise ShapeError(f"{self!r} got input of shape {tuple(x.shape)}; it expects (batch, channels, height, "
                             "width) and drops whole channels: use Dropout for (batch, features)")
        return self._drop(x, (x.shape[0], x.shape[1], 1, 1))
