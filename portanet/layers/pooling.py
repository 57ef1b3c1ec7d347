"""Pooling over windows of images: max, average, and global average."""
from __future__ import annotations

from ..backends.kernels import REFUSALS
from ..errors import ShapeError
from ..module import Module, check_float
from . import _windows


def _check_input(layer, x):
    """x must be a non-empty (batch, channels, H, W) batch of floats, of any float dtype (pooling has no weights to
    match). ShapeError / TypeError naming the fix otherwise."""
    if x.ndim != 4 or x.shape[0] == 0:
        _windows.check_images(layer, x, x.dtype)
    if not layer._device.is_float(x.dtype):
        check_float(layer, x, layer._device.dtype("float32"))


class _Pool2d(Module):
    """kernel_size, stride (default: kernel_size) and padding as PyTorch's MaxPool2d / AvgPool2d: an int or a
    (height, width) pair, padding at most half the kernel; output size floor((H + 2p - k) / s) + 1."""

    def __init__(self, kernel_size, stride=None, padding=0, device=None, **unsupported):
        name = type(self).__name__
        if unsupported:
            raise TypeError(f"{name} got {', '.join(map(repr, unsupported))}, which portanet's pooling does not "
                            "support: it takes PyTorch's kernel_size, stride and padding (dilation 1, ceil_mode="
                            "False, padding counted in averages, no return_indices); pad the input or choose "
                            "kernel_size and stride to get the size you need")
        kernel = _windows.pair(kernel_size, "kernel_size", name, 1)
        stride = kernel if stride is None else _windows.pair(stride, "stride", name, 1)
        padding = _windows.pair(padding, "padding", name, 0)
        if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
            raise ValueError(f"{name} padding {padding} must be at most half the kernel {kernel} (as in PyTorch): "
                             "every window must hold at least one input value; use a larger kernel or less padding")
        super().__init__(device)
        self.kernel_size, self.stride, self.padding = kernel, stride, padding
        self._saved = None

    def _prepare(self, x):
        """Check x; keep the output's (shape, dtype) for backward's check of dy; return the output size (H', W')."""
        _check_input(self, x)
        out = _windows.out_size(self, x, self.kernel_size, self.stride, self.padding)
        self._out = ((x.shape[0], x.shape[1], *out), x.dtype)
        return out

    def _offsets(self):
        kh, kw = self.kernel_size
        return [(k, i, j) for k, (i, j) in enumerate((i, j) for i in range(kh) for j in range(kw))]

    def _slices(self, out):
        """Per kernel offset k (row-major over the window), the index that gives each output's k-th input."""
        sh, sw = self.stride
        return [(k, (slice(None), slice(None), _windows.window(i, sh, out[0]), _windows.window(j, sw, out[1])))
                for k, i, j in self._offsets()]

    def _scatter(self, per_offset, shape, out, dtype):
        """Sum per_offset(k) back into the (padded) input positions that window offset k read; crop the padding.
        Returns (N, C, H, W) as a view of channel-major planes."""
        xp = self.xp
        n, c, h, w = shape
        ph, pw = self.padding
        grad = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=dtype, device=self._device.native)
        for k, index in self._slices(out):
            grad[index] += per_offset(k)
        if ph or pw:
            grad = grad[:, :, ph:ph + h, pw:pw + w]
        return _windows.planes(xp, grad)

    def extra_repr(self):
        parts = [f"kernel_size={_windows.show(self.kernel_size)}"]
        if self.stride != self.kernel_size:
            parts.append(f"stride={_windows.show(self.stride)}")
        if self.padding != (0, 0):
            parts.append(f"padding={_windows.show(self.padding)}")
        return ", ".join(parts)


class MaxPool2d(_Pool2d):
    """The largest value of each window, as PyTorch's MaxPool2d (dilation 1, floor mode): padding counts as -inf;
    the first largest value of a window wins, and a NaN wins over any number.
    x: (batch, channels, H, W) -> (batch, channels, H', W').

    Forward keeps each output's winning window offset (uint8 for windows up to 256 values), and backward routes the
    gradient to it; overlapping windows (stride < kernel) add up where they share a winner."""

    def forward(self, x):
        xp = self.xp
        out = self._prepare(x)
        kh, kw = self.kernel_size
        index_dtype = xp.uint8 if kh * kw <= 256 else xp.int32
        fused = self._device.kernel("maxpool") if kh * kw <= 256 else None
        if fused is not None:      # one pass per plane instead of kh * kw over the batch, the same values
            c, n = x.shape[1], x.shape[0]
            best = xp.empty((c, n, *out), dtype=x.dtype, device=self._device.native)
            winner = xp.empty((c, n, *out), dtype=index_dtype, device=self._device.native)
            try:
                fused(x, _windows.planes(xp, best), _windows.planes(xp, winner), *self.kernel_size, *self.stride,
                      *self.padding)
                self._saved = (winner, tuple(x.shape), out)
                return _windows.planes(xp, best)
            except REFUSALS:
                pass
        p = _windows.pad_planes(xp, _windows.planes(xp, x), self.padding, -float("inf"), self._device.native)
        best = winner = None
        for k, index in self._slices(out):
            v = p[index]
            if best is None:
                best = xp.asarray(v, copy=True)
                winner = xp.zeros(tuple(v.shape), dtype=index_dtype, device=self._device.native)
                continue
            take = (v > best) | xp.isnan(v)
            best = xp.where(take, v, best)
            # full, not asarray: a Python value through asarray is a host-to-device copy on torch's CUDA, which a
            # recorded step cannot hold; full is a fill on the device
            winner = xp.where(take, xp.full((), k, dtype=index_dtype, device=self._device.native), winner)
        self._saved = (winner, tuple(x.shape), out)
        return _windows.planes(xp, best)

    def backward(self, dy):
        xp = self.xp
        self._needs_forward(self._saved)
        dy = self._checked_dy(dy, self._out)
        winner, shape, out = self._saved
        fused = self._device.kernel("maxpool_grad") if winner.dtype == xp.uint8 else None
        if fused is not None:
            n, c, h, w = shape
            grad = xp.empty((c, n, h, w), dtype=dy.dtype, device=self._device.native)
            try:
                fused(dy, _windows.planes(xp, winner), _windows.planes(xp, grad), *self.kernel_size, *self.stride,
                      *self.padding)
                return _windows.planes(xp, grad)
            except REFUSALS:
                pass
        g = _windows.planes(xp, dy)
        return self._scatter(lambda k: xp.where(winner == k, g, 0.0), shape, out, dy.dtype)


class AvgPool2d(_Pool2d):
    """The mean of each window, as PyTorch's AvgPool2d with its defaults (count_include_pad=True, floor mode): the
    zero padding counts, so every window is divided by kh * kw.
    x: (batch, channels, H, W) -> (batch, channels, H', W'). Backward spreads dy / (kh * kw) over each window."""

    def forward(self, x):
        xp = self.xp
        out = self._prepare(x)
        p = _windows.pad_planes(xp, _windows.planes(xp, x), self.padding, 0.0, self._device.native)
        total = None
        for _, index in self._slices(out):
            total = xp.asarray(p[index], copy=True) if total is None else total + p[index]
        self._saved = (tuple(x.shape), out)
        kh, kw = self.kernel_size
        return _windows.planes(xp, total / (kh * kw))

    def backward(self, dy):
        xp = self.xp
        self._needs_forward(self._saved)
        dy = self._checked_dy(dy, self._out)
        shape, out = self._saved
        kh, kw = self.kernel_size
        g = _windows.planes(xp, dy) / (kh * kw)
        return self._scatter(lambda k: g, shape, out, dy.dtype)


class GlobalAvgPool2d(Module):
    """The mean of each channel over its whole image: (batch, channels, H, W) -> (batch, channels), ready for a
    Dense head (PyTorch writes AdaptiveAvgPool2d(1) followed by Flatten())."""

    def __init__(self, device=None):
        super().__init__(device)
        self._saved = None

    def forward(self, x):
        _check_input(self, x)
        if x.shape[2] * x.shape[3] == 0:
            raise ShapeError(f"{self!r} got images of size 0 (input shape {tuple(x.shape)}): there is nothing to "
                             "average; check the layers before it")
        self._saved = tuple(x.shape)
        self._out = ((x.shape[0], x.shape[1]), x.dtype)
        return self.xp.mean(x, axis=(2, 3))

    def backward(self, dy):
        xp = self.xp
        self._needs_forward(self._saved)
        dy = self._checked_dy(dy, self._out)
        n, c, h, w = self._saved
        spread = xp.zeros((n, c, h, w), dtype=dy.dtype, device=self._device.native)
        spread += xp.reshape(dy / (h * w), (n, c, 1, 1))
        return spread
