"""A small CNN trained with fit: one epoch on array-api-strict's device1 with no array leaving the device; fit's
gradient sinks (the conv weights' products into SGD's momentum) against the documented loop; and it learns."""
import numpy as np

import portanet as pn
from portanet.backends import kernels
from test_gradient_sinks import fit_or_documented_loop
from test_strict_device import DEVICE1, ExitGuard


def _cnn(device=None, dtype=None):
    kw = dict(device=device, dtype=dtype)
    return pn.Sequential(pn.Conv2d(1, 4, 3, padding=1, **kw), pn.BatchNorm2d(4, **kw), pn.ReLU(), pn.MaxPool2d(2),
                         pn.Residual(pn.Conv2d(4, 4, 3, padding=1, **kw), pn.ReLU()),
                         pn.Concat(pn.Conv2d(4, 2, 1, **kw), pn.AvgPool2d(3, 1, 1)), pn.Dropout2d(0.1),
                         pn.GlobalAvgPool2d(), pn.Dense(6, 3, **kw), device=device)


def _images(n=48, seed=0):
    """Class = which third of the image holds a bright bar (channels-first uint8, as a DataLoader takes them)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 60, (n, 1, 9, 9), dtype=np.uint8)
    for i, c in enumerate(y):
        x[i, 0, :, 3 * c:3 * c + 3] += 180
    return x, y


def test_one_epoch_of_fit_keeps_every_array_on_device1(monkeypatch):
    guard = ExitGuard(monkeypatch)
    x, y = _images()
    pn.seed(0)
    model = _cnn("strict:device1")
    loader = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=0, device="strict:device1")
    history = pn.fit(model, pn.CrossEntropyLoss(), pn.optim.Adam(model.parameters(), lr=1e-2), loader, epochs=1,
                     verbose=0)
    assert all(p.data.device == DEVICE1 for p in model.parameters())
    assert all(p.grad is None or p.grad.device == DEVICE1 for p in model.parameters())
    assert np.isfinite(history.history["loss"][0])
    assert guard.to_host_calls <= 3                    # the epoch's sums, read once at its end


def _train(use_fit, device="cpu", epochs=2):
    x, y = _images(64, seed=1)
    pn.seed(3)
    model = pn.Sequential(pn.Conv2d(1, 4, 3, padding=1), pn.ReLU(), pn.MaxPool2d(2),
                          pn.Conv2d(4, 6, 3, stride=2, padding=1), pn.ReLU(), pn.Flatten(), pn.Dense(24, 3),
                          device=device)
    opt = pn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = pn.CrossEntropyLoss()
    loader = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=2, device=device)
    fit_or_documented_loop(use_fit, model, loss, opt, loader, epochs)
    return model, opt


def test_fit_takes_conv_weight_gradients_into_momentum_as_the_documented_loop_does(monkeypatch):
    taken = []
    if kernels.get("gemm_tn") is not None:
        gemm = kernels.get("gemm_tn")

        def counting(a, b, c, alpha, beta):
            taken.append(tuple(c.shape))
            return gemm(a, b, c, alpha, beta)

        monkeypatch.setitem(kernels._TABLE, "gemm_tn", counting)
    model, opt = _train(use_fit=True)
    ref, ref_opt = _train(use_fit=False)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6, err_msg=name)
    for p, q in zip(opt.parameters(), ref_opt.parameters()):
        np.testing.assert_allclose(opt.state[p]["momentum_buffer"], ref_opt.state[q]["momentum_buffer"], rtol=1e-5,
                                   atol=1e-6)
    if kernels.get("gemm_tn") is not None:            # NumPy with the kernels: the conv weights took the sink,
        assert (4, 9) in taken and (6, 36) in taken    # into their momentum segments seen as (out, in * kh * kw)


def test_a_small_cnn_learns():
    x, y = _images(240, seed=4)
    pn.seed(1)
    model = _cnn("cpu")
    train = pn.DataLoader(x[:192], y[:192], batch_size=32, shuffle=True, seed=0, device=model.device)
    test = pn.DataLoader(x[192:], y[192:], batch_size=48, device=model.device)
    pn.fit(model, pn.CrossEntropyLoss(), pn.optim.Adam(model.parameters(), lr=2e-2), train, epochs=6, verbose=0)
    assert pn.evaluate(model, test)["accuracy"] > 0.9
