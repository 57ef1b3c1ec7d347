"""Batch normalisation over features (BatchNorm1d) and over image channels (BatchNorm2d)."""
from __future__ import annotations

from .._numbers import is_int, is_real
from ..errors import ShapeError
from ..module import Module, Parameter, check_features, check_float


class _BatchNorm(Module):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, one mean and variance per feature (axis 1), taken over every
    other axis (``_axes``). Training uses the batch's statistics and updates running_mean / running_var (unbiased,
    with ``momentum``); eval mode uses the running statistics, as PyTorch does.

    ``num_batches_tracked`` counts the training batches seen, as PyTorch's buffer of that name does; nothing here
    reads it, so it stays a host int outside the state_dict, and pn.torch_state_dict writes it for PyTorch (a step
    recorded into a CUDA graph advances it per replay: portanet/step/capture.py)."""

    _axes = (0,)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, device=None, dtype=None):
        name = type(self).__name__
        if not is_int(num_features) or num_features <= 0:
            raise ValueError(f"{name} needs num_features to be a positive int, got {num_features!r}")
        num_features = int(num_features)
        if not is_real(momentum) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{name} momentum must be in [0, 1], got {momentum}")
        if not is_real(eps) or not 0.0 <= eps < float("inf"):
            # a negative eps makes sqrt(var + eps) NaN for every channel whose batch variance is below -eps
            raise ValueError(f"{name} eps must be a finite number >= 0 (added to the variance before the square "
                             f"root; PyTorch's default is 1e-5), got {eps!r}")
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

    def _check(self, x):
        raise NotImplementedError

    def _per_feature(self, v):
        """A (features,) vector shaped to broadcast against the input (BatchNorm2d: (1, C, 1, 1))."""
        return v

    def _sum(self, a):
        return self.xp.sum(a, axis=self._axes)

    def forward(self, x):
        xp = self.xp
        self._check(x)
        if x.dtype != self.running_mean.dtype:
            check_float(self, x, self.running_mean.dtype)
        view = self._per_feature
        if self.training:
            n = 1
            for axis in self._axes:
                n *= x.shape[axis]
            if n < 2:
                raise ShapeError(f"{self!r} in training mode needs at least 2 values per feature to estimate "
                                 f"variance, got input of shape {tuple(x.shape)}: use a larger batch, "
                                 "drop_last=True (in the DataLoader, or fit's), or model.eval()")
            mean = xp.mean(x, axis=self._axes)
            centered = x - view(mean)
            var = xp.mean(centered * centered, axis=self._axes)
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean *= 1.0 - m
            self.running_mean += m * mean
            self.running_var *= 1.0 - m
            self.running_var += (m * n / (n - 1)) * var
        else:
            centered = x - view(self.running_mean)
            var = self.running_var
        inv_std = view(1.0 / xp.sqrt(var + self.eps))
        xhat = centered * inv_std
        self._saved = (xhat, inv_std, self.training)
        if self.affine:
            return xhat * view(self.weight.data) + view(self.bias.data)
        return xhat

    def backward(self, dy):
        self._needs_forward(self._saved)
        xhat, inv_std, training = self._saved
        dy = self._checked_dy(dy, (xhat.shape, xhat.dtype))
        view = self._per_feature
        if self.affine:
            self.weight.accumulate(self._sum(dy * xhat))
            self.bias.accumulate(self._sum(dy))
            dxhat = dy * view(self.weight.data)
        else:
            dxhat = dy
        if not training:
            return dxhat * inv_std
        n = 1
        for axis in self._axes:
            n *= dy.shape[axis]
        return (inv_std / n) * (n * dxhat - view(self._sum(dxhat)) - xhat * view(self._sum(dxhat * xhat)))

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (batch, features): one mean and variance per feature, over the batch.

    y = gamma * (x - mean) / sqrt(var + eps) + beta. Training uses the batch's mean and (biased) variance and
    updates running_mean / running_var (unbiased) with ``momentum``; eval mode uses the running statistics, as
    PyTorch does. weight (gamma), bias (beta), running_mean, running_var: (features,).
    """

    def _check(self, x):
        if x.ndim != 2 or x.shape[1] != self.num_features:
            check_features(self, x, self.num_features)      # raises, with the fix its shape calls for


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of images (batch, channels, H, W): one mean and variance per channel, over the batch and
    every pixel (batch * H * W values), as PyTorch's BatchNorm2d. Otherwise as BatchNorm1d: weight (gamma), bias
    (beta), running_mean and running_var are (channels,); the running variance is unbiased (n / (n - 1))."""

    _axes = (0, 2, 3)

    def _check(self, x):
        if x.ndim != 4 or x.shape[1] != self.num_features:
            fix = (" (for (batch, features) use BatchNorm1d)" if x.ndim == 2 else
                   "; channels-last images? move the channels to axis 1 with x.transpose(0, 3, 1, 2)"
                   if x.ndim == 4 and x.shape[3] == self.num_features else "")
            raise ShapeError(f"{self!r} got input of shape {tuple(x.shape)}; it expects "
                             f"(batch, {self.num_features}, height, width){fix}")

    def _per_feature(self, v):
        return self.xp.reshape(v, (1, self.num_features, 1, 1))
