"""Every transform on (batch, H, W) and (batch, C, H, W) against a per-sample NumPy reference, on every backend:
shifts and flips exactly, rotations against a slow bilinear reference; a sample's channels move together;
channels-last batches are refused; the DataLoader converts (n, C, H, W) uint8 images as it converts (n, H, W)."""
import math
import re

import numpy as np
import pytest

import portanet as pn

SHAPES = [(24, 9, 11), (24, 3, 9, 11)]
IDS = ["BHW", "BCHW"]


def _images(ctx, shape, seed=0):
    """Distinct random values, so that no shift or flip of a sample equals another."""
    x = np.random.default_rng(seed).random(shape).astype(ctx.dtype_name)
    return x, ctx.asarray(x)


def _shifted(img, dy, dx):
    """img moved down by dy and right by dx over its last two axes, zeros shifted in: out[r, c] = img[r-dy, c-dx]."""
    h, w = img.shape[-2:]
    out = np.zeros_like(img)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_shift_moves_each_sample_whole(shape, ctx):
    x, xd = _images(ctx, shape)
    y = ctx.host(pn.RandomShift(2)(xd, ctx.device.rng(5)))
    assert y.shape == x.shape and y.dtype == x.dtype
    moves = []
    for i in range(len(x)):
        # exactly one (dy, dx) in [-2, 2]^2 gives this output, for every channel at once
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.array_equal(y[i], _shifted(x[i], dy, dx))]
        assert len(found) == 1, f"sample {i}: {found}"
        moves.append(found[0])
    assert len(set(moves)) >= 8                                   # drawn per sample: 25 moves, 24 samples
    assert pn.RandomShift(0)(xd, ctx.device.rng(5)) is xd


@pytest.mark.parametrize("axis", [-1, -2])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_flip_mirrors_whole_samples(shape, axis, ctx):
    x, xd = _images(ctx, shape)
    y = ctx.host(pn.RandomFlip(0.5, axis=axis)(xd, ctx.device.rng(3)))
    flipped = []
    for i in range(len(x)):
        mirror = np.flip(x[i], axis=axis)                        # the sample's own last or second-last axis
        assert np.array_equal(y[i], mirror) or np.array_equal(y[i], x[i]), f"sample {i} is neither"
        flipped.append(np.array_equal(y[i], mirror))
    assert 0 < sum(flipped) < len(x)
    np.testing.assert_array_equal(ctx.host(pn.RandomFlip(1.0, axis=axis)(xd, ctx.device.rng(3))),
                                  np.flip(x, axis=axis))
    np.testing.assert_array_equal(ctx.host(pn.RandomFlip(0.0, axis=axis)(xd, ctx.device.rng(3))), x)


def _rotated(img, theta):
    """The slow reference: each output pixel (r, c) reads the source at the point the inverse rotation about the
    centre takes it to, bilinearly, zero outside (float64, one pixel at a time)."""
    h, w = img.shape[-2:]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    out = np.zeros(img.shape, np.float64)
    for r in range(h):
        for c in range(w):
            sr = math.cos(theta) * (r - cy) - math.sin(theta) * (c - cx) + cy
            sc = math.sin(theta) * (r - cy) + math.cos(theta) * (c - cx) + cx
            r0, c0 = math.floor(sr), math.floor(sc)
            fr, fc = sr - r0, sc - c0
            for rr, cc, weight in ((r0, c0, (1 - fr) * (1 - fc)), (r0, c0 + 1, (1 - fr) * fc),
                                   (r0 + 1, c0, fr * (1 - fc)), (r0 + 1, c0 + 1, fr * fc)):
                if 0 <= rr < h and 0 <= cc < w:
                    out[..., r, c] += weight * img[..., rr, cc]
    return out


@pytest.mark.parametrize("shape", [(6, 9, 11), (6, 3, 9, 11)], ids=IDS)
def test_rotation_matches_a_slow_reference(shape, ctx):
    x, xd = _images(ctx, shape)
    degrees = 30.0
    y = ctx.host(pn.RandomRotation(degrees)(xd, ctx.device.rng(7)))
    # the angles the transform drew: its generator's first draw, (batch,) uniform in [-degrees, degrees]
    theta = ctx.host(ctx.device.rng(7).uniform((shape[0],), ctx.dtype, -degrees, degrees)).astype(np.float64)
    assert np.ptp(theta) > 10                                   # a different angle per sample
    for i in range(shape[0]):
        np.testing.assert_allclose(y[i], _rotated(x[i].astype(np.float64), math.radians(theta[i])),
                                   atol=2e-5 if ctx.dtype_name == "float32" else 1e-10)


def test_rotation_turns_every_channel_of_a_sample_alike(ctx):
    # a (batch, C, H, W) rotation is the (batch, H, W) rotation of each channel, with the same draws
    x, xd = _images(ctx, (8, 3, 9, 9))
    y = ctx.host(pn.RandomRotation(45)(xd, ctx.device.rng(1)))
    for ch in range(3):
        one = ctx.host(pn.RandomRotation(45)(ctx.asarray(x[:, ch]), ctx.device.rng(1)))
        np.testing.assert_allclose(y[:, ch], one, rtol=0, atol=1e-6 if ctx.dtype_name == "float32" else 1e-12)
    np.testing.assert_array_equal(ctx.host(pn.RandomRotation(0)(xd, ctx.device.rng(1))), x)


@pytest.mark.parametrize("shape", SHAPES + [(24, 32, 32, 3), (24, 784)], ids=IDS + ["BHWC", "flat"])
def test_noise_is_independent_per_value_in_any_layout(shape, ctx):
    # noise moves no pixel, so it takes channels-last and flat arrays as well
    x = ctx.asarray(np.zeros(shape, np.float32))
    y = ctx.host(pn.GaussianNoise(0.5)(x, ctx.device.rng(2)))
    assert y.shape == shape
    assert abs(y.std() - 0.5) < 0.05 and abs(y.mean()) < 0.05
    assert len(np.unique(y)) > 0.99 * y.size


@pytest.mark.parametrize("transform", [pn.RandomShift(2), pn.RandomFlip(), pn.RandomRotation(10)],
                         ids=["shift", "flip", "rotation"])
@pytest.mark.parametrize("shape", [(64, 32, 32, 3), (8, 28, 28, 1), (8, 16, 16, 4)], ids=["RGB", "grey", "RGBA"])
def test_channels_last_is_refused_not_corrupted(transform, shape, ctx):
    x = ctx.asarray(np.zeros(shape, np.float32))
    found = re.escape(str(shape))
    with pytest.raises(pn.ShapeError, match=rf"{found}, which look channels-last.*x\.transpose\(0, 3, 1, 2\)"):
        transform(x, ctx.device.rng(0))


@pytest.mark.parametrize("shape", [(8, 3, 32, 32), (8, 64, 8, 4), (8, 1, 28, 28), (8, 28, 28), (8, 4, 4, 4)])
def test_channels_first_and_small_images_are_taken(shape, ctx):
    # channels-first stays accepted: last axis not 1/3/4, or axes 1 and 2 not both 4x the last
    x, xd = _images(ctx, shape)
    y = ctx.host(pn.RandomFlip(1.0)(xd, ctx.device.rng(0)))
    np.testing.assert_array_equal(y, np.flip(x, axis=-1))


def test_compose_in_a_loader_on_chw_images(ctx):
    # the DataLoader hands the transform (batch, C, H, W) floats; a shift moves all three planes of a sample alike
    x = np.random.default_rng(0).integers(0, 256, (16, 3, 8, 8), dtype=np.uint8)
    loader = pn.DataLoader(x, np.arange(16), batch_size=8, shuffle=True, seed=4, device=ctx.device,
                           dtype=ctx.dtype_name, transform=pn.Compose(pn.RandomShift(1)))
    for xb, yb in loader:
        xb, yb = ctx.host(xb), ctx.host(yb)
        for img, i in zip(xb, yb):
            src = x[i] / 255.0
            assert any(np.allclose(img, _shifted(src, dy, dx), rtol=1e-6, atol=0)
                       for dy in (-1, 0, 1) for dx in (-1, 0, 1))


# -- the DataLoader's uint8 conversion, (n, C, H, W) as (n, H, W) ---------------------------------------------------

@pytest.mark.parametrize("shape", [(37, 5, 6), (37, 3, 5, 6)], ids=IDS)
@pytest.mark.parametrize("placement,shuffle", [("device", False), ("device", True), ("stream", False),
                                               ("stream", True)])
def test_loader_scales_uint8_images_of_any_layout(shape, placement, shuffle, ctx):
    # shuffled on a device placement, NumPy gathers and converts in one kernel (take_scale_u8); unshuffled it
    # converts a slice (scale_u8); streamed, it converts what arrives; elsewhere the standard code runs
    x = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    loader = pn.DataLoader(x, np.arange(shape[0]), batch_size=8, shuffle=shuffle, seed=9, device=ctx.device,
                           placement=placement, dtype=ctx.dtype_name)
    seen = []
    for xb, yb in loader:
        assert xb.dtype == ctx.dtype and tuple(xb.shape[1:]) == shape[1:]
        ids = ctx.host(yb)
        expected = x[ids].astype(ctx.dtype_name) * np.asarray(1 / 255, ctx.dtype_name)
        np.testing.assert_array_equal(ctx.host(xb), expected)
        seen += ids.tolist()
    assert sorted(seen) == list(range(shape[0]))
