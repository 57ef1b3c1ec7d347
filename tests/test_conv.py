"""Conv2d against torch.nn.functional.conv2d (forward, input, weight and bias gradients) over strides, paddings,
kernel sizes and shapes; finite differences in float64; initialisation fans; PyTorch state dicts; Flatten on images."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import portanet as pn
from torch_ref import run_torch

# (in, out, kernel, stride, padding, bias, input (batch, channels, height, width)): kernels 1, 3 and 5, strides 1
# and 2, paddings 0, 1 and 2, then non-square kernels, strides and paddings on non-square images
GRID = [(2, 3, k, s, p, True, (2, 2, 9, 8)) for k in (1, 3, 5) for s in (1, 2) for p in (0, 1, 2)]
GRID += [(2, 3, 3, 1, 1, False, (2, 2, 6, 7)), (2, 3, 5, 2, 0, False, (2, 2, 9, 8)),
         (3, 4, (3, 2), (2, 1), (1, 0), True, (2, 3, 7, 5)), (1, 2, (1, 4), (1, 3), (0, 2), True, (3, 1, 5, 9)),
         (2, 2, (5, 3), (3, 2), (2, 1), False, (1, 2, 11, 6))]
IDS = [f"in{c}-out{o}-k{k}-s{s}-p{p}-{'bias' if b else 'nobias'}-{'x'.join(map(str, shape))}"
       for c, o, k, s, p, b, shape in GRID]


def _conv(ctx, spec, seed=0):
    cin, cout, k, s, p, bias, _ = spec
    layer = pn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias, device=ctx.device, dtype=ctx.dtype_name,
                      seed=seed)
    if bias:
        layer.bias.data = ctx.randn(cout, seed=seed + 1, scale=0.5)
    return layer


def _torch_fn(spec):
    _, _, k, s, p, bias, _ = spec
    if bias:
        return lambda x, w, b: F.conv2d(x, w, b, stride=s, padding=p)
    return lambda x, w: F.conv2d(x, w, stride=s, padding=p)


@pytest.mark.parametrize("spec", GRID, ids=IDS)
def test_conv2d_matches_torch(spec, ctx):
    layer = _conv(ctx, spec)
    x = ctx.randn(*spec[-1], seed=2)
    y = layer(x)
    dy = ctx.randn(*tuple(y.shape), seed=3)
    dx = layer.backward(dy)
    tdtype = torch.float64 if ctx.dtype_name == "float64" else torch.float32
    ty, tdx, tgrads = run_torch(_torch_fn(spec), ctx.host(x), ctx.host(dy), [ctx.host(p.data) for p in
                                                                           layer.parameters()], tdtype)
    assert tuple(y.shape) == tuple(ty.shape)
    ctx.close(y, ty)
    ctx.close(dx, tdx)
    for p, tg in zip(layer.parameters(), tgrads):
        assert tuple(p.grad.shape) == p.shape
        ctx.close(p.grad, tg)


# finite differences cost two forward passes per input and weight element: one small image each
CHECKED = [(1, 2, 5, 2, 1, True, (1, 1, 7, 6)), (2, 2, 3, 1, 1, False, (1, 2, 4, 4)),
           (2, 2, 1, 2, 2, True, (1, 2, 4, 5)), (2, 2, (3, 2), (2, 1), (1, 0), True, (1, 2, 5, 4))]


@pytest.mark.parametrize("spec", CHECKED, ids=["k5-s2-p1", "k3-s1-p1-nobias", "k1-s2-p2", "k3x2-s2x1-p1x0"])
def test_conv2d_gradcheck(spec, ctx64):
    cin, cout, k, s, p, bias, shape = spec
    layer = _conv(ctx64, spec)
    errors = pn.gradcheck(layer, ctx64.randn(*shape, seed=4), tol=1e-6)
    assert set(errors) == {"input", "weight"} | ({"bias"} if bias else set())


def test_conv2d_output_shape_follows_pytorchs_formula():
    for h, k, s, p in [(28, 3, 1, 1), (28, 5, 2, 2), (7, 7, 1, 0), (10, 3, 3, 0), (5, 1, 2, 0)]:
        y = pn.Conv2d(1, 2, k, stride=s, padding=p)(np.zeros((1, 1, h, h), np.float32))
        assert y.shape == (1, 2, (h + 2 * p - k) // s + 1, (h + 2 * p - k) // s + 1)


def test_input_grad_false_skips_the_input_gradient_and_keeps_the_parameter_gradients(ctx):
    spec = GRID[10]
    a, b = _conv(ctx, spec), _conv(ctx, spec)
    x = ctx.randn(*spec[-1], seed=5)
    dy = ctx.randn(*tuple(a(x).shape), seed=6)
    b(x)
    assert a.backward(dy, input_grad=False) is None
    b.backward(dy)
    ctx.close(a.weight.grad, ctx.host(b.weight.grad), rtol=0, atol=0)
    ctx.close(a.bias.grad, ctx.host(b.bias.grad), rtol=0, atol=0)


def test_default_init_is_glorot_uniform_with_the_convolution_fans():
    layer = pn.Conv2d(16, 32, (3, 5), seed=0)
    w = np.asarray(layer.weight.data)
    assert w.shape == (32, 16, 3, 5) and w.dtype == np.float32
    fan_in, fan_out = 16 * 15, 32 * 15
    limit = math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    np.testing.assert_allclose(w.std(), limit / math.sqrt(3), rtol=0.03)
    np.testing.assert_array_equal(np.asarray(layer.bias.data), 0)


@pytest.mark.parametrize("init,std", [("torch_default", 1 / math.sqrt(3 * 16 * 9)), ("he_normal", math.sqrt(2 / 144)),
                                      ("glorot_normal", math.sqrt(2 / (144 + 288))),
                                      ("lecun_normal", math.sqrt(1 / 144))])
def test_named_initialisers_use_the_convolution_fans(init, std):
    w = np.asarray(pn.Conv2d(16, 32, 3, init=init, seed=1).weight.data)
    np.testing.assert_allclose(w.std(), std, rtol=0.05)
    if init == "torch_default":                          # PyTorch's own default, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        assert np.abs(w).max() <= 1 / math.sqrt(144)
        ref = torch.nn.Conv2d(16, 32, 3).weight.detach().numpy()
        np.testing.assert_allclose(ref.std(), std, rtol=0.05)


def test_seed_draws_the_same_weights_and_dense_keeps_its_fans():
    a, b = pn.Conv2d(2, 3, 3, seed=7), pn.Conv2d(2, 3, 3, seed=7)
    np.testing.assert_array_equal(np.asarray(a.weight.data), np.asarray(b.weight.data))
    w = np.asarray(pn.Dense(300, 100, seed=0).weight.data)     # 2-D: fan_in = rows, fan_out = columns, as before
    assert np.abs(w).max() <= math.sqrt(6 / 400) and np.abs(w).max() > 0.95 * math.sqrt(6 / 400)


def test_a_pytorch_state_dict_loads_without_transposing(ctx):
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(3, 5, (3, 2), stride=(1, 2), padding=1)
    layer = pn.Conv2d(3, 5, (3, 2), stride=(1, 2), padding=1, device=ctx.device, dtype=ctx.dtype_name)
    layer.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 7))
    ctx.close(layer(ctx.asarray(x)), ref(torch.tensor(x, dtype=torch.float32)).detach(), rtol=1e-4, atol=1e-5)


def test_float64_layer_and_repr():
    layer = pn.Conv2d(3, 8, 5, stride=2, padding=(2, 1), bias=False, dtype="float64")
    assert layer.weight.dtype == np.float64
    assert repr(layer) == "Conv2d(3 -> 8, kernel_size=5, stride=2, padding=(2, 1), bias=False)"
    assert repr(pn.Conv2d(1, 2, (3, 1))) == "Conv2d(1 -> 2, kernel_size=(3, 1))"
    assert pn.Conv2d(3, 8, 5).num_parameters() == 8 * 3 * 25 + 8


def test_flatten_takes_images_and_conv_outputs(ctx):
    conv = pn.Conv2d(2, 3, 3, padding=1, device=ctx.device, dtype=ctx.dtype_name)
    flat = pn.Flatten(device=ctx.device)
    x = ctx.randn(4, 2, 5, 6, seed=1)
    y = conv(x)                                          # a view of (channels, batch, ...) memory
    f = flat(y)
    assert tuple(f.shape) == (4, 90)
    np.testing.assert_array_equal(ctx.host(f), ctx.host(y).reshape(4, 90))   # channel-major within each sample
    g = ctx.randn(4, 90, seed=2)
    back = flat.backward(g)
    assert tuple(back.shape) == (4, 3, 5, 6)
    np.testing.assert_array_equal(ctx.host(back), ctx.host(g).reshape(4, 3, 5, 6))
    assert tuple(flat(x).shape) == (4, 60)


def test_flatten_refuses_one_sample_without_its_batch_axis(ctx):
    """Axis 0 is the batch (PyTorch's nn.Flatten raises here): a (784,) sample used to become (784, 1), and the next
    layer's error named a shape the user never passed."""
    model = pn.Sequential(pn.Flatten(), pn.Dense(784, 10), device=ctx.device).to(dtype=ctx.dtype_name)
    x = ctx.randn(784, seed=1)
    with pytest.raises(pn.ShapeError, match=r"^Flatten got input of shape \(784,\), one sample without a batch "
                                            r"axis.*x\[None\] or x.reshape\(1, -1\)"):
        model(x)
    assert tuple(model(ctx.xp.reshape(x, (1, 784))).shape) == (1, 10)


@pytest.mark.parametrize("case", ["transposed", "other dtype", "other batch", "the loss's value", "a number"])
def test_backward_refuses_what_is_not_its_output_gradient_as_dense_does(ctx, case):
    """Conv2d alone is a model as Dense alone is: its backward takes dL/d(output) and names the fix for anything else,
    rather than reshaping a transposed gradient of the same size into wrong gradients or upcasting every grad."""
    layer = pn.Conv2d(2, 3, 3, device=ctx.device, dtype=ctx.dtype_name, seed=0)
    layer(ctx.randn(2, 2, 5, 5, seed=1))                                   # output (2, 3, 3, 3)
    other = "float64" if ctx.dtype_name == "float32" else "float32"
    dy, exc = {"transposed": (ctx.randn(3, 3, 3, 2, seed=2), pn.ShapeError),
               "other dtype": (ctx.device.asarray(np.ones((2, 3, 3, 3)), dtype=other), TypeError),
               "other batch": (ctx.randn(1, 3, 3, 3, seed=2), pn.ShapeError),
               "the loss's value": (ctx.device.asarray(np.float32(1.0)), pn.ShapeError),
               "a number": (1.0, TypeError)}[case]
    with pytest.raises(exc, match=r"takes dL/d\(output\), an array shaped like its output \(2, 3, 3, 3\).*"
                                  r"model.backward\(loss_fn.backward\(\)\)"):
        layer.backward(dy)
    assert layer.weight.grad is None and layer.bias.grad is None            # refused before any gradient was touched
    layer.backward(ctx.randn(2, 3, 3, 3, seed=3))                           # the right call still works afterwards
    assert layer.weight.grad.dtype == ctx.dtype
