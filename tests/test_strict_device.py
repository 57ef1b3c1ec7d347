"""On array-api-strict's device1 (a stand-in for a GPU), a whole training step keeps every array
on the device: any conversion to a Python scalar, NumPy or another device fails the test."""
import numpy as np
import pytest

import portanet as pn

xps = pytest.importorskip("array_api_strict")
Array = xps._array_object.Array
DEVICE1 = xps.Device("device1")


@pytest.fixture
def no_array_leaves_device1(monkeypatch):
    """Every exit from device1 raises: bool/int/float/index, __array__, to_device, __dlpack__."""
    def guard(name):
        original = getattr(Array, name)

        def patched(self, *args, **kwargs):
            if self.device == DEVICE1 and not (name == "to_device" and args and args[0] == DEVICE1):
                raise AssertionError(f"an array left device1 through {name}")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(Array, name, patched)

    for name in ("__bool__", "__int__", "__float__", "__index__", "__complex__", "to_device", "__dlpack__",
                 "__array__"):
        if hasattr(Array, name):
            guard(name)
    yield


def _model(device):
    return pn.Sequential(pn.Dense(6, 16, device=device), pn.ReLU(device=device), pn.Dropout(0.1, device=device),
                         pn.BatchNorm1d(16, device=device), pn.Dense(16, 3, device=device), device=device)


@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "RMSprop", "Adagrad", "AdamW"])
def test_training_step_stays_on_device1(opt_name, no_array_leaves_device1):
    dev = pn.device("strict:device1")
    rng = np.random.default_rng(0)
    x = dev.asarray(rng.standard_normal((8, 6)), dtype="float32")
    y = dev.asarray(rng.integers(0, 3, 8))
    model = _model(dev)
    opt = getattr(pn.optim, opt_name)(model.parameters(), lr=0.01)
    loss_fn = pn.CrossEntropyLoss(check_values=False)
    for _ in range(3):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward(), input_grad=False)
        pn.optim.clip_grad_norm(model.parameters(), 1.0)
        opt.step()
    assert loss.device == DEVICE1
    assert all(p.data.device == DEVICE1 for p in model.parameters())


def test_feeding_a_cpu_array_raises_portanets_error():
    model = _model("strict:device1")
    cpu_batch = pn.device("strict").asarray(np.zeros((2, 6)), dtype="float32")
    with pytest.raises(pn.DeviceMismatchError, match="is on strict:device1 but got .* on strict:CPU_DEVICE"):
        model(cpu_batch)
    with pytest.raises(pn.DeviceMismatchError, match="numpy.ndarray on cpu"):
        model(np.zeros((2, 6), np.float32))


def test_loss_with_labels_on_another_device_raises_portanets_error():
    dev = pn.device("strict:device1")
    with pytest.raises(pn.DeviceMismatchError, match="labels arrive with the batch"):
        pn.CrossEntropyLoss()(dev.asarray(np.zeros((2, 3)), dtype="float32"),
                              pn.device("strict").asarray(np.array([0, 1])))
