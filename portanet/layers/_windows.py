"""Sliding windows over images, shared by Conv2d and the pooling layers: argument pairs, output sizes, padding,
and im2col / col2im as loops over the kernel offsets (the definition; backends may override them, see
backends/kernels.py).

Images are (batch, channels, height, width). Internally the window code works on channel-major planes
(channels, batch, height, width): a conv's GEMM then reads and writes whole planes, its output
(out_channels, batch, H', W') is handed on as a permuted view in the (batch, channels, H', W') order the API
promises, and the next layer's ``permute_dims(x, (1, 0, 2, 3))`` gets the planes back without a copy. Elementwise
layers in between (ReLU) keep that memory order, as NumPy and PyTorch do for any dense array.
"""
from __future__ import annotations

from ..backends.kernels import REFUSALS
from ..errors import ShapeError
from .._numbers import is_int
from ..module import check_float, empty_batch


def pair(value, name, owner, minimum):
    """An int or a pair of ints, each >= minimum -> (a, b). ValueError naming the fix otherwise."""
    items = (value, value) if is_int(value) else value
    ok = isinstance(items, (tuple, list)) and len(items) == 2 and all(is_int(v) and v >= minimum for v in items)
    if not ok:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{owner} {name} must be {what} or a pair of them (height, width), got {value!r}")
    return int(items[0]), int(items[1])


def show(p):
    """A pair as its repr shows it: 3 for (3, 3), (3, 5) otherwise."""
    return str(p[0]) if p[0] == p[1] else str(p)


def check_images(layer, x, dtype, channels=None):
    """x must be a float (batch, channels, height, width) batch of ``dtype`` (and ``channels`` channels when given).
    Raises ShapeError / TypeError that say what was found and the fix."""
    shape = tuple(x.shape)
    if x.ndim != 4:
        if x.ndim == 3:
            fix = ("for a batch of single-channel images (batch, height, width) add the channel axis: x[:, None] "
                   "(or xp.reshape(x, (n, 1, h, w)))")
        elif x.ndim == 2:
            fix = "flat rows must be reshaped to images first (xp.reshape(x, (n, channels, height, width)))"
        else:
            fix = "give it a batch of images"
        raise ShapeError(f"{layer!r} got input of shape {shape}; it expects (batch, channels, height, width): {fix}")
    if shape[0] == 0:
        raise empty_batch(layer, x)
    if channels is not None and shape[1] != channels:
        if shape[3] == channels:
            raise ShapeError(f"{layer!r} got input of shape {shape}, with {shape[1]} channels on axis 1; the layout "
                             f"expected is (batch, channels, height, width) with {channels} channels: these look "
                             f"like channels-last images, so move the channels to axis 1 with x.transpose(0, 3, 1, 2) "
                             f"(xp.permute_dims(x, (0, 3, 1, 2)))")
        raise ShapeError(f"{layer!r} got input of shape {shape}, with {shape[1]} channels on axis 1; it expects "
                         f"(batch, {channels}, height, width): check in_channels against the previous layer's "
                         f"out_channels or the data's channel count")
    if x.dtype != dtype:
        check_float(layer, x, dtype)


def out_size(layer, x, kernel, stride, padding):
    """(H', W') = floor((H + 2p - k) / s) + 1 per axis. ShapeError when the kernel exceeds the padded input."""
    sizes = []
    for axis, k, s, p in zip((2, 3), kernel, stride, padding):
        n = x.shape[axis] + 2 * p
        if k > n:
            raise ShapeError(f"{layer!r} got images of {x.shape[2]}x{x.shape[3]} (input shape {tuple(x.shape)}); "
                             f"its {kernel[0]}x{kernel[1]} kernel with padding {padding} needs at least "
                             f"{kernel[0] - 2 * padding[0]}x{kernel[1] - 2 * padding[1]}: use a smaller kernel, more "
                             f"padding, or fewer pooling layers before it")
        sizes.append((n - k) // s + 1)
    return tuple(sizes)


def planes(xp, x):
    """(batch, channels, h, w) -> (channels, batch, h, w): a view; free when x came from another window layer."""
    return xp.permute_dims(x, (1, 0, 2, 3))


def pad_planes(xp, p, padding, value, device):
    """Planes (C, N, H, W) padded by ``padding`` = (ph, pw) with ``value`` on every side (the standard has no pad:
    a filled array and a slice assignment)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return p
    c, n, h, w = p.shape
    out = xp.full((c, n, h + 2 * ph, w + 2 * pw), value, dtype=p.dtype, device=device)
    out[:, :, ph:ph + h, pw:pw + w] = p
    return out


def window(kernel_offset, stride, out):
    """The slice of a padded axis that kernel offset ``kernel_offset`` sees for each of the ``out`` outputs."""
    return slice(kernel_offset, kernel_offset + stride * (out - 1) + 1, stride)


def im2col(dev, x, kernel, stride, padding, out):
    """Columns of x for a convolution: (C * kh * kw, N * H' * W'), row (c, i, j) holding, for every output position
    (n, h, w), the input x[n, c, h * sh + i - ph, w * sw + j - pw] (0 in the padding). One strided slice copy per
    kernel offset (kh * kw of them); the backend's ``im2col`` kernel where it has one (the same values)."""
    xp = dev.xp
    kh, kw = kernel
    ho, wo = out
    n, c = x.shape[0], x.shape[1]
    fused = dev.kernel("im2col")
    if fused is not None:
        cols = xp.empty((c * kh * kw, n * ho * wo), dtype=x.dtype, device=dev.native)
        try:
            fused(x, cols, kh, kw, *stride, *padding)
            return cols
        except REFUSALS:
            pass
    p = pad_planes(xp, planes(xp, x), padding, 0.0, dev.native)
    cols = xp.empty((c, kh, kw, n, ho, wo), dtype=x.dtype, device=dev.native)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j, :, :, :] = p[:, :, window(i, stride[0], ho), window(j, stride[1], wo)]
    return xp.reshape(cols, (c * kh * kw, n * ho * wo))


def col2im(dev, cols, shape, kernel, stride, padding, out):
    """The adjoint of im2col: (C * kh * kw, N * H' * W') columns summed back into images of ``shape`` (N, C, H, W),
    each kernel offset's slice added, in offset order, onto zeros where im2col read it (the backend's ``col2im``
    kernel where it has one: the same sums in the same order). Returns (N, C, H, W) as a view of channel-major
    planes."""
    xp = dev.xp
    n, c, h, w = shape
    kh, kw = kernel
    ph, pw = padding
    ho, wo = out
    fused = dev.kernel("col2im")
    if fused is not None:
        grad = xp.empty((c, n, h, w), dtype=cols.dtype, device=dev.native)
        try:
            fused(cols, planes(xp, grad), kh, kw, *stride, *padding)
            return planes(xp, grad)
        except REFUSALS:
            pass
    cols = xp.reshape(cols, (c, kh, kw, n, ho, wo))
    grad = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype, device=dev.native)
    for i in range(kh):
        for j in range(kw):
            grad[:, :, window(i, stride[0], ho), window(j, stride[1], wo)] += cols[:, i, j, :, :, :]
    if ph or pw:
        grad = grad[:, :, ph:ph + h, pw:pw + w]
    return planes(xp, grad)
