"""On array-api-strict's device1 (a stand-in for a GPU), a whole training step keeps every array
on the device: any conversion to a Python scalar, NumPy or another device fails the test."""
import numpy as np
import pytest

import portanet as pn

xps = pytest.importorskip("array_api_strict")
Array = xps._array_object.Array
DEVICE1 = xps.Device("device1")


class ExitGuard:
    """Every exit from device1 raises (bool/int/float/index, __array__, to_device, __dlpack__), except
    through the backend's to_host, which is counted."""

    def __init__(self, monkeypatch):
        self.to_host_calls = 0
        self._sanctioned = False
        for name in ("__bool__", "__int__", "__float__", "__index__", "__complex__", "to_device", "__dlpack__",
                     "__array__"):
            if hasattr(Array, name):
                self._guard(monkeypatch, name)
        backend = pn.backends.get("strict")
        original = backend.to_host

        def counted(a):
            self.to_host_calls += 1
            self._sanctioned = True
            try:
                return original(a)
            finally:
                self._sanctioned = False

        monkeypatch.setattr(backend, "to_host", counted)

    def _guard(self, monkeypatch, name):
        original = getattr(Array, name)
        guard = self

        def patched(self, *args, **kwargs):
            if self.device == DEVICE1 and not guard._sanctioned and not (
                    name == "to_device" and args and args[0] == DEVICE1):
                raise AssertionError(f"an array left device1 through {name}")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(Array, name, patched)


@pytest.fixture
def no_array_leaves_device1(monkeypatch):
    return ExitGuard(monkeypatch)


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


def test_loader_epoch_keeps_everything_on_device1(no_array_leaves_device1):
    x = np.random.default_rng(0).integers(0, 256, (70, 4, 4), dtype=np.uint8)
    y = np.arange(70)
    for placement in ("device", "stream"):
        loader = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=0, device="strict:device1",
                               placement=placement, transform=pn.Compose(pn.RandomShift(1), pn.GaussianNoise(0.01)))
        batches = list(loader)
        assert len(batches) == 5 and all(xb.device == DEVICE1 and yb.device == DEVICE1 for xb, yb in batches)
    assert no_array_leaves_device1.to_host_calls == 0


def test_fit_reads_the_device_only_at_progress_refreshes(no_array_leaves_device1, monkeypatch):
    """The number of to_host calls in an epoch is bounded by the progress refreshes (+1 at its end)."""
    from portanet import progress

    refreshes = []
    original = progress.Progress.update

    def counting_update(self, steps, postfix):
        refreshes.append(steps)
        return original(self, steps, postfix)

    monkeypatch.setattr(progress.Progress, "update", counting_update)
    monkeypatch.setattr(progress, "QUIET_SYNC", 0.0005)     # refresh often, so the bound is exercised
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((400, 6)).astype(np.float32), rng.integers(0, 3, 400)
    model = _model("strict:device1")
    loader = pn.DataLoader(x, y, batch_size=8, shuffle=True, seed=0, device="strict:device1")
    pn.fit(model, pn.CrossEntropyLoss(), pn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), loader,
           epochs=1, verbose=0)
    calls = no_array_leaves_device1.to_host_calls
    assert len(refreshes) >= 2
    assert calls <= len(refreshes) + 1
