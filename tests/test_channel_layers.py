"""Per-channel layers for images: BatchNorm2d against torch.nn.BatchNorm2d over several steps (train and eval,
running statistics), and Dropout2d's whole-channel masks."""
import numpy as np
import pytest
import torch

import portanet as pn


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm2d_running_stats_train_and_eval_match_torch(ctx, affine):
    layer = pn.BatchNorm2d(3, momentum=0.2, affine=affine, device=ctx.device, dtype=ctx.dtype_name)
    ref = torch.nn.BatchNorm2d(3, momentum=0.2, affine=affine).double()
    if affine:
        w, b = np.array([0.5, 1.5, -1.0]), np.array([0.1, -0.2, 0.3])
        layer.weight.data, layer.bias.data = ctx.asarray(w), ctx.asarray(b)
        with torch.no_grad():
            ref.weight.copy_(torch.tensor(w))
            ref.bias.copy_(torch.tensor(b))
    for step in range(4):
        x = ctx.randn(4, 3, 5, 6, seed=step, scale=2.0) + step
        tx = torch.tensor(ctx.host(x), dtype=torch.float64, requires_grad=True)
        y = layer(x)
        ty = ref(tx)
        ctx.close(y, ty.detach())
        dy = ctx.randn(4, 3, 5, 6, seed=10 + step)
        layer.zero_grad()
        dx = layer.backward(dy)
        ty.backward(torch.tensor(ctx.host(dy), dtype=torch.float64))
        ctx.close(dx, tx.grad)
        if affine:
            ctx.close(layer.weight.grad, ref.weight.grad)
            ctx.close(layer.bias.grad, ref.bias.grad)
            ref.weight.grad = ref.bias.grad = None
    ctx.close(layer.running_mean, ref.running_mean)
    ctx.close(layer.running_var, ref.running_var)           # unbiased: n = batch * height * width
    layer.eval()
    ref.eval()
    x = ctx.randn(2, 3, 4, 4, seed=9)
    ctx.close(layer(x), ref(torch.tensor(ctx.host(x), dtype=torch.float64)).detach())
    assert set(layer.state_dict()) == ({"weight", "bias"} if affine else set()) | {"running_mean", "running_var"}


def test_batchnorm2d_eval_gradcheck(ctx64):
    layer = pn.BatchNorm2d(2, device=ctx64.device, dtype="float64")
    layer.register_buffer("running_mean", ctx64.asarray(np.array([0.3, -0.2])))
    layer.register_buffer("running_var", ctx64.asarray(np.array([1.5, 0.7])))
    layer.eval()
    errors = pn.gradcheck(layer, ctx64.randn(2, 2, 3, 3, seed=1))
    assert set(errors) == {"input", "weight", "bias"}


def test_batchnorm2d_needs_two_values_per_channel_and_shares_batchnorm1d_code():
    with pytest.raises(pn.ShapeError, match=r"at least 2 values per feature.*\(1, 2, 1, 1\)"):
        pn.BatchNorm2d(2)(np.zeros((1, 2, 1, 1), np.float32))
    pn.BatchNorm2d(2)(np.zeros((1, 2, 2, 1), np.float32))          # one image of two pixels is enough
    assert issubclass(pn.BatchNorm2d, pn.BatchNorm1d.__mro__[1]) and pn.BatchNorm2d.__mro__[1] is not pn.Module
    with pytest.raises(pn.ShapeError, match=r"expects \(batch, 3, height, width\).*x.transpose\(0, 3, 1, 2\)"):
        pn.BatchNorm2d(3)(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(pn.ShapeError, match="use BatchNorm1d"):
        pn.BatchNorm2d(3)(np.zeros((2, 3), np.float32))


def test_dropout2d_zeroes_whole_channels_and_scales_the_rest(ctx):
    layer = pn.Dropout2d(0.3, seed=2, device=ctx.device)
    x = ctx.randn(64, 16, 3, 4, seed=3)
    y = ctx.host(layer(x))
    mask = ctx.host(layer._mask)
    assert mask.shape == (64, 16, 1, 1)
    np.testing.assert_allclose(np.unique(mask), [0.0, 1 / 0.7], rtol=1e-6)
    assert abs((mask != 0).mean() - 0.7) < 0.05
    np.testing.assert_allclose(y, ctx.host(x) * mask, **ctx.tol)
    dropped = mask[:, :, 0, 0] == 0
    assert (y[dropped] == 0).all() and (y[~dropped] != 0).all()     # all of a channel, or none of it
    dy = ctx.randn(64, 16, 3, 4, seed=4)
    np.testing.assert_allclose(ctx.host(layer.backward(dy)), ctx.host(dy) * mask, **ctx.tol)
    layer.eval()
    assert layer(x) is x


def test_dropout2d_seed_replays_and_gradcheck(ctx64):
    a, b = pn.Dropout2d(0.5, seed=11, device=ctx64.device), pn.Dropout2d(0.5, seed=11, device=ctx64.device)
    x = ctx64.randn(4, 6, 2, 2, seed=1)
    np.testing.assert_array_equal(ctx64.host(a(x)), ctx64.host(b(x)))
    assert pn.gradcheck(pn.Dropout2d(0.5, seed=1, device=ctx64.device), x)["input"] < 1e-8


def test_dropout2d_wants_images():
    with pytest.raises(pn.ShapeError, match=r"expects \(batch, channels, height, width\).*use Dropout"):
        pn.Dropout2d(0.2)(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        pn.Dropout2d(1.0)
