"""PyTorch interop (portanet/interop.py): state_dicts both ways, and other libraries' arrays taken through DLPack."""
import numpy as np
import pytest
import torch

import portanet as pn
from portanet import backends

TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}


def torch_mlp(dtype=torch.float32, seed=0):
    """nn.Sequential(Linear, ReLU, BatchNorm1d, Linear) with trained running statistics and a batch count."""
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.BatchNorm1d(64),
                            torch.nn.Linear(64, 5)).to(dtype)
    with torch.no_grad():
        m[2].weight.uniform_(0.5, 1.5)
        m[2].bias.uniform_(-0.5, 0.5)
        m.train()
        for _ in range(3):
            m(torch.randn(32, 20, dtype=dtype))
    return m.eval()


def portanet_mlp(device="cpu", dtype=None):
    return pn.Sequential(pn.Dense(20, 64, dtype=dtype), pn.ReLU(), pn.BatchNorm1d(64, dtype=dtype),
                         pn.Dense(64, 5, dtype=dtype), device=device)


def inputs(n=16, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 20))


def test_torch_mlp_loads_and_gives_torch_outputs(ctx):
    tm = torch_mlp(TORCH_DTYPE[ctx.dtype_name])
    model = portanet_mlp(ctx.device, ctx.dtype_name)
    result = pn.load_torch_state_dict(model, tm.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = inputs()
    tol = dict(rtol=1e-6, atol=1e-6) if ctx.dtype_name == "float32" else dict(rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        expected_eval = tm(torch.tensor(x, dtype=TORCH_DTYPE[ctx.dtype_name])).numpy()
        tm.train()
        expected_train = tm(torch.tensor(x, dtype=TORCH_DTYPE[ctx.dtype_name])).numpy()
    model.eval()
    np.testing.assert_allclose(ctx.host(model(ctx.asarray(x))), expected_eval, **tol)
    model.train()
    np.testing.assert_allclose(ctx.host(model(ctx.asarray(x))), expected_train, **tol)
    # both took one more training batch: the running statistics and the counts still agree
    sd = pn.torch_state_dict(model)
    for key in ("2.running_mean", "2.running_var"):
        np.testing.assert_allclose(sd[key].numpy(), tm.state_dict()[key].numpy(), **tol)
    assert int(sd["2.num_batches_tracked"]) == int(tm.state_dict()["2.num_batches_tracked"]) == 4


@pytest.mark.parametrize("spec", ["cpu", "torch:cpu", "strict:device1"])
def test_round_trip_into_torch_is_exact(spec):
    tm = torch_mlp()
    model = portanet_mlp(spec)
    pn.load_torch_state_dict(model, tm.state_dict())
    back = pn.torch_state_dict(model)
    original = tm.state_dict()
    assert list(back) == list(original)
    for key, value in original.items():
        assert back[key].dtype == value.dtype and back[key].device.type == "cpu"
        assert torch.equal(back[key], value), key
        assert back[key].is_contiguous()
    fresh = torch_mlp(seed=5)
    assert not torch.equal(fresh[0].weight, tm[0].weight)
    fresh.load_state_dict(back)                              # strict, as torch does it
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), original.values()))


def test_a_model_trained_in_portanet_continues_in_torch():
    pn.seed(3)
    model = portanet_mlp()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((96, 20)).astype(np.float32), rng.integers(0, 5, 96)
    pn.fit(model, pn.CrossEntropyLoss(), pn.optim.Adam(model.parameters(), lr=1e-2),
           pn.DataLoader(x, y, batch_size=32, seed=0), epochs=2, verbose=0)
    assert model[2].num_batches_tracked == 6
    tm = torch_mlp(seed=9)
    tm.load_state_dict(pn.torch_state_dict(model))
    assert int(tm[2].num_batches_tracked) == 6
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(tm(torch.from_numpy(x)).numpy(), model(x), rtol=1e-6, atol=1e-6)
    again = portanet_mlp()
    pn.load_torch_state_dict(again, tm.state_dict())
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_loaded_weights_are_the_models_own():
    tm = torch_mlp()
    model = portanet_mlp()
    held = model[0].weight.data, model[2].running_var          # as an optimizer or a flat buffer holds them
    pn.load_torch_state_dict(model, tm.state_dict())
    w = model[0].weight.data
    assert w is held[0] and model[2].running_var is held[1]   # written in place, as torch's copy_ does
    assert w.shape == (20, 64) and w.flags.c_contiguous and w.flags.owndata
    np.testing.assert_array_equal(w, tm[0].weight.detach().numpy().T)
    with torch.no_grad():
        tm[0].weight.fill_(7.0)
        tm[2].running_mean.fill_(7.0)
    assert not np.any(model[0].weight.data == 7.0) and not np.any(model[2].running_mean == 7.0)


def test_values_may_be_numpy_arrays_or_cast_between_float_dtypes():
    tm = torch_mlp()
    as_numpy = {k: v.numpy() for k, v in tm.state_dict().items()}
    model = portanet_mlp(dtype="float64")
    pn.load_torch_state_dict(model, as_numpy)
    assert model[0].weight.data.dtype == np.float64
    np.testing.assert_array_equal(model[3].weight.data, as_numpy["3.weight"].T.astype(np.float64))
    assert pn.torch_state_dict(model)["3.weight"].dtype == torch.float64


def test_cpu_tensors_are_read_through_dlpack_not_the_host(monkeypatch):
    """A torch CPU tensor loads into a "cpu" model without torch's own to-host path (tensor.numpy())."""
    def refuse(self, a):
        raise AssertionError("went through the host")

    monkeypatch.setattr(type(backends.get("torch")), "to_host", refuse)
    tm = torch_mlp()
    model = portanet_mlp()
    pn.load_torch_state_dict(model, tm.state_dict())
    np.testing.assert_array_equal(model[3].bias.data, tm[3].bias.detach().numpy())


def test_strict_false_skips_and_reports_keys_like_torch():
    tm = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 5))
    model = portanet_mlp()
    before = model.state_dict()
    sd = dict(tm.state_dict(), extra=torch.zeros(3))
    del sd["2.bias"]
    sd["2.weight"] = torch.ones(64, 64)        # torch's Linear(64, 64): the BatchNorm has weight (64,)
    with pytest.raises(pn.CheckpointError, match=r"'2.weight' has shape \(64, 64\) but BatchNorm1d"):
        pn.load_torch_state_dict(model, sd, strict=False)
    assert all(np.array_equal(a, b) for a, b in zip(before.values(), model.state_dict().values()))
    del sd["2.weight"]
    result = pn.load_torch_state_dict(model, sd, strict=False)
    assert result.missing_keys == ["2.weight", "2.bias", "2.running_mean", "2.running_var", "3.weight", "3.bias"]
    assert result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(model[0].weight.data, tm[0].weight.detach().numpy().T)
    np.testing.assert_array_equal(model[3].bias.data, before["3.bias"])


def test_strict_key_errors_name_the_keys_and_the_fix():
    tm = torch_mlp()
    model = portanet_mlp()
    sd = tm.state_dict()
    with pytest.raises(pn.CheckpointError, match=r"missing 3.bias; unexpected 4.bias.*strict=False"):
        pn.load_torch_state_dict(model, {("4.bias" if k == "3.bias" else k): v for k, v in sd.items()})
    wrapped = {f"module.{k}": v for k, v in sd.items()}
    with pytest.raises(pn.CheckpointError, match=r"starts with 'module.' .*DataParallel.*removeprefix"):
        pn.load_torch_state_dict(model, wrapped)
    without_count = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert pn.load_torch_state_dict(model, without_count) == ([], [])   # PyTorch < 0.4.1 checkpoints


def test_shape_errors_name_the_key_and_the_transpose():
    tm = torch_mlp()
    model = portanet_mlp()
    before = model.state_dict()
    portanet_layout = dict(tm.state_dict(), **{"0.weight": tm.state_dict()["0.weight"].T.contiguous()})
    with pytest.raises(pn.CheckpointError, match=r"'0.weight' has shape \(20, 64\) but Dense\(20 -> 64\) takes "
                                                 r"\(64, 20\) from PyTorch \(out, in\), the transpose of portanet's"):
        pn.load_torch_state_dict(model, portanet_layout)
    other = dict(tm.state_dict(), **{"3.weight": torch.zeros(7, 64)})
    with pytest.raises(pn.CheckpointError, match=r"'3.weight' has shape \(7, 64\) but Dense\(64 -> 5\) takes "
                                                 r"\(5, 64\) \(PyTorch's layout; portanet stores \(64, 5\)\): .*"
                                                 r"different architecture"):
        pn.load_torch_state_dict(model, other)
    assert all(np.array_equal(a, b) for a, b in zip(before.values(), model.state_dict().values()))


def test_bad_values_and_arguments_are_explained():
    tm = torch_mlp()
    model = portanet_mlp()
    with pytest.raises(TypeError, match=r"pass torch_model.state_dict\(\), not the module itself"):
        pn.load_torch_state_dict(model, tm)
    with pytest.raises(pn.CheckpointError, match=r"'0.bias' is a list, not an array"):
        pn.load_torch_state_dict(model, dict(tm.state_dict(), **{"0.bias": [0.0] * 64}))
    with pytest.raises(pn.CheckpointError, match=r"'2.num_batches_tracked' should be PyTorch's 0-d count"):
        pn.load_torch_state_dict(model, dict(tm.state_dict(), **{"2.num_batches_tracked": torch.tensor(0.5)}))
    with pytest.raises(pn.CheckpointError, match=r"'0.bias' holds .*bool.* convert it"):
        pn.load_torch_state_dict(model, dict(tm.state_dict(), **{"0.bias": torch.zeros(64, dtype=torch.bool)}))
    with pytest.raises(pn.CheckpointError, match=r"'0.bias' \(a torch.Tensor on torch:cpu, dtype torch.bfloat16\) "
                                                 r"cannot be read onto cpu: convert it to float32 first"):
        pn.load_torch_state_dict(model, dict(tm.state_dict(), **{"0.bias": torch.zeros(64, dtype=torch.bfloat16)}))
    with pytest.raises(ValueError, match=r"device must be a torch device such as 'torch:cpu'.*got 'cpu'"):
        pn.torch_state_dict(model, device="cpu")


class AttributeNet(torch.nn.Module):
    """The same architecture as portanet_mlp, written as PyTorch tutorials write it: layers as attributes."""

    def __init__(self, dtype=torch.float32, fc2_first=False):
        super().__init__()
        if fc2_first:                      # registered in another order than forward uses them
            self.fc2 = torch.nn.Linear(64, 5)
        self.fc1 = torch.nn.Linear(20, 64)
        self.bn = torch.nn.BatchNorm1d(64)
        if not fc2_first:
            self.fc2 = torch.nn.Linear(64, 5)
        self.to(dtype)

    def forward(self, x):
        return self.fc2(self.bn(torch.relu(self.fc1(x))))


def test_a_torch_model_with_attribute_names_loads_by_position(ctx):
    dtype = TORCH_DTYPE[ctx.dtype_name]
    torch.manual_seed(0)
    tm = AttributeNet(dtype)
    with torch.no_grad():
        for _ in range(3):                 # running statistics and a batch count of 3
            tm(torch.randn(32, 20, dtype=dtype))
    tm.eval()
    model = portanet_mlp(ctx.device, ctx.dtype_name)
    before = model.state_dict()
    with pytest.raises(pn.CheckpointError, match=r"missing 0.weight.*unexpected fc1.weight.*the names differ but the "
                                                 r"arrays match one to one in order and shape.*by_position=True"):
        pn.load_torch_state_dict(model, tm.state_dict())
    # strict=False used to load nothing without a word
    with pytest.warns(UserWarning, match=r"strict=False\) loaded nothing: none of the 9 keys \(fc1.weight.*"
                                         r"pass by_position=True"):
        result = pn.load_torch_state_dict(model, tm.state_dict(), strict=False)
    assert len(result.missing_keys) == 8 and len(result.unexpected_keys) == 9
    assert all(np.array_equal(a, b) for a, b in zip(before.values(), model.state_dict().values()))
    assert pn.load_torch_state_dict(model, tm.state_dict(), by_position=True) == ([], [])
    assert model[2].num_batches_tracked == 3
    model.eval()
    x = inputs()
    ctx.close(model(ctx.asarray(x)), tm(torch.from_numpy(x).to(dtype)))
    # and back, under the PyTorch model's names
    back = AttributeNet(dtype).eval()
    back.load_state_dict(pn.torch_state_dict(model, keys=back.state_dict().keys()))
    ctx.close(model(ctx.asarray(x)), back(torch.from_numpy(x).to(dtype)))
    assert int(back.bn.num_batches_tracked) == 3


def test_by_position_refuses_what_does_not_pair():
    model = portanet_mlp()
    before = model.state_dict()
    # fc2 registered before fc1: the order is not forward's, and the shapes say so
    with pytest.raises(pn.CheckpointError, match=r"by_position: array 0, PyTorch's 'fc2.weight', has shape \(5, 64\) "
                                                 r"but pairs with '0.weight' of Dense\(20 -> 64\), which takes "
                                                 r"\(64, 20\).*in order"):
        pn.load_torch_state_dict(model, AttributeNet(fc2_first=True).state_dict(), by_position=True)
    short = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 5)).state_dict()
    with pytest.raises(pn.CheckpointError, match=r"by_position: the PyTorch state_dict has 4 arrays .* but Sequential "
                                                 r"has 8: the architectures differ"):
        pn.load_torch_state_dict(model, {f"net.{k}": v for k, v in short.items()}, by_position=True)
    assert all(np.array_equal(a, b) for a, b in zip(before.values(), model.state_dict().values()))
    # without strict, the leading pairs load and the rest is reported
    small = pn.Sequential(pn.Dense(20, 64), pn.ReLU(), pn.Dense(64, 5), pn.Dense(5, 2))
    result = pn.load_torch_state_dict(small, {f"net.{k}": v for k, v in short.items()}, strict=False,
                                      by_position=True)
    assert result == (["3.weight", "3.bias"], [])
    np.testing.assert_array_equal(small[2].weight.data, short["2.weight"].numpy().T)
    with pytest.raises(ValueError, match=r"torch_state_dict got 4 keys for the model's 9 tensors"):
        pn.torch_state_dict(model, keys=short.keys())
    with pytest.raises(ValueError, match=r"'fc2.weight' falls where the model has '2.num_batches_tracked'"):
        pn.torch_state_dict(model, keys=["a", "b", "c", "d", "e", "f", "fc2.weight", "g", "h"])


def test_portanet_load_state_dict_points_to_the_interop_for_torch_state():
    """The failure that asked for this module: a torch state_dict given to Module.load_state_dict."""
    tm = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 5))
    model = pn.Sequential(pn.Dense(20, 64), pn.ReLU(), pn.Dense(64, 5))
    with pytest.raises(pn.CheckpointError, match=r"'0.weight' has shape \(64, 20\).*pn.load_torch_state_dict"):
        model.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    with pytest.raises(pn.CheckpointError, match=r"unexpected 2.num_batches_tracked.*pn.load_torch_state_dict"):
        portanet_mlp().load_state_dict(torch_mlp().state_dict())


def test_prelu_and_maxout_map_to_their_torch_twins():
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 4 * 3)
    prelu = torch.nn.PReLU(4)
    with torch.no_grad():
        prelu.weight.uniform_(0.1, 0.4)

    class TorchNet(torch.nn.Module):
        """Maxout(6 -> 4, pieces 3) as PyTorch code writes it, then a PReLU with one slope per unit."""

        def __init__(self):
            super().__init__()
            self.maxout, self.act = lin, prelu

        def forward(self, x):
            return self.act(self.maxout(x).view(x.shape[0], 4, 3).amax(-1))

    tnet = TorchNet()
    model = pn.Sequential(pn.Maxout(6, 4, 3), pn.PReLU(4))
    sd = {k.replace("maxout", "0").replace("act", "1"): v for k, v in tnet.state_dict().items()}
    pn.load_torch_state_dict(model, sd)
    x = np.random.default_rng(0).standard_normal((10, 6)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model(x), tnet(torch.from_numpy(x)).numpy(), rtol=1e-6, atol=1e-6)
    back = pn.torch_state_dict(model)
    assert all(torch.equal(back[k], v) for k, v in sd.items())


class Flipped(pn.Module):
    """A layer of someone's own that stores its (in, out) weight as Dense does, and says so."""

    torch_transposed = ("kernel",)

    def __init__(self):
        super().__init__()
        self.kernel = pn.Parameter(np.zeros((3, 2), np.float32))


def test_layouts_by_class_name_and_by_hook():
    model = pn.Sequential(pn.Conv2d(3, 2, 2), Flipped())
    w = torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2) * 0.5
    kernel = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    pn.load_torch_state_dict(model, {"0.weight": w, "0.bias": torch.ones(2), "1.kernel": kernel})
    np.testing.assert_array_equal(model[0].weight.data, w.numpy())          # as is: the same layout
    np.testing.assert_array_equal(model[1].kernel.data, kernel.numpy().T)   # transposed, as the class says
    back = pn.torch_state_dict(model)
    assert torch.equal(back["0.weight"], w) and torch.equal(back["1.kernel"], kernel)


# -- DLPack: another library's arrays on the same device, without a copy ----------------------------------------------
def test_device_asarray_shares_a_torch_cpu_tensor():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    a = pn.device("cpu").asarray(t)
    assert isinstance(a, np.ndarray) and np.shares_memory(a, t.numpy())
    assert pn.device("cpu").asarray(t, dtype="float64").dtype == np.float64      # a dtype asks for a copy
    n = np.arange(4.0)
    assert pn.device("torch:cpu").from_dlpack(n).data_ptr() == n.ctypes.data
    n.flags.writeable = False        # a read-only array is never handed over for in-place updates
    assert pn.device("torch:cpu").from_dlpack(n) is None
    assert pn.device("strict").from_dlpack(t) is None and pn.device("strict:device1").from_dlpack(n) is None


def test_model_input_from_another_library_on_the_same_device():
    layer = pn.Dense(4, 2)
    t = torch.randn(5, 4)
    y = layer(t)
    assert isinstance(y, np.ndarray) and np.shares_memory(layer._x, t.numpy())
    np.testing.assert_allclose(y, t.numpy() @ layer.weight.data, rtol=1e-6)
    n = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    torch_layer = pn.Dense(4, 2, device="torch:cpu")
    out = torch_layer(n)
    assert isinstance(out, torch.Tensor) and torch_layer._x.data_ptr() == n.ctypes.data
    with pytest.raises(pn.DeviceMismatchError, match=r"is on strict:device1 but got a torch.Tensor on torch:cpu"):
        pn.Dense(4, 2, device="strict:device1")(t)


def test_dataloader_uses_torch_cpu_tensors_in_place():
    x = torch.randn(40, 3)
    y = torch.randint(0, 2, (40,))
    loader = pn.DataLoader(x, y, batch_size=8, device="cpu")
    assert np.shares_memory(loader.x, x.numpy()) and np.shares_memory(loader.y, y.numpy())
    xb, yb = next(iter(loader))
    np.testing.assert_array_equal(xb, x[:8].numpy())
    np.testing.assert_array_equal(yb, y[:8].numpy())
    alone = pn.DataLoader(x, batch_size=8)          # a tensor without y is an array, not a Dataset
    assert alone.placement == "device" and np.shares_memory(alone.x, x.numpy())


def test_a_tensor_that_requires_grad_is_data_to_asarray_and_the_loader(ctx):
    """torch would say "Can't call numpy() on Tensor that requires grad": asarray, DataLoader, fit and predict take
    its values (t.detach(), the same memory on CPU); model(t), which shares memory with the model, names
    t.detach() where that is the fix, and device.asarray(t) elsewhere (which now works)."""
    torch.manual_seed(0)
    t = torch.randn(8, 4, dtype=TORCH_DTYPE[ctx.dtype_name], requires_grad=True)
    y = torch.arange(8, dtype=TORCH_DTYPE[ctx.dtype_name], requires_grad=True)[:, None] / 8
    values = t.detach().numpy()
    a = ctx.device.asarray(t)
    np.testing.assert_array_equal(ctx.host(a), values)
    assert getattr(a, "requires_grad", False) is False
    if ctx.spec == "cpu":
        assert np.shares_memory(a, values)                       # detach shares; no copy
    loader = pn.DataLoader(t, y, batch_size=5, device=ctx.device, dtype=ctx.dtype_name)
    batches = list(loader)
    np.testing.assert_array_equal(ctx.host(batches[1][0]), values[5:])
    np.testing.assert_array_equal(ctx.host(batches[0][1]), y.detach().numpy()[:5])
    model = pn.Sequential(pn.Dense(4, 1), device=ctx.device).to(dtype=ctx.dtype_name)
    hist = pn.fit(model, pn.MSELoss(), pn.optim.SGD(model.parameters(), lr=0.1), t, y, epochs=2, verbose=0)
    assert len(hist) == 2 and np.isfinite(hist["loss"]).all()
    np.testing.assert_allclose(pn.predict(model, t), ctx.host(model(ctx.device.asarray(t))), **ctx.tol)
    if ctx.spec == "cpu":
        with pytest.raises(pn.DeviceMismatchError, match=r"it requires grad, and portanet keeps no autograd graph: "
                                                         r"pass x.detach\(\)"):
            model(t)
        assert model(t.detach()).shape == (8, 1)
    elif ctx.spec.startswith("strict"):
        with pytest.raises(pn.DeviceMismatchError, match=r"got a torch.Tensor on torch:cpu: move it with "
                                                         r"Device\('strict:\w+'\).asarray\(x\)"):
            model(t)


@pytest.mark.skipif(not torch.cuda.is_available() or backends.get("cupy").unavailable() is not None,
                    reason="needs CUDA in both torch and CuPy")
def test_cuda_tensors_load_into_a_gpu_model_without_the_host(monkeypatch):
    def refuse(self, a):
        raise AssertionError("went through the host")

    tm = torch_mlp().cuda()
    model = portanet_mlp("gpu")
    monkeypatch.setattr(type(backends.get("torch")), "to_host", refuse)
    pn.load_torch_state_dict(model, tm.state_dict())
    t = torch.randn(8, 20, device="cuda")
    assert model.device.asarray(t).data.ptr == t.data_ptr()
    monkeypatch.undo()
    back = pn.torch_state_dict(model)
    assert back["0.weight"].device.type == "cuda"
    assert all(torch.equal(back[k], v) for k, v in tm.state_dict().items())
