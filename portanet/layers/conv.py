"""2-D convolution as im2col followed by one GEMM."""
from __future__ import annotations

from .. import init as initializers
from ..module import Module, Parameter
from . import _windows
from .dense import _positive


class Conv2d(Module):
    """Cross-correlation, as PyTorch's Conv2d:
    y[n, o, h, w] = b[o] + sum_{c, i, j} W[o, c, i, j] * x[n, c, h * sh + i - ph, w * sw + j - pw] (0 outside x).

    x: (batch, in_channels, H, W) -> y: (batch, out_channels, H', W'), H' = floor((H + 2 ph - kh) / sh) + 1
    (likewise W'). ``kernel_size``, ``stride``, ``padding``: an int or a (height, width) pair; zero padding.
    weight: (out_channels, in_channels, kh, kw) (PyTorch's layout: its state dicts load without transposing);
    bias: (out_channels,), zeros.

    Initialisation: ``init`` (default "glorot_uniform") with a convolution's fans, fan_in = in_channels * kh * kw
    and fan_out = out_channels * kh * kw (portanet/init.py), the default of Dense here and of Keras' Conv2D: one
    rule across portanet's layers, and for the ReLU networks CNNs usually are it starts closer to He's variance than
    PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which ``init="torch_default"`` gives (the bias stays
    zero). ``seed`` draws the weight from its own generator.

    Computed as im2col (the columns (in_channels * kh * kw, batch * H' * W'), one strided copy per kernel offset)
    then one GEMM, W (out, in * kh * kw) @ columns; the output is a view of the (out_channels, batch, H', W') product
    (layers/_windows.py says why). Backward: dW += dY @ columns.T (through Parameter.accumulate_product), db = dY
    summed per channel, and dx = col2im(W.T @ dY). The columns are kept from forward to backward.
    Errors: ShapeError for input that is not (batch, in_channels, H, W) (channels-last images say so) or smaller
    than the kernel; ValueError for sizes, strides < 1 or padding < 0.
    """

    can_skip_input_grad = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, init=None,
                 device=None, dtype=None, seed=None):
        in_channels = _positive("in_channels", in_channels, "Conv2d")
        out_channels = _positive("out_channels", out_channels, "Conv2d")
        kernel = _windows.pair(kernel_size, "kernel_size", "Conv2d", 1)
        stride = _windows.pair(stride, "stride", "Conv2d", 1)
        padding = _windows.pair(padding, "padding", "Conv2d", 0)
        super().__init__(device)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel, stride, padding
        dt = self._device.dtype(dtype)
        draw = initializers.get(init or "glorot_uniform")
        rng = None if seed is None else self._device.rng(seed)
        shape = (out_channels, in_channels, *kernel)
        self.weight = Parameter(draw(shape, device=self._device, dtype=dt, rng=rng))
        self.bias = Parameter(initializers.zeros((out_channels,), device=self._device, dtype=dt)) if bias else None
        self._saved = None

    def forward(self, x):
        y, out = self.product(x)
        if self.bias is not None:
            y += self.bias.data[:, None]          # one bias per output channel: a row of the product
        return self.images(y, x.shape[0], out)

    def product(self, x):
        """Check x, keep its columns for backward, and return (W @ columns, (H', W')): the (out_channels,
        N * H' * W') product before the bias, this layer's own array (safe to update in place)."""
        xp = self.xp
        w = self.weight.data
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.dtype != w.dtype or x.shape[0] == 0:
            _windows.check_images(self, x, w.dtype, self.in_channels)
        out = _windows.out_size(self, x, self.kernel_size, self.stride, self.padding)
        cols = _windows.im2col(self._device, x, self.kernel_size, self.stride, self.padding, out)
        self._saved = (cols, tuple(x.shape), out)
        return xp.matmul(xp.reshape(w, (self.out_channels, cols.shape[0])), cols), out

    def images(self, y, n, out):
        """(out_channels, N * H' * W') -> (N, out_channels, H', W'), a permuted view (layers/_windows.py says why)."""
        xp = self.xp
        return xp.permute_dims(xp.reshape(y, (self.out_channels, n, *out)), (1, 0, 2, 3))

    def backward(self, dy, input_grad=True):
        """dW += dY @ columns.T, db += dY summed over positions; returns col2im(W.T @ dY) (None with
        input_grad=False). dy: (batch, out_channels, H', W') for the last forward's batch, in its dtype, on this
        layer's device; anything else raises a portanet error naming model.backward(loss_fn.backward())
        (module.check_gradient), as Dense's backward does."""
        xp = self.xp
        self._needs_forward(self._saved)
        cols, shape, out = self._saved
        want = (shape[0], self.out_channels, *out)
        dy = self._checked_dy(dy, (want, cols.dtype))
        # free when dy is the (out, N, H', W') memory this layer produced, passed through elementwise layers
        g = xp.reshape(_windows.planes(xp, dy), (self.out_channels, cols.shape[1]))   # dY: (out, N * H' * W')
        if self.bias is not None:
            self.bias.accumulate_sum(g, axis=1)
        return self.backward_rows(g, input_grad)

    def backward_rows(self, g, input_grad=True):
        """The weight gradient and dx from dY as rows (out_channels, N * H' * W') (backward's second half, after the
        bias gradient)."""
        xp = self.xp
        cols, shape, out = self._saved
        self.weight.accumulate_product(g.T, cols.T)
        if not input_grad:
            return None
        w = xp.reshape(self.weight.data, (self.out_channels, cols.shape[0]))
        return _windows.col2im(self._device, xp.matmul(w.T, g), shape, self.kernel_size, self.stride, self.padding,
                               out)

    def extra_repr(self):
        parts = [f"{self.in_channels} -> {self.out_channels}", f"kernel_size={_windows.show(self.kernel_size)}"]
        if self.stride != (1, 1):
            parts.append(f"stride={_windows.show(self.stride)}")
        if self.padding != (0, 0):
            parts.append(f"padding={_windows.show(self.padding)}")
        if self.bias is None:
            parts.append("bias=False")
        return ", ".join(parts)
