"""Every layer: finite differences in float64 and PyTorch autograd (forward and every gradient)."""
import numpy as np
import pytest
import torch

import portanet as pn
from layer_specs import LAYERS
from torch_ref import run_torch

IDS = [spec[0] for spec in LAYERS]


def _randomize(layer, ctx, seed=7):
    """Give parameters non-trivial values (BatchNorm's ones/zeros, PReLU's constant) so every path is tested."""
    rng = np.random.default_rng(seed)
    for p in layer.parameters():
        p.data = ctx.asarray(rng.standard_normal(p.shape) * 0.5 + (0.3 if p.shape[0] <= 5 else 0.0))


@pytest.mark.parametrize("spec", LAYERS, ids=IDS)
def test_layer_gradcheck(spec, ctx64):
    name, make, _, shape = spec
    layer = make(ctx64.device, "float64")
    _randomize(layer, ctx64)
    x = ctx64.randn(*shape, seed=1)
    errors = pn.gradcheck(layer, x, tol=1e-6)
    assert set(errors) == {"input", *dict(layer.named_parameters())}
    assert max(errors.values()) < 1e-6


@pytest.mark.parametrize("spec", LAYERS, ids=IDS)
def test_layer_matches_torch(spec, ctx):
    name, make, torch_fn, shape = spec
    layer = make(ctx.device, ctx.dtype_name)
    _randomize(layer, ctx)
    x = ctx.randn(*shape, seed=2)
    y = layer(x)
    dy = ctx.randn(*tuple(y.shape), seed=3)
    dx = layer.backward(dy)
    tdtype = torch.float64 if ctx.dtype_name == "float64" else torch.float32
    params = [ctx.host(p.data) for p in layer.parameters()]
    ty, tdx, tdps = run_torch(torch_fn, ctx.host(x), ctx.host(dy), params, tdtype)
    ctx.close(y, ty)
    ctx.close(dx, tdx)
    for (pname, p), tg in zip(layer.named_parameters(), tdps):
        ctx.close(p.grad, tg)


TRAINING_DROPOUT = [("Dropout-train", lambda d, dt: pn.Dropout(0.4, seed=1, device=d), None, (6, 5)),
                    ("Dropout2d-train", lambda d, dt: pn.Dropout2d(0.4, seed=1, device=d), None, (2, 2, 4, 4))]


@pytest.mark.parametrize("spec", LAYERS + TRAINING_DROPOUT, ids=IDS + [s[0] for s in TRAINING_DROPOUT])
def test_backward_alone_refuses_a_gradient_that_is_not_its_outputs(spec, ctx):
    """Every layer's backward, called alone, takes dL/d(output) and nothing else, as Dense's and Conv2d's do: a dy
    one wider on the last axis (Dropout2d's (2, 2, 4, 5) for a (2, 2, 4, 4) output used to come back as a (2, 2, 4, 5)
    gradient), one that broadcasts (size 1 there), or one of another dtype (which upcast every gradient) is an error
    naming the fix, before any gradient is touched; the right dy then gives what it gave before."""
    name, make, _, shape = spec
    layer = make(ctx.device, ctx.dtype_name)
    y = layer(ctx.randn(*shape, seed=2))
    out = tuple(y.shape)
    other = "float64" if ctx.dtype_name == "float32" else "float32"
    wrong = {"wider": (ctx.randn(*out[:-1], out[-1] + 1, seed=3), pn.ShapeError, r"got a gradient of shape"),
             "broadcasting": (ctx.randn(*out[:-1], 1, seed=3), pn.ShapeError, r"got a gradient of shape"),
             "other dtype": (ctx.device.asarray(np.ones(out), dtype=other), TypeError, rf"got an? {other} gradient")}
    for case, (dy, exc, pattern) in wrong.items():
        with pytest.raises(exc, match=pattern + r".*model.backward\(loss_fn.backward\(\)\)"):
            layer.backward(dy)
        assert all(p.grad is None for p in layer.parameters()), case
    dy = ctx.randn(*out, seed=4)
    dx = layer.backward(dy)
    assert tuple(dx.shape) == shape and dx.dtype == ctx.dtype


def test_dropout_train_mask_matches_torch_formula(ctx):
    layer = pn.Dropout(0.25, seed=3, device=ctx.device)
    x = ctx.randn(200, 50, seed=4)
    y = ctx.host(layer(x))
    mask = ctx.host(layer._mask)
    kept = mask != 0
    np.testing.assert_allclose(np.unique(mask), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y, ctx.host(x) * mask, **ctx.tol)
    dy = ctx.randn(200, 50, seed=5)
    np.testing.assert_allclose(ctx.host(layer.backward(dy)), ctx.host(dy) * mask, **ctx.tol)


def test_dropout_train_gradcheck_replays_its_mask(ctx64):
    layer = pn.Dropout(0.5, seed=1, device=ctx64.device)
    assert pn.gradcheck(layer, ctx64.randn(4, 6))["input"] < 1e-8


def test_batchnorm_running_stats_and_eval_match_torch(ctx):
    layer = pn.BatchNorm1d(5, momentum=0.2, device=ctx.device, dtype=ctx.dtype_name)
    ref = torch.nn.BatchNorm1d(5, momentum=0.2).double()
    for seed in range(3):
        x = ctx.randn(8, 5, seed=seed, scale=2.0)
        layer(x)
        ref(torch.tensor(ctx.host(x), dtype=torch.float64))
    ctx.close(layer.running_mean, ref.running_mean)
    ctx.close(layer.running_var, ref.running_var)
    layer.eval()
    ref.eval()
    x = ctx.randn(4, 5, seed=9)
    ctx.close(layer(x), ref(torch.tensor(ctx.host(x), dtype=torch.float64)).detach())
    assert pn.gradcheck(pn.BatchNorm1d(3, dtype="float64").eval(), pn.device("cpu").asarray(
        np.random.default_rng(0).standard_normal((4, 3))))["input"] < 1e-8


def test_softmax_backward_is_the_jacobian_vector_product(ctx64):
    layer = pn.Softmax(device=ctx64.device)
    x = ctx64.randn(1, 4, seed=3)
    y = ctx64.host(layer(x))[0]
    jac = np.diag(y) - np.outer(y, y)
    dy = np.array([[0.3, -1.0, 2.0, 0.5]])
    dx = ctx64.host(layer.backward(ctx64.asarray(dy)))
    np.testing.assert_allclose(dx[0], jac.T @ dy[0], rtol=1e-12)


def test_sigmoid_is_stable_for_large_inputs(ctx):
    layer = pn.Sigmoid(device=ctx.device)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = ctx.host(layer(ctx.asarray(np.array([[-1000.0, -30.0, 0.0, 30.0, 1000.0]]))))
    np.testing.assert_allclose(y[0], [0.0, 9.357622968840175e-14, 0.5, 1.0, 1.0], rtol=1e-5, atol=0)


def test_dense_default_init_is_glorot_uniform_with_zero_bias():
    layer = pn.Dense(300, 200)
    w = pn.device("cpu").to_host(layer.weight.data)
    limit = np.sqrt(6 / 500)
    assert w.shape == (300, 200) and np.abs(w).max() <= limit
    assert abs(w.std() - limit / np.sqrt(3)) < 0.01 * limit
    assert not np.any(pn.device("cpu").to_host(layer.bias.data))


@pytest.mark.parametrize("name,var", [("he_normal", lambda i, o: 2 / i), ("glorot_normal", lambda i, o: 2 / (i + o)),
                                      ("lecun_normal", lambda i, o: 1 / i), ("he_uniform", lambda i, o: 2 / i),
                                      ("xavier_uniform", lambda i, o: 2 / (i + o))])
def test_initialisers_have_their_variance(name, var, ctx):
    w = ctx.host(pn.init.get(name)((400, 300), device=ctx.device, dtype=ctx.dtype_name))
    assert abs(w.var() / var(400, 300) - 1) < 0.03
    assert abs(w.mean()) < 0.01 * np.sqrt(var(400, 300)) * 10


def test_parameters_are_born_on_the_device():
    layer = pn.Dense(3, 2, device="strict:device1")
    assert str(layer.weight.data.device) == "array_api_strict.Device('device1')"
    assert layer.device == pn.device("strict:device1")


def test_seeded_layers_are_reproducible_across_numpy_and_strict():
    a = pn.Dense(6, 4, seed=3, dtype="float64")
    b = pn.Dense(6, 4, seed=3, dtype="float64", device="strict:device1")
    np.testing.assert_array_equal(a.state_dict()["weight"], b.state_dict()["weight"])
    assert not np.array_equal(a.state_dict()["weight"], pn.Dense(6, 4, seed=4, dtype="float64").state_dict()["weight"])
    m1, m2 = pn.Maxout(3, 2, 2, seed=1), pn.Maxout(3, 2, 2, seed=1)
    np.testing.assert_array_equal(m1.state_dict()["weight"], m2.state_dict()["weight"])
