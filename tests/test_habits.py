"""Keras and PyTorch habits either work on portanet or get a portanet error naming the fix: fit / evaluate /
predict on arrays, (x, y) pairs where a loader goes, and the loss's value given to backward."""
import re

import numpy as np
import pytest

import portanet as pn


def blobs(n=96, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[2, 0], [-2, 1], [0, -2]], dtype=np.float32)
    y = rng.integers(0, 3, n)
    return (centers[y] + 0.5 * rng.standard_normal((n, 2))).astype(np.float32), y


def make(ctx, seed=0):
    pn.seed(seed)
    model = pn.Sequential(pn.Dense(2, 16), pn.ReLU(), pn.Dense(16, 3), device=ctx.device).to(dtype=ctx.dtype_name)
    return model, pn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def weights(model):
    return [v.copy() for v in model.state_dict().values()]


# -- fit(model, loss, opt, x, y, ...) ------------------------------------------------------------------------------
def test_fit_on_arrays_is_fit_on_the_loader_it_builds(ctx):
    x, y = blobs()
    model, opt = make(ctx)
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=3, batch_size=16, verbose=0)
    by_arrays = weights(model)
    model, opt = make(ctx)
    loader = pn.DataLoader(x, y, batch_size=16, shuffle=True, device=ctx.device, dtype=ctx.dtype_name)
    ref = pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=3, verbose=0)
    for a, b in zip(by_arrays, weights(model)):
        np.testing.assert_array_equal(a, b)
    assert hist["loss"] == ref["loss"] and len(hist.epoch) == 3 and hist["accuracy"][-1] > 0.9


def test_fit_takes_x_y_with_epochs_left_out_and_a_pair_where_a_loader_goes(ctx):
    x, y = blobs()
    model, opt = make(ctx)
    # Keras' default: 1 epoch (this used to put y into epochs and print all of it in a 2,151-character error)
    assert len(pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, verbose=0)) == 1
    assert len(pn.fit(model, pn.CrossEntropyLoss(), opt, (x, y), epochs=2, verbose=0)) == 2
    assert len(pn.fit(model, pn.CrossEntropyLoss(), opt, (x, y), 2, (x, y), verbose=0)) == 2   # as a loader
    assert len(pn.fit(model, pn.CrossEntropyLoss(), opt, x, y=y, epochs=2, verbose=0)) == 2
    assert len(pn.fit(model, pn.CrossEntropyLoss(), opt, pn.ArrayDataset(x, y), epochs=1, verbose=0)) == 1
    # device arrays and lists are arrays too
    xd, yd = ctx.device.asarray(x, dtype=ctx.dtype_name), ctx.device.asarray(y)
    assert len(pn.fit(model, pn.CrossEntropyLoss(), opt, xd, yd, verbose=0)) == 1
    assert len(pn.fit(model, pn.CrossEntropyLoss(), opt, x.tolist(), y.tolist(), verbose=0)) == 1


def test_validation_data_and_validation_split(ctx):
    x, y = blobs()
    xv, yv = blobs(30, seed=1)
    model, opt = make(ctx)
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=2, validation_data=(xv, yv), verbose=0)
    ev = pn.evaluate(model, xv, yv, pn.CrossEntropyLoss())
    assert hist["val_loss"][-1] == pytest.approx(ev["loss"], rel=1e-6)
    assert hist["val_accuracy"][-1] == ev["accuracy"]
    # validation_split holds out the last fraction, before shuffling (Keras)
    model, opt = make(ctx)
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=2, validation_split=0.25, verbose=0)
    ev = pn.evaluate(model, x[72:], y[72:], pn.CrossEntropyLoss())
    assert hist["val_loss"][-1] == pytest.approx(ev["loss"], rel=1e-6)
    # val_loader takes a pair as well
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, val_loader=(xv, yv), verbose=0)
    assert "val_loss" in hist.history


def test_the_loader_form_keeps_its_positional_order(ctx):
    x, y = blobs()
    model, opt = make(ctx)
    loader = pn.DataLoader(x, y, batch_size=32, device=ctx.device, dtype=ctx.dtype_name)
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, loader, 2, loader, ("accuracy",), [], 0)
    assert len(hist.epoch) == 2 and "val_accuracy" in hist.history
    assert len(pn.fit(model, pn.CrossEntropyLoss(), opt, loader, np.int64(1), verbose=0)) == 1
    # any iterable of (xb, yb) batches still works
    batches = [(xb, yb) for xb, yb in loader]
    assert len(pn.fit(model, pn.CrossEntropyLoss(), opt, batches, epochs=1, verbose=0)) == 1


def test_evaluate_and_predict_on_arrays(ctx):
    x, y = blobs()
    model, opt = make(ctx)
    pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=3, verbose=0)
    loader = pn.DataLoader(x, y, batch_size=50, device=ctx.device, dtype=ctx.dtype_name)
    ref = pn.evaluate(model, loader, pn.CrossEntropyLoss())
    for res in (pn.evaluate(model, x, y, pn.CrossEntropyLoss()), pn.evaluate(model, x, y, loss=pn.CrossEntropyLoss(),
                                                                              batch_size=7),
                pn.evaluate(model, (x, y), loss=pn.CrossEntropyLoss())):
        assert res["loss"] == pytest.approx(ref["loss"], rel=1e-5) and res["accuracy"] == ref["accuracy"]
    assert set(pn.evaluate(model, x, y)) == {"accuracy"}
    out = pn.predict(model, x)
    assert out.shape == (96, 3) and (out.argmax(1) == y).mean() == ref["accuracy"]
    np.testing.assert_array_equal(pn.predict(model, (x, y)), out)
    np.testing.assert_array_equal(pn.predict(model, x.tolist()), out)
    np.testing.assert_allclose(pn.predict(model, loader), out, rtol=1e-6)


# -- or get told ----------------------------------------------------------------------------------------------------
def _fit(*args, **kwargs):
    model = pn.Sequential(pn.Dense(2, 3))
    opt = pn.optim.SGD(model.parameters(), lr=0.1)
    return pn.fit(model, pn.CrossEntropyLoss(), opt, *args, verbose=0, **kwargs)


X, Y = blobs(8)
LOADER = pn.DataLoader(X, Y, batch_size=4)


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: _fit(X, Y, 10), TypeError, r"takes the rest by keyword.*fit\(model, loss, opt, x, y, epochs=10, "
                                         r"batch_size=32\)"),
    (lambda: _fit(X), TypeError, r"x \(a numpy.ndarray of shape \(8, 2\)\) without targets.*pn.DataLoader\(x, y, "),
    (lambda: _fit(LOADER, Y), TypeError, r"a loader, Dataset or \(x, y\) pair carries its targets; pass y only "
                                         r"after an array x"),
    (lambda: _fit((X, Y), Y), TypeError, r"\(x, y\) pair carries its targets"),
    (lambda: _fit(LOADER, batch_size=32), TypeError, r"batch_size= applies when fit builds the loader from arrays"),
    (lambda: _fit(LOADER, shuffle=True), TypeError, r"shuffle= applies when fit builds the loader"),
    (lambda: _fit(LOADER, validation_split=0.2), TypeError, r"validation_split= applies when fit builds"),
    (lambda: _fit(X, Y, validation_split=1.5), ValueError, r"validation_split must be a fraction in \(0, 1\)"),
    (lambda: _fit(X, Y, validation_split=0.2, validation_data=(X, Y)), TypeError, r"give one"),
    (lambda: _fit(X, Y, val_loader=LOADER, validation_data=(X, Y)), TypeError, r"one thing under two names"),
    (lambda: _fit(LOADER, 2, epochs=3), TypeError, r"got epochs by position and epochs= as well"),
    (lambda: _fit(X, Y, y=Y), TypeError, r"got y by position and y= as well"),
    (lambda: _fit(5), TypeError, r"needs training data and got int 5.*pn.DataLoader\(x, y, batch_size=32"),
    (lambda: _fit([X, X]), TypeError, r"needs \(xb, yb\) batches from its loader, but it yielded a "
                                      r"numpy.ndarray of shape \(8, 2\)"),
    (lambda: _fit(X, Y, epochs=Y), ValueError, r"epochs must be a non-negative int, got a numpy.ndarray of shape"),
    (lambda: pn.evaluate(pn.Dense(2, 3), X), TypeError, r"evaluate got x .* without targets: pass evaluate\(model, "
                                                        r"x, y\)"),
    (lambda: pn.evaluate(pn.Dense(2, 3), LOADER, Y), TypeError, r"a loader, Dataset or \(x, y\) pair carries"),
    (lambda: pn.evaluate(pn.Dense(2, 3), X, Y, "mse"), TypeError, r"evaluate's loss must be a portanet loss"),
    (lambda: pn.predict(pn.Dense(2, 3), LOADER, batch_size=8), TypeError, r"batch_size= applies to arrays"),
])
def test_habits_that_cannot_work_get_a_short_portanet_error(call, exc, pattern):
    with pytest.raises(exc, match=pattern) as info:
        call()
    assert len(str(info.value)) < 400 and "[[" not in str(info.value)      # short, and never prints an array


# -- the loss's value is not a gradient -----------------------------------------------------------------------------
def _step(ctx, alone=False):
    """A model (make's Sequential, or a Dense(2, 3) alone), its loss and the loss's value on 8 samples."""
    if alone:
        pn.seed(0)
        model = pn.Dense(2, 3, device=ctx.device, dtype=ctx.dtype_name)
    else:
        model, _ = make(ctx)
    loss_fn = pn.CrossEntropyLoss()
    x, y = blobs(8)
    loss = loss_fn(model(ctx.asarray(x)), ctx.asarray(y))
    return model, loss_fn, loss


def test_model_backward_of_the_loss_value_names_the_fix(ctx):
    model, loss_fn, loss = _step(ctx)
    with pytest.raises(pn.ShapeError, match=r"got a 0-d array, the loss's value.*model.backward\(loss_fn.backward"):
        model.backward(loss)
    model.backward(loss_fn.backward())                          # the right call still works afterwards


def test_loss_value_backward_names_the_fix(ctx):
    """NumPy, array-api-strict (and CuPy) return a 0-d subclass whose backward() explains itself; torch's tensor
    gets the same backward on the instance (torch's own would say the tensor does not require grad)."""
    model, loss_fn, loss = _step(ctx)
    with pytest.raises(TypeError, match=r"no autograd graph.*model.backward\(loss_fn.backward\(\)\)"):
        loss.backward()
    # still the loss: a number, printable, arithmetic as the library's own 0-d arrays, on the model's device
    plain = loss_fn.forward(model.forward(ctx.asarray(blobs(8)[0])), ctx.asarray(blobs(8)[1]))
    assert float(loss) == float(plain) > 0
    if not ctx.spec.startswith("strict"):             # array-api-strict's arrays take no format spec
        assert f"{float(loss):.4f}" == f"{loss:.4f}"
    assert str(float(loss))[:5] in str(loss)
    assert float(loss * 2 + 1) == pytest.approx(2 * float(plain) + 1, rel=1e-6)
    assert ctx.device.holds(loss) and tuple(loss.shape) == ()
    assert ctx.host(loss).shape == ()


# -- model.backward takes dL/d(output) and nothing else ---------------------------------------------------------------
def _other_dtype(ctx):
    return "float64" if ctx.dtype_name == "float32" else "float32"


NOT_A_GRADIENT = [
    ("the loss object", lambda ctx, m, L, lv: L, TypeError, r"got the loss object CrossEntropyLoss\(\) itself"),
    ("loss_fn.backward uncalled", lambda ctx, m, L, lv: L.backward, TypeError,
     r"got the method CrossEntropyLoss.backward, not called.*add the parentheses"),
    ("float(loss)", lambda ctx, m, L, lv: float(lv), TypeError, r"got the number .* \(the loss's value\?\)"),
    ("the loss's value", lambda ctx, m, L, lv: lv, pn.ShapeError, r"got a 0-d array, the loss's value"),
    ("a NumPy scalar", lambda ctx, m, L, lv: np.float32(1.0), pn.ShapeError, r"got a 0-d array"),
    ("another shape", lambda ctx, m, L, lv: ctx.asarray(np.zeros((8, 4))), pn.ShapeError,
     r"got a gradient of shape \(8, 4\).*for the last forward's batch"),
    ("another batch", lambda ctx, m, L, lv: ctx.asarray(np.zeros((7, 3))), pn.ShapeError,
     r"got a gradient of shape \(7, 3\)"),
    ("another dtype", lambda ctx, m, L, lv: ctx.device.asarray(np.zeros((8, 3)), dtype=_other_dtype(ctx)), TypeError,
     r"got a float(64|32) gradient.*(never upcasts silently: every grad would become float64|never converts "
     r"silently).*xp.astype\(dy, xp.float(32|64)\)"),
]


@pytest.mark.parametrize("alone", [False, True], ids=["Sequential", "Dense"])
@pytest.mark.parametrize("case", NOT_A_GRADIENT, ids=[c[0] for c in NOT_A_GRADIENT])
def test_backward_of_what_is_not_a_gradient_names_the_expected_array_and_the_fix(ctx, case, alone):
    name, make_dy, exc, pattern = case
    model, loss_fn, loss = _step(ctx, alone)
    expected = (rf"takes dL/d\(output\), an array shaped like (the model's|its) output \(8, 3\) \(batch, \.\.\.\) on "
                rf"{ctx.device} in {ctx.dtype_name}.*model.backward\(loss_fn.backward\(\)\)")
    with pytest.raises(exc, match=pattern) as info:
        model.backward(make_dy(ctx, model, loss_fn, loss))
    assert re.search(expected, str(info.value)), str(info.value)
    assert all(p.grad is None for p in model.parameters())          # refused before any gradient was touched
    model.backward(loss_fn.backward())                                # the right call still works afterwards
    assert all(ctx.device.holds(p.grad) and p.grad.dtype == ctx.dtype for p in model.parameters())


def test_a_host_gradient_is_taken_where_model_x_takes_the_host_array_and_refused_elsewhere(ctx):
    """Where model(x) takes a NumPy array through DLPack (cpu, torch:cpu), backward takes a NumPy gradient the same
    way and gives the same gradients; on array-api-strict (no DLPack) it names the device and the fix."""
    model, _ = make(ctx)
    x = ctx.asarray(blobs(8)[0])
    model(x)
    dy = np.random.default_rng(1).standard_normal((8, 3)).astype(ctx.dtype_name)
    if ctx.spec.startswith("strict") or ctx.device.is_gpu:
        with pytest.raises(pn.DeviceMismatchError, match=rf"got a numpy.ndarray on cpu; it takes .* on {ctx.device}"
                                                         r".*asarray\(dy\)"):
            model.backward(dy)
        return
    model.backward(dy)
    by_host = [ctx.host(p.grad).copy() for p in model.parameters()]
    model.zero_grad()
    model(x)
    model.backward(ctx.asarray(dy))
    for a, p in zip(by_host, model.parameters()):
        np.testing.assert_array_equal(a, ctx.host(p.grad))


# -- NumPy's numbers are numbers --------------------------------------------------------------------------------------
def _params():
    return pn.Dense(2, 2).parameters()


NUMPY_NUMBERS = [
    ("DataLoader batch_size", lambda: pn.DataLoader(X, Y, batch_size=np.int64(4)).batch_size, 4),
    ("EarlyStopping patience", lambda: pn.EarlyStopping("loss", patience=np.int64(2)).patience, 2),
    ("EarlyStopping start_from_epoch", lambda: pn.EarlyStopping("loss", start_from_epoch=np.int32(1)).start_from_epoch,
     1),
    ("EarlyStopping min_delta", lambda: pn.EarlyStopping("loss", min_delta=np.float32(0.5)).min_delta, 0.5),
    ("Dense", lambda: pn.Dense(np.int64(20), np.uint8(2)).weight.shape, (20, 2)),
    ("Maxout", lambda: pn.Maxout(np.int64(4), np.int64(3), np.int64(2)).weight.shape, (4, 6)),
    ("BatchNorm1d", lambda: pn.BatchNorm1d(np.int64(5), momentum=np.float32(0.5)).num_features, 5),
    ("PReLU", lambda: pn.PReLU(np.int64(3)).weight.shape, (3,)),
    ("Dropout", lambda: pn.Dropout(np.float32(0.5)).p, 0.5),
    ("SGD lr, momentum", lambda: pn.optim.SGD(_params(), lr=np.float32(0.5), momentum=np.float64(0.25)).defaults,
     {"lr": 0.5, "momentum": 0.25, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}),
    ("Adam betas", lambda: pn.optim.Adam(_params(), betas=[np.float32(0.5), 0.75]).defaults["betas"], (0.5, 0.75)),
    ("StepLR", lambda: pn.optim.StepLR(pn.optim.SGD(_params(), lr=1.0), np.int64(2)).step_size, 2),
    ("CosineAnnealingLR", lambda: pn.optim.CosineAnnealingLR(pn.optim.SGD(_params(), lr=1.0), np.int64(4)).T_max, 4),
    ("LinearWarmup", lambda: pn.optim.LinearWarmup(pn.optim.SGD(_params(), lr=1.0), np.int64(3)).warmup, 3),
    ("RandomShift", lambda: pn.RandomShift(np.int64(2)).pixels, 2),
    ("clip_grad_norm", lambda: float(pn.optim.clip_grad_norm(_graded(), np.float32(1.0))), 5.0),
]


def _graded():
    p = pn.Parameter(np.zeros(2, np.float32))
    p.grad = np.array([3.0, 4.0], np.float32)
    return [p]


@pytest.mark.parametrize("case", NUMPY_NUMBERS, ids=[c[0] for c in NUMPY_NUMBERS])
def test_numpy_integers_and_floats_are_taken_where_python_numbers_are(case):
    name, make_it, expected = case
    got = make_it()
    assert got == expected
    # stored as Python's numbers (what checkpoints save as JSON, what array-api-strict takes as a scalar)
    for v in (got.values() if isinstance(got, dict) else got if isinstance(got, tuple) else [got]):
        assert type(v) in (int, float, bool)


def test_seed_takes_a_numpy_integer():
    pn.seed(3)
    a = pn.Dense(4, 3).weight.data.copy()
    pn.seed(np.int64(3))
    np.testing.assert_array_equal(pn.Dense(4, 3).weight.data, a)


def test_numpy_numbers_train_as_python_numbers_on_every_backend(ctx):
    x, y = blobs()
    runs = []
    for lr, mu, bs, patience in ((0.125, 0.875, 16, 2), (np.float32(0.125), np.float64(0.875), np.int64(16),
                                                        np.int64(2))):
        model, _ = make(ctx)
        opt = pn.optim.SGD(model.parameters(), lr=lr, momentum=mu)
        pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=2, batch_size=bs, verbose=0,
               callbacks=[pn.EarlyStopping("loss", patience=patience)])
        runs.append(weights(model))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    # and bool is not a number here, as before
    with pytest.raises(ValueError, match="batch_size must be a positive int, got True"):
        pn.DataLoader(x, y, batch_size=True)


def test_one_callback_is_taken_as_a_list_of_one(ctx):
    x, y = blobs()
    logs = []
    for callbacks in ([pn.EarlyStopping("loss", patience=0, min_delta=10.0)],
                      pn.EarlyStopping("loss", patience=0, min_delta=10.0)):
        model, opt = make(ctx)
        logs.append(pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=5, callbacks=callbacks, verbose=0)["loss"])
    assert len(logs[0]) == 2 and logs[0] == logs[1]        # stopped after the second epoch either way


def test_save_keeps_numpy_numbers_as_numbers(tmp_path):
    model = pn.Dense(2, 2)
    pn.save(tmp_path / "c.npz", model, epoch=np.int64(3), accuracy=np.float32(0.5), best=np.bool_(True))
    meta = pn.load(tmp_path / "c.npz", model)
    assert meta == {"epoch": 3, "accuracy": 0.5, "best": True} and type(meta["epoch"]) is int


def test_pytorch_ignore_index_labels_are_told_to_drop_the_samples(ctx):
    # -100 marks samples to skip in PyTorch (ignore_index); the message said "give the last layer more outputs"
    y = np.array([0, 2, -100, 1])
    x = np.random.default_rng(0).standard_normal((4, 5))
    fix = r"negative labels are no class; to skip samples as PyTorch's ignore_index=-100 does, drop them first " \
          r"\(keep = y >= 0, then x\[keep\], y\[keep\]\)"
    for loss in (pn.CrossEntropyLoss(), pn.NLLLoss()):
        with pytest.raises(ValueError, match=r"labels in \[-100, 2\] but the model has 3 classes \(labels 0..2\): "
                                             + fix):
            loss(ctx.asarray(x[:, :3]), ctx.device.asarray(y))
    model = pn.Sequential(pn.Dense(5, 3), device=ctx.device).to(dtype=ctx.dtype_name)
    opt = pn.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"the loader's labels span \[-100, 2\].*" + fix):
        pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=1, verbose=0)
    keep = y >= 0                                 # the fix, as the message writes it, trains
    assert len(pn.fit(model, pn.CrossEntropyLoss(), opt, x[keep], y[keep], epochs=1, verbose=0)) == 1
    with pytest.raises(ValueError, match=r"labels in \[1, 3\].*give the last layer more outputs"):
        pn.CrossEntropyLoss()(ctx.asarray(x[:, :3]), ctx.device.asarray(np.array([1, 3, 2, 1])))


# -- PyTorch's module and optimizer methods -----------------------------------------------------------------------
def test_cpu_and_cuda_move_as_pytorchs(ctx):
    model, _ = make(ctx)
    x, _ = blobs(8)
    want = ctx.host(model(ctx.asarray(x)))
    assert model.cpu() is model and model.device == pn.device("cpu")
    np.testing.assert_allclose(model(x.astype(ctx.dtype_name)), want, **ctx.tol)
    try:
        pn.device("cuda")
    except pn.DeviceUnavailableError as e:
        with pytest.raises(pn.DeviceUnavailableError, match=re.escape(str(e)[:40])):
            model.cuda()
        assert model.device == pn.device("cpu")          # a refused move leaves the model where it was
    else:
        assert model.cuda() is model and model.device == pn.device("cuda")


def test_zero_grad_set_to_none_false_zeros_in_place(ctx):
    model, opt = make(ctx)
    x, y = blobs(8)
    loss = pn.CrossEntropyLoss()
    loss(model(ctx.asarray(x)), ctx.asarray(y))
    model.backward(loss.backward())
    grads = [p.grad for p in model.parameters()]
    opt.zero_grad(set_to_none=False)
    for p, g in zip(model.parameters(), grads):
        assert p.grad is g and not np.any(ctx.host(p.grad))
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_fit_on_arrays_takes_drop_last_for_batchnorm(ctx):
    """33 samples in batches of 16 leave a last batch of one, on which BatchNorm cannot train (as in PyTorch): the
    error names drop_last, which fit's array form now takes."""
    x, y = blobs(33)
    pn.seed(0)
    model = pn.Sequential(pn.Dense(2, 8), pn.BatchNorm1d(8), pn.ReLU(), pn.Dense(8, 3), device=ctx.device)
    model.to(dtype=ctx.dtype_name)
    opt = pn.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(pn.ShapeError, match=r"drop_last=True \(in the DataLoader, or fit's\)"):
        pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=1, batch_size=16, verbose=0)
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=2, batch_size=16, drop_last=True, verbose=0)
    assert hist.epoch == [0, 1] and all(np.isfinite(hist["loss"]))
    loader = pn.DataLoader(x, y, batch_size=16, device=ctx.device, dtype=ctx.dtype_name)
    with pytest.raises(TypeError, match=r"fit's drop_last= applies when fit builds the loader from arrays"):
        pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=1, drop_last=True, verbose=0)


def test_float16_data_trains_where_the_device_holds_it_and_names_the_fix_where_not(ctx):
    """NumPy and torch hold float16 data and the loader converts each batch to the model's dtype; array-api-strict
    has no float16 (the standard has none), and its refusal used to name no fix."""
    x, y = blobs(32)
    model, opt = make(ctx)
    if ctx.spec.startswith("strict"):
        with pytest.raises(TypeError, match=rf"cannot place a float16 array on {ctx.device}: array-api-strict takes "
                                            r"bool, int, uint, float32 and float64 arrays.*x.astype\('float32'\)"):
            pn.fit(model, pn.CrossEntropyLoss(), opt, x.astype(np.float16), y, verbose=0)
        x = x.astype(np.float16).astype(ctx.dtype_name)          # the fix it names
    else:
        x = x.astype(np.float16)
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=2, verbose=0)
    assert hist.epoch == [0, 1] and all(np.isfinite(hist["loss"]))
