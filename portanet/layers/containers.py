"""Branching models: a skip connection (Residual) and parallel branches joined along an axis (Concat)."""
from __future__ import annotations

from ..errors import ShapeError
from .._numbers import is_int
from ..module import Module, Sequential, backward_through, common_device, refuse_repeats


class Residual(Sequential):
    """y = shortcut(x) + f(x), f the layers in order (a Sequential of them) and shortcut the identity unless given:
    ``Residual(Conv2d(16, 16, 3, padding=1), ReLU(), Conv2d(16, 16, 3, padding=1))``. The layers are named 0, 1, ...
    inside it, as in Sequential, so its parameters are '<its name>.0.weight', ...; a shortcut's are
    '<its name>.shortcut.weight'.

    f(x) must have shortcut(x)'s shape (ShapeError otherwise, naming both). Where a block changes the channels or
    the size, He et al. (2016) project the skip path with a 1x1 convolution of the block's stride, option B of
    "Deep Residual Learning for Image Recognition": ``Residual(Conv2d(16, 32, 3, stride=2, padding=1), ...,
    shortcut=Sequential(Conv2d(16, 32, 1, stride=2, bias=False), BatchNorm2d(32)))``, as torchvision's
    ``downsample``. x: any shape f and shortcut take, (batch, channels, height, width) for images.
    Backward: dx = f's input gradient + shortcut's (dy itself for the identity). Nests in Sequential, Concat and
    other Residuals, and honours input_grad=False."""

    def __init__(self, *layers, shortcut=None, device=None):
        if not layers or (len(layers) == 1 and isinstance(layers[0], (list, tuple)) and not layers[0]):
            raise ValueError("Residual needs at least one layer: with none, f is the identity and Residual() "
                             "computes x + x; use Identity() for a plain skip")
        if shortcut is not None and not isinstance(shortcut, Module):
            raise TypeError(f"Residual's shortcut= takes a portanet Module (a Conv2d or Dense projection, or a "
                            f"Sequential of them), got {type(shortcut).__name__}")
        super().__init__(*layers, device=device)
        self.shortcut = None
        if shortcut is not None:
            if device is None:          # the layers (as one) and the shortcut agree as a container's parts must
                device = common_device([self, shortcut], "Residual", "layers (0) and shortcut (1)")
            self.shortcut = shortcut
            refuse_repeats(self)
            self.to(device)

    def to(self, device=None, dtype=None):
        super().to(device, dtype)
        if getattr(self, "shortcut", None) is not None:
            self.shortcut.to(self._device, dtype)
        return self

    def forward(self, x):
        skip = x if self.shortcut is None else self.shortcut.forward(x)
        fx = super().forward(x)
        if tuple(fx.shape) != tuple(skip.shape):
            if self.shortcut is not None:
                raise ShapeError(f"Residual's layers turn input of shape {tuple(x.shape)} into {tuple(fx.shape)} but "
                                 f"its shortcut into {tuple(skip.shape)}: shortcut(x) + f(x) needs them to agree "
                                 "(give the shortcut the layers' output channels and stride)")
            fix = (f"shortcut=Conv2d({x.shape[1]}, {fx.shape[1]}, 1, stride=<the block's stride>), a 1x1 "
                   "projection as in He et al.'s ResNet" if x.ndim == 4 and fx.ndim == 4
                   else f"shortcut=Dense({x.shape[-1]}, {fx.shape[-1]})" if x.ndim == 2 and fx.ndim == 2
                   else "a shortcut= that gives x the layers' output shape")
            raise ShapeError(f"Residual's layers turn input of shape {tuple(x.shape)} into {tuple(fx.shape)}, but "
                             "x + f(x) needs the shapes to agree: keep the channels and size inside the branch "
                             "(stride 1, padding = kernel_size // 2), or project the skip path with " + fix)
        return skip + fx

    def backward(self, dy, input_grad: bool = True):
        dx = super().backward(dy, input_grad=input_grad)
        if self.shortcut is None:
            return dy + dx if input_grad else None
        ds = backward_through(self.shortcut, dy, input_grad)
        return dx + ds if input_grad else None

    def __repr__(self):
        inner = ",\n  ".join(repr(layer).replace("\n", "\n  ") for layer in self.layers)
        if self.shortcut is not None:
            inner += ",\n  shortcut=" + repr(self.shortcut).replace("\n", "\n  ")
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
            device = common_device(branches, "Concat", "branches")
        super().__init__(device)
        for i, b in enumerate(branches):
            setattr(self, str(i), b)
        refuse_repeats(self)
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
            g = backward_through(branch, dy[index], input_grad)
            if input_grad:
                dx = g if dx is None else dx + g
        return dx

    def extra_repr(self):
        return "" if self.axis == 1 else f"axis={self.axis}"

    def __repr__(self):
        inner = ",\n  ".join(repr(b).replace("\n", "\n  ") for b in self.branches)
        tail = f",\n  axis={self.axis}" if self.axis != 1 else ""
        return f"Concat(\n  {inner}{tail}\n)"

