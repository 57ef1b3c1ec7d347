"""Batch normalisation."""
from __future__ import annotations

from .._numbers import is_int, is_real
from ..errors import ShapeError
from ..module import Module, Parameter, check_features, check_float


class BatchNorm1d(Module):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta over the batch axis.   x: (batch, features).

    Training uses the batch's mean and (biased) variance and updates running_mean / running_var
    (unbiased) with ``momentum``; eval mode uses the running statistics, as PyTorch does.
    ``num_batches_tracked`` counts the training batches seen, as PyTorch's buffer of that name does; nothing here
    reads it, so it stays a host int outside the state_dict, and pn.torch_state_dict writes it for PyTorch.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, device=None, dtype=None):
        if not is_int(num_features) or num_features <= 0:
            raise ValueError(f"BatchNorm1d needs num_features to be a positive int, got {num_features!r}")
        num_features = int(num_features)
        if not is_real(momentum) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm1d momentum must be in [0, 1], got {momentum}")
        super().__init__(device)
        self.num_features, self.eps, self.momentum, self.affine = num_features, float(eps), float(momentum), affine
        xp, dt, nat = self.xp, self._device.dtype(dtype), self._device.native
        if affine:
            self.weight = Parameter(xp.ones((num_features,), dtype=dt, device=nat))
            self.bias = Parameter(xp.zeros((num_features,), dtype=dt, device=nat))
        else:
            self.weight = self.bias = None
        self.register_buffer("running_mean", xp.zeros((num_features,), dtype=dt, device=nat))
        self.register_buffer("running_var", xp.ones((num_features,), dtype=dt, device=nat))
        self.num_batches_tracked = 0
        self._saved = None

    def forward(self, x):
        xp = self.xp
        if x.ndim != 2 or x.shape[1] != self.num_features:
            check_features(self, x, self.num_features)      # raises, with the fix its shape calls for
        if x.dtype != self.running_mean.dtype:
            check_float(self, x, self.running_mean.dtype)
        if self.training:
            n = x.shape[0]
            if n < 2:
                raise ShapeError(f"{self!r} in training mode needs a batch of at least 2 to estimate variance, "
                                 "got 1: use a larger batch, drop_last=True in the DataLoader, or model.eval()")
            mean = xp.mean(x, axis=0)
            centered = x - mean
            var = xp.mean(centered * centered, axis=0)
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean *= 1.0 - m
            self.running_mean += m * mean
            self.running_var *= 1.0 - m
            self.running_var += (m * n / (n - 1)) * var
        else:
            centered = x - self.running_mean
            var = self.running_var
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        xhat = centered * inv_std
        self._saved = (xhat, inv_std, self.training)
        if self.affine:
            return xhat * self.weight.data + self.bias.data
        return xhat

    def backward(self, dy):
        xp = self.xp
        self._needs_forward(self._saved)
        xhat, inv_std, training = self._saved
        if self.affine:
            self.weight.accumulate(xp.sum(dy * xhat, axis=0))
            self.bias.accumulate(xp.sum(dy, axis=0))
            dxhat = dy * self.weight.data
        else:
            dxhat = dy
        if not training:
            return dxhat * inv_std
        n = dy.shape[0]
        return (inv_std / n) * (n * dxhat - xp.sum(dxhat, axis=0) - xhat * xp.sum(dxhat * xhat, axis=0))

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
