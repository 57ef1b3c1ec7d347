"""Branching models: a skip connection (Residual) and parallel branches joined along an axis (Concat)."""
from __future__ import annotations

from ..errors import ShapeError
from .._numbers import is_int
from ..module import Module, Sequential


class Residual(Sequential):
    """y = x + f(x), f the layers in order (a Sequential of them): ``Residual(Conv2d(16, 16, 3, padding=1), ReLU(),
    Conv2d(16, 16, 3, padding=1))``. The layers are named 0, 1, ... inside it, as in Sequential, so its
    parameters are '<its name>.0.weight', ...

    f must keep x's shape (ShapeError otherwise). Where a block changes the channels or the size, a ResNet
    projects its skip path with a 1x1 convolution; here, put that Conv2d(in, out, 1) (with the block's stride)
    before or after the Residual. Backward: dx = dy + f's input gradient. Nests in Sequential, Concat and other
    Residuals; like Sequential, it fuses Dense + ReLU pairs and honours input_grad=False."""

    def __init__(self, *layers, device=None):
        if not layers or (len(layers) == 1 and isinstance(layers[0], (list, tuple)) and not layers[0]):
            raise ValueError("Residual needs at least one layer: with none, f is the identity and Residual() "
                             "computes x + x; use Identity() for a plain skip")
        super().__init__(*layers, device=device)

    def forward(self, x):
        fx = super().forward(x)
        if tuple(fx.shape) != tuple(x.shape):
            fix = (f"e.g. with a 1x1 Conv2d projection (Conv2d({x.shape[1]}, {fx.shape[1]}, 1))" if x.ndim == 4
                   and fx.ndim == 4 else "e.g. with a Dense projection")
            raise ShapeError(f"Residual's layers turn input of shape {tuple(x.shape)} into {tuple(fx.shape)}, but "
                             "x + f(x) needs the shapes to agree: keep the channels and size inside the branch "
                             f"(stride 1, padding = kernel_size // 2) and change them before or after the Residual, "
                             f"{fix}")
        return x + fx

    def backward(self, dy, input_grad: bool = True):
        dx = super().backward(dy, input_grad=input_grad)
        return dy + dx if input_grad else None

    def __repr__(self):
        inner = ",\n  ".join(repr(layer).replace("\n", "\n  ") for layer in self.layers)
        return f"Residual(\n  {inner}\n)"


class Concat(Module):
    """Parallel branches on the same input, their outputs joined along ``axis`` (default 1: channels of images,
    features of rows): ``Concat(Conv2d(16, 8, 1), Sequential(Conv2d(16, 8, 3, padding=1), ReLU()))``.
    Each branch is one layer or a Sequential; the branches are named 0, 1, ... inside it. Every branch's output
    must have the same shape except along ``axis``. Backward: dy is split along ``axis`` and the branches' input
    gradients add up. With ``device=``, every branch is moved there."""

    can_skip_input_grad = True

    def __init__(self, *branches, axis=1, device=None):
        if len(branches) == 1 and isinstance(branches[0], (list, tuple)):
            branches = tuple(branches[0])
        if not branches:
            raise ValueError("Concat needs at least one branch")
        for i, b in enumerate(branches):
            if not isinstance(b, Module):
                raise TypeError(f"Concat takes portanet Modules as branches; branch {i} is {type(b).__name__}")
        if not is_int(axis) or axis == 0:
            raise ValueError(f"Concat joins along a non-batch axis (an int other than 0), got axis={axis!r}")
        if device is None:
            seen = {b.device for b in branches if b.parameters()} or {b.device for b in branches}
            if len(seen) > 1:
                where = ", ".join(f"{i}: {b.device}" for i, b in enumerate(branches))
                raise ValueError(f"Concat's branches are on different devices ({where}): pass device= to Concat "
                                 "to put them all in one place")
            device = next(iter(seen))
        super().__init__(device)
        for i, b in enumerate(branches):
            setattr(self, str(i), b)
        _refuse_repeats(self)
        self.branches = list(branches)
        self.axis = int(axis)
        self._sizes = None
        self.to(self._device)

    def forward(self, x):
        outs = [b.forward(x) for b in self.branches]
        first = tuple(outs[0].shape)
        axis = self.axis if self.axis > 0 else len(first) + self.axis
        if not 0 < axis < len(first):
            raise ShapeError(f"{self!r} joins along axis {self.axis}, but its branches give {len(first)}-D outputs "
                             f"of shape {first}: pick an axis between 1 and {len(first) - 1}")
        for i, o in enumerate(outs[1:], 1):
            shape = tuple(o.shape)
            if len(shape) != len(first) or any(a != b for d, (a, b) in enumerate(zip(shape, first)) if d != axis):
                sizes = ", ".join(f"branch {j}: {tuple(out.shape)}" for j, out in enumerate(outs))
                raise ShapeError(f"Concat's branches must agree on every axis but {self.axis}; they give {sizes}: "
                                 "give them the same spatial size (the same stride, padding = kernel_size // 2 for "
                                 "odd kernels) or the same features")
        self._sizes = (axis, [o.shape[axis] for o in outs])
        y = self.xp.concat(outs, axis=axis)
        self._out = (y.shape, y.dtype)
        return y

    def backward(self, dy, input_grad: bool = True):
        self._needs_forward(self._sizes)
        dy = self._checked_dy(dy, self._out)
        axis, sizes = self._sizes
        dx = None
        start = 0
        for branch, size in zip(self.branches, sizes):
            index = (slice(None),) * axis + (slice(start, start + size), ...)
            start += size
            part = dy[index]
            if not input_grad and getattr(branch, "can_skip_input_grad", False):
                branch.backward(part, input_grad=False)
                continue
            g = branch.backward(part)
            if input_grad:
                dx = g if dx is None else dx + g
        return dx

    def extra_repr(self):
        return "" if self.axis == 1 else f"axis={self.axis}"

    def __repr__(self):
        inner = ",\n  ".join(repr(b).replace("\n", "\n  ") for b in self.branches)
        tail = f",\n  axis={self.axis}" if self.axis != 1 else ""
        return f"Concat(\n  {inner}{tail}\n)"


def _refuse_repeats(container):
    """One layer object in two places would backpropagate through its last run only (its forward's values are
    kept for backward), and a shared weight would be counted twice by optimizers."""
    first = {}
    for name, m in container.named_modules():
        if m is container:
            continue
        if id(m) in first:
            kind = type(m).__name__
            raise ValueError(f"{type(container).__name__} got one {kind} object at '{first[id(m)]}' and again at "
                             f"'{name}': a portanet layer keeps its forward's values for backward, so each place "
                             f"needs its own layer: create a new {kind}(...) for each (copy.deepcopy copies one "
                             "with its weights)")
        first[id(m)] = name
