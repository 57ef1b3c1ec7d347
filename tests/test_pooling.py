"""MaxPool2d, AvgPool2d and GlobalAvgPool2d against torch.nn.functional (forward and input gradient) with and without
stride and padding; ties, NaN and large windows as PyTorch treats them; finite differences in float64."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import portanet as pn
from torch_ref import run_torch

# (kernel, stride, padding, input shape): stride None is the kernel (PyTorch's default)
POOLS = [(2, None, 0, (2, 3, 8, 6)), (2, None, 1, (2, 3, 7, 5)), (3, None, 0, (2, 2, 9, 7)), (3, 1, 1, (2, 2, 6, 5)),
         (3, 2, 1, (2, 2, 7, 8)), (2, 1, 0, (1, 2, 5, 6)), ((3, 2), (2, 1), (1, 0), (2, 2, 7, 5)),
         ((1, 4), (1, 3), (0, 2), (1, 3, 4, 10))]
IDS = [f"k{k}-s{s}-p{p}" for k, s, p, _ in POOLS]


def _compare(ctx, layer, fn, x_host, seed=3):
    x = ctx.asarray(x_host)
    y = layer(x)
    dy = ctx.randn(*tuple(y.shape), seed=seed)
    dx = layer.backward(dy)
    tdtype = torch.float64 if ctx.dtype_name == "float64" else torch.float32
    ty, tdx, _ = run_torch(fn, x_host, ctx.host(dy), [], tdtype)
    assert tuple(y.shape) == tuple(ty.shape)
    ctx.close(y, ty)
    ctx.close(dx, tdx)
    return y, dx


@pytest.mark.parametrize("spec", POOLS, ids=IDS)
def test_max_pool_matches_torch(spec, ctx):
    k, s, p, shape = spec
    x = np.random.default_rng(1).standard_normal(shape)
    _compare(ctx, pn.MaxPool2d(k, s, p, device=ctx.device), lambda t: F.max_pool2d(t, k, s, p), x)


@pytest.mark.parametrize("spec", POOLS, ids=IDS)
def test_avg_pool_matches_torch_counting_the_padding(spec, ctx):
    k, s, p, shape = spec
    x = np.random.default_rng(2).standard_normal(shape)
    _compare(ctx, pn.AvgPool2d(k, s, p, device=ctx.device), lambda t: F.avg_pool2d(t, k, s, p), x)


def test_max_pool_ties_go_to_the_first_largest_value_as_in_torch(ctx):
    # small integers: most windows hold ties, and overlapping windows (stride 1) share their winners
    x = np.random.default_rng(3).integers(0, 3, (2, 2, 7, 6)).astype(float)
    for k, s, p in [(2, 2, 0), (3, 1, 1), (2, 1, 1)]:
        _compare(ctx, pn.MaxPool2d(k, s, p, device=ctx.device), lambda t: F.max_pool2d(t, k, s, p), x)
    _, dx = _compare(ctx, pn.MaxPool2d(2, device=ctx.device), lambda t: F.max_pool2d(t, 2), np.zeros((1, 1, 2, 2)))
    np.testing.assert_array_equal(ctx.host(dx)[0, 0] != 0, [[True, False], [False, False]])


def test_max_pool_propagates_nan_as_torch_does(ctx):
    x = np.random.default_rng(4).standard_normal((1, 2, 6, 6))
    x[0, 0, 1, 1] = x[0, 1, 4, 5] = np.nan
    y = ctx.host(pn.MaxPool2d(3, 2, 1, device=ctx.device)(ctx.asarray(x)))
    ref = F.max_pool2d(torch.tensor(x), 3, 2, 1).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert np.isnan(y).sum() == 5                   # four windows overlap (1, 1), one holds (4, 5)
    np.testing.assert_allclose(y[~np.isnan(y)], ref[~np.isnan(ref)], rtol=1e-6)


def test_max_pool_over_windows_of_more_than_256_values(ctx):
    x = np.random.default_rng(5).standard_normal((2, 2, 18, 17))
    layer = pn.MaxPool2d(17, stride=1, device=ctx.device)
    _compare(ctx, layer, lambda t: F.max_pool2d(t, 17, 1), x)
    assert layer._saved[0].dtype == ctx.xp.int32


@pytest.mark.parametrize("make,fn", [
    (lambda d: pn.MaxPool2d(2, device=d), lambda t: F.max_pool2d(t, 2)),
    (lambda d: pn.MaxPool2d(3, 1, 1, device=d), lambda t: F.max_pool2d(t, 3, 1, 1)),
    (lambda d: pn.AvgPool2d((2, 3), (1, 2), (1, 1), device=d), lambda t: F.avg_pool2d(t, (2, 3), (1, 2), (1, 1))),
    (lambda d: pn.GlobalAvgPool2d(device=d), lambda t: t.mean(dim=(2, 3)))],
    ids=["max", "max-overlap", "avg", "global"])
def test_pool_gradcheck(make, fn, ctx64):
    errors = pn.gradcheck(make(ctx64.device), ctx64.randn(2, 2, 5, 4, seed=6), tol=1e-6)
    assert list(errors) == ["input"] and errors["input"] < 1e-7


def test_global_average_pool_matches_torch(ctx):
    x = np.random.default_rng(7).standard_normal((3, 4, 5, 6))
    y, dx = _compare(ctx, pn.GlobalAvgPool2d(device=ctx.device), lambda t: t.mean(dim=(2, 3)), x)
    assert tuple(y.shape) == (3, 4)


def test_pooling_follows_a_conv_output_and_defaults(ctx):
    conv = pn.Conv2d(2, 3, 3, padding=1, device=ctx.device, dtype=ctx.dtype_name, seed=0)
    pool = pn.MaxPool2d(2, device=ctx.device)
    x = ctx.randn(2, 2, 6, 6, seed=8)
    y = pool(conv(x))                                  # the conv's output is a view of channel-major memory
    ref = F.max_pool2d(torch.tensor(ctx.host(conv(x))), 2)
    ctx.close(y, ref)
    assert pool.stride == (2, 2) and pool.padding == (0, 0)
    assert repr(pn.MaxPool2d(3, 2, 1)) == "MaxPool2d(kernel_size=3, stride=2, padding=1)"
    assert repr(pn.AvgPool2d((2, 1))) == "AvgPool2d(kernel_size=(2, 1))"


@pytest.mark.parametrize("cls", [pn.MaxPool2d, pn.AvgPool2d])
def test_padding_beyond_half_the_kernel_is_refused_as_in_torch(cls):
    with pytest.raises(ValueError, match=r"padding \(2, 2\) must be at most half the kernel \(3, 3\)"):
        cls(3, padding=2)
    with pytest.raises(ValueError, match="stride must be a positive int"):
        cls(2, stride=0)
