"""Device specs, their errors, host round trips and seeded generators."""
import os
import subprocess
import sys

import numpy as np
import pytest

import portanet as pn
from portanet import backends, devices


@pytest.mark.parametrize("spec,label", [("cpu", "cpu"), ("numpy", "cpu"), ("CPU", "cpu"), ("strict", "strict:CPU_DEVICE"),
                                        ("strict:device1", "strict:device1"), ("torch", "torch:cpu"),
                                        ("torch:cpu", "torch:cpu")])
def test_specs_resolve(spec, label):
    d = pn.device(spec)
    assert str(d) == label and repr(d) == f"Device('{label}')"
    assert d == pn.device(label) and hash(d) == hash(pn.device(label)) and d == label
    assert pn.device(d) is d


def test_auto_is_cpu_without_a_gpu():
    expected = "gpu:0" if backends.get("cupy").unavailable() is None else "cpu"
    assert str(pn.device("auto")) == expected


def test_devices_differ():
    assert pn.device("strict:device1") != pn.device("strict") and pn.device("cpu") != pn.device("torch:cpu")


@pytest.mark.parametrize("spec", ["tpu", "gpu0", "strict:device9", "numpy:3", "torch:mps", "gpu:-1"])
def test_unknown_specs_name_the_valid_ones(spec):
    with pytest.raises(pn.DeviceError) as e:
        pn.device(spec)
    assert "'" in str(e.value) and ("use" in str(e.value) or "has" in str(e.value) or "start" in str(e.value))


@pytest.mark.parametrize("spec", ["cuda:x", "gpu:-1", "gpu:1.5", "cupy:first"])
def test_a_malformed_gpu_index_is_named_before_cupy_is_asked_for(spec):
    # with or without CuPy and a GPU: the spec's form is wrong, not the machine (it used to say CuPy is missing)
    alias, index = spec.split(":")
    with pytest.raises(pn.DeviceError, match=rf"unknown device '{spec}': the GPU index after '{alias}:' must be a "
                                             rf"whole number \('{alias}:0', '{alias}:1'\)"):
        pn.device(spec)


def test_a_bad_portanet_device_variable_is_named(monkeypatch):
    monkeypatch.setattr(devices, "_default_spec", None)
    monkeypatch.setenv("PORTANET_DEVICE", "bogus")
    with pytest.raises(pn.DeviceError, match=r"PORTANET_DEVICE='bogus' in the environment sets the default device, "
                                             r"and unknown device 'bogus': use one of 'cpu'.*unset PORTANET_DEVICE"):
        pn.Dense(2, 2)
    if backends.get("cupy").unavailable():
        monkeypatch.setenv("PORTANET_DEVICE", "gpu")
        with pytest.raises(pn.DeviceUnavailableError, match=r"PORTANET_DEVICE='gpu' in the environment .*needs CuPy"):
            pn.Dense(2, 2)
    monkeypatch.setenv("PORTANET_DEVICE", "strict:device1")
    assert pn.Dense(2, 2).device == pn.device("strict:device1")


@pytest.mark.skipif(backends.get("cupy").unavailable() is None, reason="a GPU is usable here")
@pytest.mark.parametrize("spec", ["gpu", "cuda", "gpu:1", "cuda:0", "cupy"])
def test_gpu_without_cuda_quotes_cupy_and_says_the_fix(spec):
    with pytest.raises(pn.DeviceUnavailableError) as e:
        pn.device(spec)
    msg = str(e.value)
    assert "device='gpu' needs CuPy and a CUDA device" in msg
    assert "CuPy is installed but reports:" in msg or "pip install 'portanet[gpu]'" in msg


def test_torch_cuda_without_cuda_says_so():
    with pytest.raises(pn.DeviceUnavailableError, match="torch:cpu"):
        pn.device("torch:cuda:0")


def test_non_string_spec_is_a_type_error():
    with pytest.raises(TypeError, match="device must be a string"):
        pn.device(3)


def test_default_device_from_setter_and_env(tmp_path):
    try:
        pn.set_default_device("strict:device1")
        assert pn.Dense(2, 2).device == pn.device("strict:device1")
    finally:
        pn.set_default_device("cpu")
    code = "import portanet as pn; print(pn.Dense(2, 2).device)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PORTANET_DEVICE": "torch:cpu"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "torch:cpu"


def test_host_round_trip_and_dtype(ctx):
    host = np.arange(6, dtype=np.float64).reshape(2, 3)
    a = ctx.device.asarray(host, dtype=ctx.dtype_name)
    assert ctx.device.holds(a) and a.dtype == ctx.dtype
    back = ctx.device.to_host(a)
    assert isinstance(back, np.ndarray) and back.dtype == np.dtype(ctx.dtype_name)
    np.testing.assert_array_equal(back, host)
    labels = ctx.device.asarray(np.array([1, 2], dtype=np.int64))
    assert ctx.device.to_host(labels).dtype == np.int64
    ctx.device.synchronize()


def test_to_host_takes_what_asarray_takes(ctx):
    """to_host mirrors asarray: a NumPy array is on the host already and comes back as it is (torch's and
    array-api-strict's to_host failed on it with AttributeError / TypeError), another library's array is read through
    its own device, and other host data (NumPy scalars, lists) goes through np.asarray, as it always did on cpu."""
    import torch

    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert ctx.device.to_host(host) is host
    others = [torch.arange(3) + 1, pn.device("strict:device1").asarray(np.arange(3) + 2)]
    for k, other in enumerate(others, start=1):
        back = ctx.device.to_host(other)
        assert isinstance(back, np.ndarray)
        np.testing.assert_array_equal(back, np.arange(3) + k)
    np.testing.assert_array_equal(ctx.device.to_host([1.0, 2.0]), [1.0, 2.0])
    assert ctx.device.to_host(np.float32(2.5)) == np.float32(2.5)


def test_generators_are_seeded_and_restorable(ctx):
    g1, g2 = ctx.device.rng(5), ctx.device.rng(5)
    for draw in (lambda g: g.normal((3, 4), ctx.dtype), lambda g: g.uniform((5,), ctx.dtype, -2.0, 3.0),
                 lambda g: g.bernoulli((4, 4), 0.3, ctx.dtype), lambda g: g.permutation(10)):
        np.testing.assert_array_equal(ctx.host(draw(g1)), ctx.host(draw(g2)))
    state = g1.get_state()
    a = ctx.host(g1.normal((6,), ctx.dtype))
    g1.set_state(state)
    np.testing.assert_array_equal(ctx.host(g1.normal((6,), ctx.dtype)), a)
    u = ctx.host(ctx.device.rng(1).uniform((20000,), ctx.dtype, -2.0, 3.0))
    assert u.min() >= -2 and u.max() < 3 and abs(u.mean() - 0.5) < 0.05
    n = ctx.host(ctx.device.rng(2).normal((20000,), ctx.dtype, 1.0, 2.0))
    assert abs(n.mean() - 1) < 0.05 and abs(n.std() - 2) < 0.05
    assert sorted(ctx.host(ctx.device.rng(3).permutation(50)).tolist()) == list(range(50))


def test_numpy_and_strict_draw_the_same_numbers():
    a = pn.device("cpu").rng(9).normal((4, 4), pn.device("cpu").dtype("float64"))
    d1 = pn.device("strict:device1")
    b = d1.rng(9).normal((4, 4), d1.dtype("float64"))
    np.testing.assert_array_equal(a, d1.to_host(b))


def test_seed_makes_models_bit_reproducible(ctx):
    pn.seed(42)
    a = pn.Sequential(pn.Dense(5, 4, device=ctx.device), pn.Dropout(0.5, device=ctx.device)).state_dict()
    pn.seed(42)
    b = pn.Sequential(pn.Dense(5, 4, device=ctx.device), pn.Dropout(0.5, device=ctx.device)).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_cupy_missing_and_cuda_missing_messages(monkeypatch):
    """Both ways a GPU request fails, whatever this machine has: no CuPy, and CuPy without a CUDA device."""
    import sys
    import types

    from portanet.backends.cupy import CupyBackend

    monkeypatch.setitem(sys.modules, "cupy", None)           # import cupy -> ImportError
    reason = CupyBackend().unavailable()
    assert "pip install 'portanet[gpu]' (CUDA 12) or 'portanet[gpu-cuda13]' (CUDA 13)" in reason
    assert "device='cpu'" in reason and "importing cupy failed" in reason

    def no_driver():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_driver)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    backend = CupyBackend()
    reason = backend.unavailable()
    assert "CuPy is installed but reports: cudaErrorNoDevice: no CUDA-capable device is detected" in reason
    assert "install a CUDA driver that supports the CUDA version CuPy was built for" in reason
    assert backend.devices() == []
    fake.cuda.runtime.runtimeGetVersion = lambda: 13000                  # cupy-cuda13x's: the driver must support it
    assert "install a CUDA driver that supports CUDA 13.0" in CupyBackend().unavailable()
    fake.cuda.runtime.driverGetVersion = lambda: 0                       # no driver at all: a GPU machine is the fix
    assert ("this machine has no NVIDIA driver: use device='cpu', or run on a machine with an NVIDIA GPU and a driver "
            "that supports CUDA 13.0") in CupyBackend().unavailable()
    with pytest.raises(pn.DeviceUnavailableError, match="cudaErrorNoDevice"):
        backend.parse("0")
    fake.cuda.runtime.getDeviceCount = lambda: 1
    with pytest.raises(pn.DeviceError, match=r"'gpu:3' is out of range: CuPy sees 1 GPU"):
        CupyBackend().parse("3")


def test_numpy_namespace_allocates_as_the_standard_says():
    """The NumPy backend's namespace uses NumPy 2's own empty/empty_like/asarray: same arrays, the standard's
    device= argument accepted, another device refused."""
    xp = pn.device("cpu").xp
    a = xp.empty_like(np.ones((3, 2), np.float32))
    assert a.shape == (3, 2) and a.dtype == np.float32 and a.flags["C_CONTIGUOUS"]
    assert xp.empty((2, 5), dtype=xp.float64, device="cpu").dtype == np.float64
    assert xp.asarray(1.5, dtype=xp.float32).dtype == np.float32
    assert xp.asarray([1, 2], copy=True).tolist() == [1, 2]
    with pytest.raises(ValueError):
        xp.empty((2,), device="gpu")
    assert pn.devices.namespace_of(a) is xp


def test_messages_take_the_article_their_noun_wants():
    from portanet._words import a

    assert [a(w) for w in ("Adam", "SGD", "RMSprop", "int64", "uint8", "object", "numpy.ndarray", "BCELoss")] == [
        "an Adam", "an SGD", "an RMSprop", "an int64", "a uint8", "an object", "a numpy.ndarray", "a BCELoss"]
    strict = pn.device("strict").asarray(np.zeros((1, 2)), dtype="float32")
    with pytest.raises(pn.DeviceMismatchError, match=r"got an array_api_strict.Array on strict:CPU_DEVICE"):
        pn.Dense(2, 2, device="cpu")(strict)
    with pytest.raises(pn.CheckpointError, match=r"'0.bias' is an int, not an array"):
        pn.load_torch_state_dict(pn.Sequential(pn.Dense(2, 2)), {"0.weight": np.zeros((2, 2)), "0.bias": 0})
    with pytest.raises(TypeError, match=r"cannot place an object array on strict:CPU_DEVICE"):
        pn.device("strict").asarray(np.array([None]))
