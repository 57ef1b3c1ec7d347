"""Residual and Concat: nested in Sequential and in each other, against the same network written in PyTorch (forward,
input gradient and every parameter's gradient); parameter names by path; input_grad=False; summary; errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import portanet as pn


def _nested(device=None, dtype=None):
    """Residual holding a Concat whose branches are a layer, a Sequential and a Residual."""
    kw = dict(device=device, dtype=dtype)
    return pn.Sequential(
        pn.Conv2d(2, 4, 3, padding=1, **kw), pn.ReLU(),
        pn.Residual(
            pn.Concat(pn.Conv2d(4, 2, 1, **kw),
                      pn.Sequential(pn.Conv2d(4, 2, 3, padding=1, **kw), pn.Tanh()),
                      pn.Residual(pn.Conv2d(4, 4, 3, padding=1, **kw), pn.ReLU())),
            pn.ReLU(), pn.Conv2d(8, 4, 1, **kw)),
        pn.MaxPool2d(2), pn.Flatten(), pn.Dense(36, 5, **kw), device=device)


NAMES = ["0.weight", "0.bias", "2.0.0.weight", "2.0.0.bias", "2.0.1.0.weight", "2.0.1.0.bias", "2.0.2.0.weight",
         "2.0.2.0.bias", "2.2.weight", "2.2.bias", "5.weight", "5.bias"]


def _torch_nested(x, p):
    h = torch.relu(F.conv2d(x, p["0.weight"], p["0.bias"], padding=1))
    a = F.conv2d(h, p["2.0.0.weight"], p["2.0.0.bias"])
    b = torch.tanh(F.conv2d(h, p["2.0.1.0.weight"], p["2.0.1.0.bias"], padding=1))
    c = h + torch.relu(F.conv2d(h, p["2.0.2.0.weight"], p["2.0.2.0.bias"], padding=1))
    f = F.conv2d(torch.relu(torch.cat([a, b, c], dim=1)), p["2.2.weight"], p["2.2.bias"])
    return F.max_pool2d(h + f, 2).flatten(1) @ p["5.weight"] + p["5.bias"]


def _randomize(model, ctx):
    rng = np.random.default_rng(3)
    for p in model.parameters():
        p.data = ctx.asarray(rng.standard_normal(p.shape) * 0.4)


def _matches_torch(model, ctx, x, torch_forward):
    """model's output, input gradient and every parameter gradient against ``torch_forward(x, params by name)``
    run by autograd on the same values."""
    y = model(x)
    dy = ctx.randn(*tuple(y.shape), seed=2)
    dx = model.backward(dy)
    tdtype = torch.float64 if ctx.dtype_name == "float64" else torch.float32
    tp = {n: torch.tensor(ctx.host(p.data), dtype=tdtype, requires_grad=True) for n, p in model.named_parameters()}
    tx = torch.tensor(ctx.host(x), dtype=tdtype, requires_grad=True)
    ty = torch_forward(tx, tp)
    ty.backward(torch.tensor(ctx.host(dy), dtype=tdtype))
    ctx.close(y, ty.detach())
    ctx.close(dx, tx.grad)
    for name, p in model.named_parameters():
        assert p.grad is not None, name                  # every path carries a gradient
        ctx.close(p.grad, tp[name].grad)


def test_nested_residual_and_concat_match_the_same_network_in_torch(ctx):
    model = _nested(ctx.device, ctx.dtype_name)
    _randomize(model, ctx)
    assert [n for n, _ in model.named_parameters()] == NAMES
    _matches_torch(model, ctx, ctx.randn(2, 2, 6, 6, seed=1), _torch_nested)


def test_nested_containers_gradcheck(ctx64):
    model = pn.Residual(pn.Concat(pn.Conv2d(2, 1, 1, device=ctx64.device, dtype="float64"),
                                  pn.Residual(pn.Conv2d(2, 2, 3, padding=1, device=ctx64.device, dtype="float64"),
                                              pn.Tanh(), device=ctx64.device),
                                  pn.Sequential(pn.Conv2d(2, 1, 3, padding=1, device=ctx64.device, dtype="float64"),
                                                pn.Sigmoid())),
                         pn.Conv2d(4, 2, 1, device=ctx64.device, dtype="float64"))
    errors = pn.gradcheck(model, ctx64.randn(1, 2, 4, 3, seed=5), tol=1e-6)
    assert set(errors) == {"input", "0.0.weight", "0.0.bias", "0.1.0.weight", "0.1.0.bias", "0.2.0.weight",
                           "0.2.0.bias", "1.weight", "1.bias"}


def test_state_dict_names_parameters_by_path_and_round_trips():
    a, b = _nested(), _nested()
    state = a.state_dict()
    assert list(state) == NAMES
    b.load_state_dict(state)
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))


def test_input_grad_false_keeps_every_parameter_gradient():
    for make in (_nested, lambda: pn.Sequential(pn.Concat(pn.Conv2d(2, 3, 1), pn.Conv2d(2, 3, 3, padding=1)),
                                               pn.Flatten(), pn.Dense(6 * 16, 3))):
        a, b = make(), make()
        b.load_state_dict(a.state_dict())
        x = np.random.default_rng(1).standard_normal((2, 2, 4, 4) if make is not _nested else (2, 2, 6, 6))
        x = x.astype(np.float32)
        dy = np.ones(a(x).shape, np.float32)
        b(x)
        assert a.backward(dy, input_grad=False) is None
        assert b.backward(dy) is not None
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            np.testing.assert_allclose(p.grad, q.grad, rtol=1e-6, err_msg=name)
    r = pn.Residual(pn.Dense(3, 3))
    r(np.ones((2, 3), np.float32))
    assert r.backward(np.ones((2, 3), np.float32), input_grad=False) is None and r[0].weight.grad is not None


def test_concat_joins_features_along_the_last_axis(ctx):
    model = pn.Concat(pn.Dense(3, 4, device=ctx.device, dtype=ctx.dtype_name),
                      pn.Sequential(pn.Dense(3, 2, device=ctx.device, dtype=ctx.dtype_name), pn.Tanh()), axis=-1)
    x = ctx.randn(5, 3, seed=3)
    y = model(x)
    assert tuple(y.shape) == (5, 6)
    w0, b0, w1, b1 = (torch.tensor(ctx.host(p.data), dtype=torch.float64) for p in model.parameters())
    tx = torch.tensor(ctx.host(x), dtype=torch.float64)
    ctx.close(y, torch.cat([tx @ w0 + b0, torch.tanh(tx @ w1 + b1)], dim=-1))
    assert pn.Concat(pn.Dense(3, 4), pn.Dense(3, 2), axis=-1).extra_repr() == "axis=-1"


def test_residual_fuses_dense_relu_pairs_as_sequential_does(standard_code):
    model = pn.Residual(pn.Dense(6, 6), pn.ReLU(), pn.Dense(6, 6))
    x = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32)
    y, dx = model(x), model.backward(np.ones((4, 6), np.float32))
    grads = [np.array(p.grad) for p in model.parameters()]
    model.zero_grad()
    standard_y, standard_dx = standard_code(lambda: (model(x), model.backward(np.ones((4, 6), np.float32))))
    np.testing.assert_array_equal(standard_y, y)
    np.testing.assert_array_equal(standard_dx, dx)
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)
    np.testing.assert_allclose(y, x + model.layers[2](model.layers[1](model.layers[0](x))), rtol=1e-6)


def test_summary_indents_the_branches_with_their_output_shapes():
    text = _nested().summary((2, 6, 6), print_fn=None)
    lines = text.splitlines()
    expected = [("Conv2d(2 -> 4, kernel_size=3, padding=1)", "(None, 4, 6, 6)"), ("Residual", "(None, 4, 6, 6)"),
                ("  Concat", "(None, 8, 6, 6)"), ("    Conv2d(4 -> 2, kernel_size=1)", "(None, 2, 6, 6)"),
                ("    Sequential", "(None, 2, 6, 6)"),
                ("      Conv2d(4 -> 2, kernel_size=3, padding=1)", "(None, 2, 6, 6)"),
                ("      Tanh()", "(None, 2, 6, 6)"), ("    Residual", "(None, 4, 6, 6)"),
                ("  Conv2d(8 -> 4, kernel_size=1)", "(None, 4, 6, 6)"), ("MaxPool2d(kernel_size=2)", "(None, 4, 3, 3)"),
                ("Flatten()", "(None, 36)"), ("Dense(36 -> 5)", "(None, 5)")]
    for label, shape in expected:
        assert any(line.startswith(label + " ") and shape in line for line in lines), (label, text)
    residual = next(line for line in lines if line.startswith("Residual"))
    assert residual.split()[-1] == f"{4 * 2 + 2 + 4 * 9 * 2 + 2 + 4 * 9 * 4 + 4 + 8 * 4 + 4:,}"
    assert f"Total parameters: {_nested().num_parameters():,}" in text
    unknown = pn.Sequential(pn.Conv2d(1, 2, 3), pn.Residual(pn.Conv2d(2, 2, 1))).summary(print_fn=None)
    assert "  Conv2d(2 -> 2, kernel_size=1)" in unknown and "?" in unknown     # no image size: shapes unknown


def test_repr_indents_every_level_of_nesting():
    model = pn.Sequential(pn.Conv2d(1, 2, 3), pn.Residual(pn.Conv2d(2, 2, 1), pn.Sequential(pn.ReLU())),
                          pn.Concat(pn.Identity(), pn.Sequential(pn.Tanh())), pn.Flatten())
    assert repr(model) == "\n".join([
        "Sequential(",
        "  Conv2d(1 -> 2, kernel_size=3),",
        "  Residual(",
        "    Conv2d(2 -> 2, kernel_size=1),",
        "    Sequential(",
        "      ReLU()",
        "    )",
        "  ),",
        "  Concat(",
        "    Identity(),",
        "    Sequential(",
        "      Tanh()",
        "    )",
        "  ),",
        "  Flatten()",
        ")"])


def test_residual_refuses_a_branch_that_changes_the_shape():
    with pytest.raises(pn.ShapeError, match=r"input of shape \(2, 4, 5, 5\) into \(2, 8, 5, 5\).*project the skip "
                                             r"path with shortcut=Conv2d\(4, 8, 1, stride=<the block's stride>\)"):
        pn.Residual(pn.Conv2d(4, 8, 3, padding=1))(np.zeros((2, 4, 5, 5), np.float32))
    with pytest.raises(pn.ShapeError, match=r"shortcut=Dense\(4, 6\)"):
        pn.Residual(pn.Dense(4, 6))(np.zeros((2, 4), np.float32))
    downsampling = pn.Residual(pn.Conv2d(4, 8, 3, stride=2, padding=1), shortcut=pn.Conv2d(4, 8, 1))
    with pytest.raises(pn.ShapeError, match=r"into \(2, 8, 3, 3\) but its shortcut into \(2, 8, 5, 5\).*stride"):
        downsampling(np.zeros((2, 4, 5, 5), np.float32))
    with pytest.raises(TypeError, match="shortcut= takes a portanet Module"):
        pn.Residual(pn.ReLU(), shortcut=lambda x: x)


def _downsampling_block(device=None, dtype=None):
    """He et al.'s basic block that halves the size and doubles the channels, its skip path projected by a strided
    1x1 convolution (option B; torchvision's BasicBlock with downsample)."""
    kw = dict(device=device, dtype=dtype)
    return pn.Residual(pn.Conv2d(3, 6, 3, stride=2, padding=1, **kw), pn.ReLU(), pn.Conv2d(6, 6, 3, padding=1, **kw),
                       shortcut=pn.Conv2d(3, 6, 1, stride=2, bias=False, **kw), device=device)


def test_a_projection_shortcut_matches_torchs_downsampling_block(ctx):
    block = _downsampling_block(ctx.device, ctx.dtype_name)
    _randomize(block, ctx)
    assert [n for n, _ in block.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias",
                                                         "shortcut.weight"]

    def torch_block(tx, tp):
        f = F.conv2d(torch.relu(F.conv2d(tx, tp["0.weight"], tp["0.bias"], stride=2, padding=1)), tp["2.weight"],
                     tp["2.bias"], padding=1)
        return f + F.conv2d(tx, tp["shortcut.weight"], stride=2)

    _matches_torch(block, ctx, ctx.randn(2, 3, 7, 6, seed=1), torch_block)


def test_a_projection_shortcut_with_batchnorm_gradchecks(ctx64):
    kw = dict(device=ctx64.device, dtype="float64")
    block = pn.Residual(pn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False, **kw), pn.BatchNorm2d(3, **kw),
                        shortcut=pn.Sequential(pn.Conv2d(2, 3, 1, stride=2, bias=False, **kw), pn.BatchNorm2d(3, **kw)))
    errors = pn.gradcheck(block, ctx64.randn(2, 2, 5, 4, seed=6))
    assert {"shortcut.0.weight", "shortcut.1.weight", "shortcut.1.bias"} <= set(errors)


def test_a_shortcut_moves_saves_and_shows_with_its_block(tmp_path):
    model = pn.Sequential(_downsampling_block(), pn.GlobalAvgPool2d(), pn.Dense(6, 2))
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    model(x)
    model.backward(np.ones((2, 2), np.float32))
    with_input = [np.array(p.grad) for p in model.parameters()]
    model.zero_grad()
    model(x)
    assert model.backward(np.ones((2, 2), np.float32), input_grad=False) is None
    for p, g in zip(model.parameters(), with_input):       # the shortcut's weight still gets its gradient
        np.testing.assert_allclose(p.grad, g, rtol=1e-6)
    pn.save(tmp_path / "m.npz", model)
    again = pn.Sequential(_downsampling_block(), pn.GlobalAvgPool2d(), pn.Dense(6, 2))
    pn.load(tmp_path / "m.npz", again)
    np.testing.assert_array_equal(again(x), model(x))
    model.to("strict:device1")
    assert model[0].shortcut.device == pn.device("strict:device1")
    assert "shortcut=Conv2d(3 -> 6, kernel_size=1, stride=2, bias=False)" in repr(model)
    rows = model.summary((3, 6, 6), print_fn=None).splitlines()
    assert any(r.strip().startswith("Conv2d(3 -> 6, kernel_size=1, stride=2, bias=False)") and "(None, 6, 3, 3)" in r
               for r in rows)


def test_concat_refuses_branches_of_different_sizes():
    with pytest.raises(pn.ShapeError, match=r"branch 0: \(2, 3, 3, 3\), branch 1: \(2, 3, 5, 5\)"):
        pn.Concat(pn.Conv2d(2, 3, 3), pn.Conv2d(2, 3, 3, padding=1))(np.zeros((2, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="non-batch axis"):
        pn.Concat(pn.Dense(2, 2), axis=0)
    with pytest.raises(TypeError, match="branch 1 is str"):
        pn.Concat(pn.Dense(2, 2), "relu")


def test_containers_refuse_one_layer_in_two_places_and_mixed_devices():
    d = pn.Dense(3, 3)
    with pytest.raises(ValueError, match="Concat got one Dense object at '0' and again at '1'"):
        pn.Concat(d, d)
    with pytest.raises(ValueError, match="one Dense object at '0' and again at '1.0'"):
        pn.Sequential(d, pn.Residual(d))
    with pytest.raises(ValueError, match="Residual got one Dense object at '0' and again at 'shortcut'"):
        pn.Residual(d, shortcut=d)
    with pytest.raises(ValueError, match="different devices"):
        pn.Concat(pn.Dense(2, 2, device="cpu"), pn.Dense(2, 2, device="strict:device1"))
    with pytest.raises(ValueError, match=r"Residual's layers are on different devices \(0: cpu, 1: strict:device1\)"):
        pn.Residual(pn.Dense(2, 2, device="cpu"), pn.Dense(2, 2, device="strict:device1"))
    with pytest.raises(ValueError, match=r"Residual's layers \(0\) and shortcut \(1\) are on different devices "
                                         r"\(0: cpu, 1: strict:device1\)"):
        pn.Residual(pn.Dense(2, 2, device="cpu"), shortcut=pn.Dense(2, 2, device="strict:device1"))
    weighted = pn.Residual(pn.ReLU(device="cpu"), shortcut=pn.Dense(2, 2, device="strict:device1"))
    assert all(m.device == pn.device("strict:device1") for m in weighted.modules())   # the weights decide
    moved = pn.Concat(pn.Dense(2, 2, device="cpu"), pn.Dense(2, 2, device="strict:device1"), device="torch:cpu")
    assert all(m.device == pn.device("torch:cpu") for m in moved.modules())
