"""Module mechanics: parameters, modes, devices, state dicts, summaries and the errors users meet."""
import numpy as np
import pytest

import portanet as pn


def mlp(device=None, dtype=None):
    return pn.Sequential(pn.Dense(4, 8, device=device, dtype=dtype), pn.ReLU(device=device),
                         pn.Dropout(0.2, device=device), pn.BatchNorm1d(8, device=device, dtype=dtype),
                         pn.Dense(8, 3, device=device, dtype=dtype), device=device)


def test_named_parameters_and_buffers():
    m = mlp()
    assert [n for n, _ in m.named_parameters()] == ["0.weight", "0.bias", "3.weight", "3.bias", "4.weight", "4.bias"]
    assert [n for n, _ in m.named_buffers()] == ["3.running_mean", "3.running_var"]
    assert m.num_parameters() == 4 * 8 + 8 + 8 + 8 + 8 * 3 + 3
    assert list(m.state_dict()) == [n for n, _ in m.named_parameters()] + ["3.running_mean", "3.running_var"]


def test_train_eval_and_zero_grad(ctx):
    m = mlp(ctx.device, ctx.dtype_name)
    x = ctx.randn(5, 4)
    m(x)
    m.backward(ctx.randn(5, 3))
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m.eval()
    assert not any(layer.training for layer in m.modules())
    np.testing.assert_array_equal(ctx.host(m(x)), ctx.host(m(x)))  # eval: no dropout, running stats
    m.train()
    assert all(layer.training for layer in m.modules())


def test_backward_accumulates_until_zero_grad(ctx):
    layer = pn.Dense(3, 2, device=ctx.device, dtype=ctx.dtype_name)
    x, dy = ctx.randn(4, 3), ctx.randn(4, 2, seed=1)
    layer(x)
    layer.backward(dy)
    once = ctx.host(layer.weight.grad).copy()
    layer(x)
    layer.backward(dy)
    np.testing.assert_allclose(ctx.host(layer.weight.grad), 2 * once, **ctx.tol)


def test_input_grad_false_skips_the_first_gemm():
    m = pn.Sequential(pn.Dense(3, 2), pn.ReLU())
    m(pn.device("cpu").asarray(np.ones((2, 3)), dtype="float32"))
    assert m.backward(pn.device("cpu").asarray(np.ones((2, 2)), dtype="float32"), input_grad=False) is None
    assert m[0].weight.grad is not None


@pytest.mark.parametrize("target", ["strict:device1", "torch:cpu", "cpu"])
def test_to_moves_everything_and_state_is_device_neutral(target):
    src = mlp("strict:device1")
    x_host = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    src.eval()
    y_src = src.device.to_host(src(src.device.asarray(x_host)))
    state = src.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    dst = mlp(target).load_state_dict(state).eval()
    np.testing.assert_allclose(dst.device.to_host(dst(dst.device.asarray(x_host))), y_src, rtol=1e-5, atol=1e-6)
    moved = src.to(target)
    assert moved.device == pn.device(target)
    assert all(moved.device.holds(p.data) for p in moved.parameters())
    assert all(moved.device.holds(b) for _, b in moved.named_buffers())
    np.testing.assert_allclose(moved.device.to_host(moved(moved.device.asarray(x_host))), y_src, rtol=1e-5, atol=1e-6)


def test_to_dtype_casts_parameters():
    m = mlp().to(dtype="float64")
    assert all(p.data.dtype == np.float64 for p in m.parameters())


def test_load_state_dict_names_the_mismatch_and_changes_nothing():
    m = mlp()
    before = m.state_dict()
    wrong = pn.Sequential(pn.Dense(4, 9), pn.ReLU(), pn.Dropout(0.2), pn.BatchNorm1d(9), pn.Dense(9, 3)).state_dict()
    with pytest.raises(pn.CheckpointError, match=r"'0.weight' has shape \(4, 9\).*\(4, 8\)"):
        m.load_state_dict(wrong)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(pn.CheckpointError, match="missing"):
        m.load_state_dict({"0.weight": before["0.weight"]})


def test_summary_lists_layers_shapes_and_counts():
    m = pn.Sequential(pn.Flatten(), pn.Dense(784, 100), pn.Sigmoid(), pn.Dense(100, 10))
    text = m.summary((28, 28), print_fn=None)
    assert "Dense(784 -> 100)" in text and "(None, 784)" in text and "(None, 10)" in text
    assert "78,500" in text and "Total parameters: 79,510" in text


def test_sequential_refuses_mixed_devices():
    with pytest.raises(ValueError, match="different devices"):
        pn.Sequential(pn.Dense(2, 2, device="cpu"), pn.Dense(2, 2, device="strict:device1"))
    m = pn.Sequential(pn.Dense(2, 2, device="cpu"), pn.Dense(2, 2, device="strict:device1"), device="torch:cpu")
    assert all(layer.device == pn.device("torch:cpu") for layer in m)


def test_common_mistakes_get_errors_that_name_the_fix():
    d = pn.Dense(784, 256)
    with pytest.raises(pn.ShapeError, match=r"Dense\(784 -> 256\) got input of shape \(128, 28, 28\).*Flatten"):
        d(np.zeros((128, 28, 28), np.float32))
    with pytest.raises(pn.ShapeError, match=r"\(batch, 784\)"):
        d(np.zeros((128, 100), np.float32))
    with pytest.raises(TypeError, match="uint8 input.*astype"):
        d(np.zeros((2, 784), np.uint8))
    with pytest.raises(TypeError, match="never upcasts"):
        d(np.zeros((2, 784), np.float64))
    with pytest.raises(pn.NotFittedError, match="before forward"):
        pn.Dense(2, 2).backward(np.zeros((1, 2), np.float32))
    with pytest.raises(pn.DeviceMismatchError, match="strict:device1 but got a numpy.ndarray on cpu"):
        pn.Dense(2, 2, device="strict:device1")(np.zeros((1, 2), np.float32))
    import torch

    with pytest.raises(pn.DeviceMismatchError, match="torch.Tensor on torch:cpu"):   # (on "cpu" it goes in: DLPack)
        pn.Dense(2, 2, device="strict")(torch.zeros(1, 2))


def test_backward_without_input_grad_stops_at_the_first_trainable_layer():
    calls = []
    dense = pn.Dense(784, 4)
    original = dense.backward

    def spy(dy, input_grad=True):
        calls.append(input_grad)
        return original(dy, input_grad=input_grad)

    dense.backward = spy
    flatten = pn.Flatten()
    flatten_backward = flatten.backward
    flatten.backward = lambda dy: calls.append("flatten") or flatten_backward(dy)
    m = pn.Sequential(flatten, dense, pn.ReLU(), pn.Dense(4, 2))
    m(np.ones((3, 28, 28), np.float32))
    assert m.backward(np.ones((3, 2), np.float32), input_grad=False) is None
    assert calls == [False]          # no dx GEMM for the first Dense, and Flatten is not visited
    m(np.ones((3, 28, 28), np.float32))
    dx = m.backward(np.ones((3, 2), np.float32))
    assert calls[1:] == [True, "flatten"] and dx.shape == (3, 28, 28)


def test_a_model_on_another_device_is_named_in_one_line_and_nested_layers_print_indented(ctx):
    # the error printed the model's whole repr (a line per layer) before what went wrong, and a Sequential printed
    # a nested Residual's layers at its own depth
    model = pn.Sequential(pn.Flatten(), pn.Dense(12, 8), pn.ReLU(),
                          pn.Residual(pn.Dense(8, 8), pn.ReLU()), pn.Dense(8, 2), device=ctx.device)
    assert repr(model) == ("Sequential(\n  Flatten(),\n  Dense(12 -> 8),\n  ReLU(),\n  Residual(\n    Dense(8 -> 8),\n"
                           "    ReLU()\n  ),\n  Dense(8 -> 2)\n)")
    other = "strict:device1" if ctx.spec != "strict:device1" else "strict:CPU_DEVICE"
    x = pn.device(other).asarray(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(pn.DeviceMismatchError) as e:
        model(x)
    assert str(e.value).startswith(f"Sequential(...) is on {ctx.device.label} but got ") and "\n" not in str(e.value)
