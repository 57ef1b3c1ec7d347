"""Affine layers."""
from __future__ import annotations

from .. import init as initializers
from ..backends.kernels import REFUSALS
from ..module import Module, Parameter, check_features, check_float


def _positive(name, value, owner):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{owner} needs {name} to be a positive int, got {value!r}")


class Dense(Module):
    """y = x @ W + b.   x: (batch, in_features) -> y: (batch, out_features).

    weight: (in_features, out_features), drawn by ``init`` (default "glorot_uniform", i.e. Xavier;
    pass init="he_normal" for deep ReLU nets). bias: (out_features,), zeros. ``seed`` draws the weights from
    their own generator; without it they come from the device's default one (see portanet.seed).
    """

    can_skip_input_grad = True

    def __init__(self, in_features, out_features, bias=True, init=None, device=None, dtype=None, seed=None):
        _positive("in_features", in_features, "Dense")
        _positive("out_features", out_features, "Dense")
        super().__init__(device)
        self.in_features, self.out_features = in_features, out_features
        dt = self._device.dtype(dtype)
        draw = initializers.get(init or "glorot_uniform")
        rng = None if seed is None else self._device.rng(seed)
        self.weight = Parameter(draw((in_features, out_features), device=self._device, dtype=dt, rng=rng))
        self.bias = Parameter(initializers.zeros((out_features,), device=self._device, dtype=dt)) if bias else None
        self._x = None

    def forward(self, x):
        y = self._matmul(x)
        if self.bias is not None:
            self._add_bias(y)
        return y

    def _add_bias(self, y):
        """y += b in place, through the backend's kernel where it has one: the same bits, without NumPy's
        broadcasting set-up, which costs more than the arithmetic for a small layer (backends/kernels.py)."""
        kernel = self._device.kernel("bias_add")
        if kernel is not None:
            try:
                kernel(y, self.bias.data)
                return
            except REFUSALS:
                pass
        y += self.bias.data

    def _matmul(self, x):
        """x @ W after checking x, keeping x for backward. y is this layer's own array: safe to update in place."""
        w = self.weight.data
        if x.ndim != 2 or x.shape[1] != self.in_features or x.shape[0] == 0:
            check_features(self, x, self.in_features)
        if x.dtype != w.dtype:
            check_float(self, x, w.dtype)
        self._x = x
        return x @ w

    def forward_relu(self, x, relu, kernel):
        """forward, then ``relu`` on the result, as one step: the bias add and the ReLU run in place on this
        layer's own fresh GEMM output through the backend's fused ``kernel`` (Sequential pairs them).
        Leaves ``relu`` ready for its backward as if it had run itself."""
        y = self._matmul(x)
        try:
            kernel(y, self.bias.data)
        except REFUSALS:          # e.g. a bias the user replaced with another dtype: the two layers' own code
            y += self.bias.data
            return relu.forward(y)
        relu._saved = y
        return y

    def backward_relu(self, dy, relu, kernel, input_grad=True):
        """``relu.backward`` then this layer's backward, as one step: the ReLU mask and the bias gradient come
        from one pass of the fused ``kernel`` over dy."""
        x, y = self._x, relu._saved
        self._needs_forward(x)
        relu._needs_forward(y)
        xp = self.xp
        dz = xp.empty_like(y)
        db = xp.empty_like(self.bias.data)
        try:
            kernel(dy, y, dz, db)
        except REFUSALS:
            return self.backward(relu.backward(dy), input_grad=input_grad)
        self.weight.accumulate_product(x, dz)
        self.bias.accumulate(db)
        return dz @ self.weight.data.T if input_grad else None

    def backward(self, dy, input_grad=True):
        x = self._x
        self._needs_forward(x)
        self.weight.accumulate_product(x, dy)
        if self.bias is not None:
            self.bias.accumulate(self._bias_grad(dy))
        return dy @ self.weight.data.T if input_grad else None

    def _bias_grad(self, dy):
        """dy.sum(axis=0), through the backend's kernel where it has one (the same bits)."""
        kernel = self._device.kernel("bias_grad")
        if kernel is not None:
            db = self.xp.empty_like(self.bias.data)
            try:
                kernel(dy, db)
                return db
            except REFUSALS:
                pass
        return self.xp.sum(dy, axis=0)

    def extra_repr(self):
        return f"{self.in_features} -> {self.out_features}" + ("" if self.bias is not None else ", bias=False")


Linear = Dense
