"""Data augmentation that runs on the device, one batch at a time, in the Array API.

A transform is ``t(x, rng) -> x`` for float images x: (batch, height, width) or (batch, channels, height,
width), channels first, and a device Generator rng. Give them to a training DataLoader: ``transform=Compose(
RandomShift(2), RandomRotation(10))``; it converts uint8 images to floats before the transform. Every sample gets
its own random draw, the same for all of its channels; nothing is looped over in Python.

Channels-last batches (batch, height, width, channels) are refused, not transformed: flipping or shifting their
last two axes would move colour channels instead of pixels. A 4-D batch counts as channels-last when its last
axis is 1, 3 or 4 (grey, RGB, RGBA) and its axes 1 and 2 are both at least 4 times that (images of 4 x 4 pixels
and up): (64, 32, 32, 3) is refused, (64, 3, 32, 32) and (64, 64, 8, 4) are taken as channels-first. The fix
is one transpose on the host, before the DataLoader: ``x.transpose(0, 3, 1, 2)``.
"""
from __future__ import annotations

import math

import array_api_compat

from ._numbers import is_int
from .errors import ShapeError

_CHANNEL_COUNTS = (1, 3, 4)


def _looks_channels_last(shape):
    """Whether the last axis of (..., a, b, c) reads as colour channels: c in 1/3/4, a and b much larger."""
    c = shape[-1]
    return c in _CHANNEL_COUNTS and min(shape[-3], shape[-2]) >= 4 * c


def _images(name, x):
    """The namespace of a float image batch x, (batch, H, W) or (batch, C, H, W); a clear error otherwise."""
    shape = tuple(x.shape)
    if x.ndim < 3:
        raise ShapeError(f"{name} needs images shaped (batch, height, width), got {shape}: keep the "
                         "images 2-D in the DataLoader and put Flatten() first in the model")
    if x.ndim > 4:
        raise ShapeError(f"{name} needs images shaped (batch, height, width) or (batch, channels, height, width), "
                         f"got {shape}: fold the extra axes into the batch or the channels first")
    if _looks_channels_last(shape):
        if x.ndim == 4:
            raise ShapeError(f"{name} got images of shape {shape}, which look channels-last (batch, height, width, "
                             f"channels={shape[-1]}); transforms take channels first, (batch, channels, height, "
                             "width): transpose them on the host before the DataLoader (x.transpose(0, 3, 1, 2))")
        raise ShapeError(f"{name} got an array of shape {shape}, which looks like one channels-last image (height, "
                         f"width, channels={shape[-1]}); transforms take a batch (batch, channels, height, width): "
                         "x.transpose(2, 0, 1)[None], and before the DataLoader x.transpose(0, 3, 1, 2)")
    return _require_float(name, x)


def _require_float(name, x):
    xp = array_api_compat.array_namespace(x)
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name} needs float images, got {x.dtype}: the DataLoader converts uint8 images "
                        "(scaled by 1/255) before its transform; called by hand, convert first "
                        "(x.astype(float32) / 255)")
    return xp


def _per_sample(xp, v, x):
    """(batch,) -> (batch, 1, ..., 1) to broadcast over x's remaining axes."""
    return xp.reshape(v, (x.shape[0],) + (1,) * (x.ndim - 1))


def _gather(xp, x, rows, cols):
    """x[b, ..., rows[b, i, j], cols[b, i, j]] with zeros outside the image.   rows, cols: (batch, H, W) int."""
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    valid = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    rows, cols = xp.clip(rows, 0, h - 1), xp.clip(cols, 0, w - 1)
    dev = array_api_compat.device(x)
    base = xp.reshape(xp.arange(b, dtype=xp.int64, device=dev) * (h * w), (b, 1, 1))
    flat_index = base + rows * w + cols                                   # (b, h, w)
    lead = x.shape[1:-2]
    planes = xp.reshape(x, (b, -1, h * w)) if lead else xp.reshape(x, (b, 1, h * w))
    planes = xp.permute_dims(planes, (1, 0, 2))                           # (c, b, h*w)
    c = planes.shape[0]
    flat = xp.reshape(planes, (c, b * h * w))
    picked = xp.take(flat, xp.reshape(flat_index, (-1,)), axis=1)          # (c, b*h*w)
    picked = xp.permute_dims(xp.reshape(picked, (c, b, h, w)), (1, 0, 2, 3))
    picked = xp.where(valid[:, None, :, :], picked, 0.0)
    return xp.reshape(picked, x.shape)


def _grid(xp, x):
    h, w = x.shape[-2], x.shape[-1]
    dev = array_api_compat.device(x)
    i = xp.reshape(xp.arange(h, dtype=xp.int64, device=dev), (1, h, 1))
    j = xp.reshape(xp.arange(w, dtype=xp.int64, device=dev), (1, 1, w))
    return i, j


class RandomShift:
    """Translate each image by whole pixels, independently in each direction, up to ``pixels``;
    what is shifted in is zero."""

    def __init__(self, pixels=2):
        if not is_int(pixels) or pixels < 0:
            raise ValueError(f"RandomShift pixels must be a non-negative int, got {pixels!r}")
        self.pixels = int(pixels)

    def __call__(self, x, rng):
        xp = _images("RandomShift", x)
        if self.pixels == 0:
            return x
        b, span = x.shape[0], 2 * self.pixels + 1
        dt = x.dtype
        dy = xp.astype(xp.floor(rng.uniform((b,), dt, 0.0, span)), xp.int64) - self.pixels
        dx = xp.astype(xp.floor(rng.uniform((b,), dt, 0.0, span)), xp.int64) - self.pixels
        dy = xp.minimum(dy, self.pixels)   # uniform's upper end is open, but guard float rounding
        dx = xp.minimum(dx, self.pixels)
        i, j = _grid(xp, x)
        return _gather(xp, x, i - xp.reshape(dy, (b, 1, 1)), j - xp.reshape(dx, (b, 1, 1)))

    def __repr__(self):
        return f"RandomShift({self.pixels})"


class RandomRotation:
    """Rotate each image about its centre by an angle drawn uniformly from [-degrees, degrees],
    with bilinear interpolation and zeros outside."""

    def __init__(self, degrees=10.0):
        if degrees < 0:
            raise ValueError(f"RandomRotation degrees must be non-negative, got {degrees}")
        self.degrees = float(degrees)

    def __call__(self, x, rng):
        xp = _images("RandomRotation", x)
        if self.degrees == 0:
            return x
        b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        dt = x.dtype
        theta = rng.uniform((b,), dt, -self.degrees, self.degrees) * (math.pi / 180.0)
        cos, sin = xp.reshape(xp.cos(theta), (b, 1, 1)), xp.reshape(xp.sin(theta), (b, 1, 1))
        i, j = _grid(xp, x)
        yi = xp.astype(i, dt) - (h - 1) / 2.0
        xj = xp.astype(j, dt) - (w - 1) / 2.0
        # inverse map: where in the source does each output pixel come from
        src_r = cos * yi - sin * xj + (h - 1) / 2.0
        src_c = sin * yi + cos * xj + (w - 1) / 2.0
        r0, c0 = xp.floor(src_r), xp.floor(src_c)
        fr, fc = src_r - r0, src_c - c0
        r0, c0 = xp.astype(r0, xp.int64), xp.astype(c0, xp.int64)
        out = 0.0
        for dr, dc, wgt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)),
                            (1, 1, fr * fc)):
            val = _gather(xp, x, r0 + dr, c0 + dc)
            wgt = wgt[:, None, :, :] if x.ndim == 4 else wgt
            out = out + val * wgt
        return out

    def __repr__(self):
        return f"RandomRotation({self.degrees})"


class RandomFlip:
    """Mirror each image left-right (axis=-1) or top-bottom (axis=-2) with probability p."""

    def __init__(self, p=0.5, axis=-1):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomFlip p must be in [0, 1], got {p}")
        if axis not in (-1, -2):
            raise ValueError("RandomFlip axis must be -1 (left-right) or -2 (top-bottom)")
        self.p, self.axis = float(p), axis

    def __call__(self, x, rng):
        xp = _images("RandomFlip", x)
        flip = rng.bernoulli((x.shape[0],), self.p, x.dtype) > 0.5
        return xp.where(_per_sample(xp, flip, x), xp.flip(x, axis=self.axis), x)

    def __repr__(self):
        return f"RandomFlip(p={self.p}, axis={self.axis})"


class GaussianNoise:
    """Add N(0, std^2) noise to every value, drawn independently: any float array (images in either layout,
    or flat features), since noise moves no pixel."""

    def __init__(self, std=0.05):
        if std < 0:
            raise ValueError(f"GaussianNoise std must be non-negative, got {std}")
        self.std = float(std)

    def __call__(self, x, rng):
        _require_float("GaussianNoise", x)
        if self.std == 0:
            return x
        return x + rng.normal(tuple(x.shape), x.dtype, 0.0, self.std)

    def __repr__(self):
        return f"GaussianNoise({self.std})"


class Compose:
    """Apply transforms in order."""

    def __init__(self, *transforms):
        if len(transforms) == 1 and isinstance(transforms[0], (list, tuple)):
            transforms = tuple(transforms[0])
        self.transforms = transforms

    def __call__(self, x, rng):
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __repr__(self):
        return f"Compose({', '.join(map(repr, self.transforms))})"
