"""fit / evaluate / predict, callbacks, checkpoints and resuming."""
import numpy as np
import pytest

import portanet as pn


def blobs(n=240, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[2, 0], [-2, 1], [0, -2]], dtype=np.float32)
    y = rng.integers(0, 3, n)
    return (centers[y] + 0.5 * rng.standard_normal((n, 2))).astype(np.float32), y


def make(device="cpu", dropout=0.0, seed=0):
    pn.seed(seed)
    layers = [pn.Dense(2, 16, device=device), pn.ReLU(device=device)]
    if dropout:
        layers.append(pn.Dropout(dropout, device=device))
    model = pn.Sequential(*layers, pn.Dense(16, 3, device=device), device=device)
    return model, pn.optim.Adam(model.parameters(), lr=0.02)


def test_fit_reaches_a_stated_loss(ctx):
    x, y = blobs()
    model, opt = make(ctx.device)
    loader = pn.DataLoader(x, y, batch_size=32, shuffle=True, seed=0, device=ctx.device)
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=15, val_loader=loader, verbose=0)
    assert hist["loss"][-1] < 0.15 and hist["accuracy"][-1] > 0.95
    assert hist["loss"][0] > hist["loss"][-1]
    assert len(hist.epoch) == 15 and set(hist.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    res = pn.evaluate(model, loader, pn.CrossEntropyLoss())
    assert res["accuracy"] == pytest.approx(hist["val_accuracy"][-1])
    out = pn.predict(model, x, batch_size=50)
    assert isinstance(out, np.ndarray) and out.shape == (240, 3)
    assert (out.argmax(1) == y).mean() == pytest.approx(res["accuracy"])


def test_fit_continues_where_it_stopped():
    x, y = blobs()
    model, opt = make()
    loader = pn.DataLoader(x, y, batch_size=32, shuffle=True, seed=0)
    h1 = pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=2, verbose=0)
    h2 = pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=2, verbose=0)
    assert h1.epoch == [0, 1] and h2.epoch == [2, 3]


class Snapshots(pn.Callback):
    """Each epoch's logs and the model's weights at its end (a callback placed before the one under test)."""

    def __init__(self):
        self.logs, self.weights = {}, {}

    def on_epoch_end(self, epoch, logs):
        self.logs[epoch], self.weights[epoch] = dict(logs), self.trainer.model.state_dict()


def test_early_stopping_restores_the_best_weights():
    x, y = blobs()
    model, opt = make()
    loader = pn.DataLoader(x, y, batch_size=32, shuffle=True, seed=0)
    val = pn.DataLoader(*blobs(90, seed=1), batch_size=90)
    seen = Snapshots()
    opt.lr = 0.3  # noisy enough that val_loss goes back up
    stopper = pn.EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=40, val_loader=val, callbacks=[seen, stopper],
                  verbose=0)
    best = min(seen.logs, key=lambda e: seen.logs[e]["val_loss"])
    assert stopper.best_epoch == best and len(hist.epoch) < 40
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, seen.weights[best][k])


def test_checkpoint_resume_matches_an_uninterrupted_run(tmp_path):
    x, y = blobs()

    def run(epochs, resume_from=None, path=None):
        model, opt = make(dropout=0.2)
        sched = pn.optim.StepLR(opt, 1, gamma=0.7)
        loader = pn.DataLoader(x, y, batch_size=32, shuffle=True, seed=4)
        if resume_from:
            pn.load(resume_from, model, opt, loader=loader)
        cbs = [pn.LearningRateScheduler(sched)] + ([pn.ModelCheckpoint(path)] if path else [])
        pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=epochs, callbacks=cbs, verbose=0)
        return model

    straight = run(4)
    ckpt = tmp_path / "ckpt.npz"
    run(2, path=str(ckpt))
    resumed = run(2, resume_from=ckpt)
    for k, v in straight.state_dict().items():
        np.testing.assert_array_equal(v, resumed.state_dict()[k])


def test_checkpoint_moves_between_devices(tmp_path):
    model, opt = make("strict:device1")
    pn.save(tmp_path / "m.npz", model, opt, epoch=3)
    before = {p.data.device for p in model.parameters()}
    assert all(str(d) == "array_api_strict.Device('device1')" for d in before)  # saving never moves the model
    other, other_opt = make("torch:cpu", seed=5)
    meta = pn.load(tmp_path / "m.npz", other, other_opt)
    assert meta == {"epoch": 3}
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, other.state_dict()[k])


def test_csv_logger_and_scheduler_function(tmp_path):
    x, y = blobs(64)
    model, opt = make()
    loader = pn.DataLoader(x, y, batch_size=32)
    pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=3, verbose=0,
           callbacks=[pn.CSVLogger(tmp_path / "log.csv"), pn.LearningRateScheduler(lambda e, lr: 0.1 / (e + 1))])
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 4
    assert opt.lr == pytest.approx(0.1 / 3)


def test_history_plot(tmp_path):
    pytest.importorskip("matplotlib")
    x, y = blobs(64)
    model, opt = make()
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, pn.DataLoader(x, y, batch_size=32), epochs=2, verbose=0)
    assert hist.plot(tmp_path / "h.png") == tmp_path / "h.png"
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_one_line_per_epoch_without_a_terminal(capsys):
    x, y = blobs(64)
    model, opt = make()
    pn.fit(model, pn.CrossEntropyLoss(), opt, pn.DataLoader(x, y, batch_size=32), epochs=2, verbose=1)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("epoch 1/2 - loss ") and "accuracy" in err[0]


def test_model_and_loader_on_different_devices():
    x, y = blobs(64)
    model, opt = make("strict:device1")
    with pytest.raises(pn.DeviceMismatchError, match="pass device=model.device to the DataLoader"):
        pn.fit(model, pn.CrossEntropyLoss(), opt, pn.DataLoader(x, y, device="cpu"), verbose=0)


def test_confusion_matrix_and_accuracy_on_the_device(ctx):
    pred = ctx.asarray(np.array([0, 1, 1, 2, 2, 2]))
    truth = ctx.asarray(np.array([0, 1, 2, 2, 2, 0]))
    cm = ctx.host(pn.metrics.confusion_matrix(pred, truth, 3))
    np.testing.assert_array_equal(cm, [[1, 0, 1], [0, 1, 0], [0, 1, 2]])
    logits = ctx.asarray(np.eye(3)[[0, 1, 1, 2, 2, 2]])
    assert float(ctx.host(pn.metrics.accuracy(logits, truth))) == pytest.approx(4 / 6)


def test_monitoring_a_metric_fit_does_not_log_says_so():
    x, y = blobs(64)
    model, opt = make()
    with pytest.raises(ValueError, match="monitors 'val_loss'.*pass val_loader= to fit"):
        pn.fit(model, pn.CrossEntropyLoss(), opt, pn.DataLoader(x, y, batch_size=32), epochs=1, verbose=0,
               callbacks=[pn.EarlyStopping()])


# -- EarlyStopping and ModelCheckpoint count as Keras does ----------------------------------------------------------
class Script(pn.Callback):
    """Replaces fit's val_loss with scripted values; it runs before the callbacks under test, on the same logs."""

    def __init__(self, values, key="val_loss"):
        self.values, self.key = values, key

    def on_epoch_end(self, epoch, logs):
        logs[self.key] = self.values[epoch]


def _scripted_fit(values, *callbacks, key="val_loss"):
    x, y = blobs(32)
    model, opt = make()
    loader = pn.DataLoader(x, y, batch_size=32)
    return pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=len(values), verbose=0,
                  callbacks=[Script(values, key), *callbacks])


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
def test_early_stopping_runs_one_plus_patience_epochs_without_improvement(ctx, patience):
    # the reported case: lr 0, so val_loss never improves; Keras and Lightning run 1 + patience epochs (the first
    # sets the best; patience 0 stops at the first epoch without improvement, as patience 1 does)
    x, y = blobs(64)
    model, _ = make(ctx.device)
    model.to(dtype=ctx.dtype_name)
    opt = pn.optim.SGD(model.parameters(), lr=0.0)
    loader = pn.DataLoader(x, y, batch_size=32, device=ctx.device, dtype=ctx.dtype_name)
    stopper = pn.EarlyStopping("val_loss", patience=patience)
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=10, val_loader=loader, callbacks=[stopper],
                  verbose=0)
    assert len(hist.epoch) == 1 + max(patience, 1)
    assert stopper.best_epoch == 0 and stopper.stopped_epoch == max(patience, 1)


@pytest.mark.parametrize("values,kwargs,epochs_run,best_epoch", [
    # improvements restart the wait; 3 epochs without one stop at the third
    ([5, 4, 4.5, 4.2, 3.9, 4, 4, 4, 1], dict(patience=3), 8, 4),
    # min_delta: 4.95 is not better than 5 by more than 0.1, 4.85 is; 4.45 is not better than 4.5
    ([5, 4.95, 4.85, 4.5, 4.45, 4.45, 1], dict(patience=2, min_delta=0.1), 6, 3),
    # mode max (accuracies); "auto" reads the name
    ([0.5, 0.6, 0.55, 0.58, 0.9], dict(monitor="val_accuracy", patience=2), 4, 1),
    # baseline: improving but never below 3 stops after patience epochs (at least two)
    ([5, 4.5, 4, 3.5, 3.2], dict(patience=2, baseline=3.0), 2, 1),
    ([5, 4.5, 4, 3.5, 3.2], dict(patience=3, baseline=3.0), 3, 2),
    ([5, 2.5, 2.6, 2.7, 2.8], dict(patience=2, baseline=3.0), 4, 1),
    # NaN never improves
    ([1, float("nan"), float("nan"), 0.5], dict(patience=2), 3, 0),
    # start_from_epoch: the first two epochs are not watched
    ([1, 2, 3, 4, 5, 6], dict(patience=1, start_from_epoch=2), 4, 2),
])
def test_early_stopping_semantics_follow_keras(values, kwargs, epochs_run, best_epoch):
    key = kwargs.get("monitor", "val_loss")
    stopper = pn.EarlyStopping(**{"monitor": key, **kwargs})
    hist = _scripted_fit(values, stopper, key=key)
    assert len(hist.epoch) == epochs_run and stopper.best_epoch == best_epoch
    assert stopper.stopped_epoch == (epochs_run - 1 if epochs_run < len(values) else None)


def test_early_stopping_restores_the_best_even_without_stopping():
    seen = Snapshots()
    stopper = pn.EarlyStopping(patience=5, restore_best_weights=True)
    x, y = blobs(32)
    model, opt = make()
    pn.fit(model, pn.CrossEntropyLoss(), opt, pn.DataLoader(x, y, batch_size=8), epochs=4, verbose=0,
           callbacks=[Script([3, 1, 2, 2]), seen, stopper])
    assert stopper.stopped_epoch is None and stopper.best_epoch == 1
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, seen.weights[1][k])


@pytest.mark.parametrize("values,verbose,told", [([3, 1, 2, 2], 1, "2 (val_loss = 1.0000; the last epoch run was 4)"),
                                                  ([3, 2, 2, 1], 1, None), ([3, 1, 2, 2], 0, None)])
def test_early_stopping_says_it_restored_only_when_it_did(ctx, capsys, values, verbose, told):
    """Keras 3 prints "Restoring model weights from the end of the best epoch: N." in verbose mode; portanet said
    "restored the weights of epoch N" even when N was the last epoch, whose weights the model holds already."""
    seen = Snapshots()
    x, y = blobs(32)
    model, opt = make(ctx.device)
    model.to(dtype=ctx.dtype_name)
    opt = pn.optim.SGD(model.parameters(), lr=0.1)
    stopper = pn.EarlyStopping(patience=5, restore_best_weights=True)
    pn.fit(model, pn.CrossEntropyLoss(), opt, pn.DataLoader(x, y, batch_size=8, device=ctx.device,
                                                            dtype=ctx.dtype_name),
           epochs=4, verbose=verbose, callbacks=[Script(values), seen, stopper])
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("EarlyStopping")]
    assert said == ([f"EarlyStopping: restored the weights from the end of the best epoch, {told}"] if told else [])
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, seen.weights[stopper.best_epoch][k])


def test_model_checkpoint_saves_only_strict_improvements(tmp_path):
    path = str(tmp_path / "ckpt-{epoch}.npz")
    _scripted_fit([float("nan"), 3, 2, 2, 2.5, 1], pn.ModelCheckpoint(path, save_best_only=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-2.npz", "ckpt-3.npz", "ckpt-6.npz"]
    for p in tmp_path.iterdir():
        p.unlink()
    _scripted_fit([3, 2.5, 2, 2.2, 1.9], pn.ModelCheckpoint(path, save_best_only=True, initial_value_threshold=2.5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-3.npz", "ckpt-5.npz"]
    for p in tmp_path.iterdir():
        p.unlink()
    _scripted_fit([0.5, 0.7, 0.6], pn.ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True),
                  key="val_accuracy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-1.npz", "ckpt-2.npz"]


def test_a_direction_auto_cannot_read_must_be_given():
    with pytest.raises(ValueError, match="cannot tell whether 'lr' should go down or up: pass mode='min'"):
        pn.EarlyStopping("lr")
    assert pn.EarlyStopping("lr", mode="max").mode == "max"
    assert pn.ModelCheckpoint("x.npz", monitor="lr").save_best_only is False     # saving every epoch: no direction


# -- metrics follow what the model outputs ------------------------------------------------------------------------
def _separable(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    x[:, 0] += np.where(x[:, 0] > 0, 0.3, -0.3)           # a margin around x0 = 0
    return x, (x[:, 0] > 0).astype(np.float64)[:, None]


@pytest.mark.parametrize("logits", [False, True])
def test_accuracy_of_a_sigmoid_or_logit_output_matches_the_truth(ctx, logits):
    # the reported case: Dense(2, 1) + Sigmoid with BCELoss logged 0.46 while every prediction was right
    x, y = _separable()
    pn.seed(0)
    layers = [pn.Dense(2, 1, dtype=ctx.dtype_name, device=ctx.device)] + ([] if logits else [pn.Sigmoid()])
    model = pn.Sequential(*layers, device=ctx.device)
    loss = pn.BCEWithLogitsLoss() if logits else pn.BCELoss()
    opt = pn.optim.Adam(model.parameters(), lr=0.05)
    hist = pn.fit(model, loss, opt, x, y, epochs=10, batch_size=32, verbose=0)
    out = pn.predict(model, x)[:, 0]
    truth = ((out > (0.0 if logits else 0.5)) == (y[:, 0] > 0.5)).mean()
    assert truth == 1.0
    assert pn.evaluate(model, x, y, loss)["accuracy"] == 1.0
    assert hist["accuracy"][-1] == 1.0


OUT = np.array([[0.9, 0.2, 0.6], [0.4, 0.7, 0.1]])
TARGET = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])


@pytest.mark.parametrize("loss,out,target,expected", [
    # multi-label, per element as Keras' binary_accuracy: row 0 gets 2 of 3 right, row 1 gets 2 of 3
    (pn.BCELoss(), OUT, TARGET, 4 / 6),
    (pn.BCEWithLogitsLoss(), np.log(OUT / (1 - OUT)), TARGET, 4 / 6),
    # one column: probabilities at 0.5, logits at 0
    (pn.BCELoss(), np.array([[0.3], [0.6], [0.8]]), np.array([[0.0], [0.0], [1.0]]), 2 / 3),
    (pn.BCEWithLogitsLoss(), np.array([[0.3], [0.6], [-0.8]]), np.array([[0.0], [1.0], [1.0]]), 1 / 3),
    # classes: argmax against labels
    (pn.CrossEntropyLoss(), OUT, np.array([0, 0]), 1 / 2),
    (pn.NLLLoss(), np.log(OUT), np.array([0, 1]), 1.0),
    (pn.HingeLoss(), OUT, np.array([2, 1]), 1 / 2),
])
def test_accuracy_follows_the_loss(ctx, loss, out, target, expected):
    model = pn.Sequential(pn.Identity(), device=ctx.device)       # outputs its input: the accuracy is exact
    res = pn.evaluate(model, out.astype(np.float32), target.astype(np.float32 if target.dtype.kind == "f"
                                                                     else np.int64), loss, batch_size=1)
    assert res["accuracy"] == pytest.approx(expected, abs=1e-12)


def test_a_regression_logs_no_accuracy_and_refuses_one(ctx):
    x, y = _separable(40)
    pn.seed(0)
    model = pn.Sequential(pn.Dense(2, 1, dtype=ctx.dtype_name), device=ctx.device)
    opt = pn.optim.SGD(model.parameters(), lr=0.01)
    for loss in (pn.MSELoss(), pn.L1Loss(), pn.HuberLoss()):
        hist = pn.fit(model, loss, opt, x, y, epochs=1, validation_data=(x, y), verbose=0)
        assert set(hist.history) == {"loss", "val_loss", "lr", "seconds"}
        assert set(pn.evaluate(model, x, y, loss)) == {"loss"}
        with pytest.raises(ValueError, match="a regression's outputs are not classes.*'categorical_accuracy'"):
            pn.fit(model, loss, opt, x, y, metrics=("accuracy",), verbose=0)
        with pytest.raises(ValueError, match="a regression's outputs are not classes"):
            pn.evaluate(model, x, y, loss, metrics=("accuracy",))


def test_named_accuracies_and_accuracy_without_a_loss(ctx):
    onehot = np.eye(3)[[0, 2, 1, 1]]
    scores = np.array([[0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.3, 0.4, 0.3], [0.5, 0.2, 0.3]])
    model = pn.Sequential(pn.Identity(), device=ctx.device)
    # MSE on one-hot targets (the textbook network): categorical_accuracy is the argmax
    res = pn.evaluate(model, scores, onehot, pn.MSELoss(), metrics=("categorical_accuracy", "binary_accuracy"))
    assert res["categorical_accuracy"] == 0.75
    assert res["binary_accuracy"] == pytest.approx(9 / 12)      # elements on the right side of 0.5
    # no loss: the shape decides; one column thresholds at 0 unless the model ends in Sigmoid
    assert pn.evaluate(model, scores, onehot)["accuracy"] == 0.75
    z = np.array([[-0.2], [0.1], [0.3]])
    t = np.array([[1.0], [1.0], [0.0]])
    assert pn.evaluate(model, z, t)["accuracy"] == pytest.approx(1 / 3)
    squashed = pn.Sequential(pn.Identity(), pn.Sigmoid(), device=ctx.device)
    # sigmoid(z) > 0.5 iff z > 0; thresholding the probabilities at 0 would call all three positive (2/3)
    assert pn.evaluate(squashed, z, t)["accuracy"] == pytest.approx(1 / 3)
    assert pn.evaluate(model, z + 0.35, t)["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        pn.evaluate(model, z, t, metrics=("f1",))


def _identity_dense(ctx):
    """Dense(1, 1) with weight 1 and bias 0: trainable (an optimizer can hold it) and outputs its input exactly."""
    model = pn.Sequential(pn.Dense(1, 1), device=ctx.device).to(dtype=ctx.dtype_name)
    model.load_state_dict({"0.weight": np.ones((1, 1)), "0.bias": np.zeros(1)})
    return model


def test_binary_accuracy_thresholds_logits_at_0_and_probabilities_at_half(ctx):
    # logits 0.3, 0.6, -0.8, 0.2 against 1, 1, 0, 1 are all right at 0; at 0.5 (Keras' fixed threshold) half wrong
    z = np.array([[0.3], [0.6], [-0.8], [0.2]])
    t = np.array([[1.0], [1.0], [0.0], [1.0]])
    model = _identity_dense(ctx)
    for metrics in ("binary_accuracy", ("binary_accuracy", "accuracy")):
        res = pn.evaluate(model, z, t, pn.BCEWithLogitsLoss(), metrics=metrics)
        assert all(res[k] == 1.0 for k in res if k != "loss")
    opt = pn.optim.SGD(model.parameters(), lr=0.0)
    hist = pn.fit(model, pn.BCEWithLogitsLoss(), opt, z, t, batch_size=2, metrics="binary_accuracy", verbose=0)
    assert hist["binary_accuracy"] == [1.0]
    # the same numbers as probabilities (BCELoss): 0.5 is the threshold; and a regression's outputs estimate 0/1
    # targets, so binary_accuracy there is at 0.5 too
    p = np.array([[0.3], [0.6], [0.1], [0.7]])
    assert pn.evaluate(model, p, t, pn.BCELoss(), metrics="binary_accuracy")["binary_accuracy"] == 0.75
    assert pn.evaluate(model, p, t, pn.MSELoss(), metrics="binary_accuracy")["binary_accuracy"] == 0.75
    # without a loss: logits unless the model ends in Sigmoid or Softmax
    assert pn.evaluate(model, z, t, metrics="binary_accuracy")["binary_accuracy"] == 1.0
    squashed = pn.Sequential(pn.Identity(), pn.Sigmoid(), device=ctx.device)
    assert pn.evaluate(squashed, z, t, metrics="binary_accuracy")["binary_accuracy"] == 1.0


def test_the_reported_logit_model_with_binary_accuracy(ctx):
    # Dense(2, 1) whose logits lie in (0.19, 0.78), with BCEWithLogitsLoss: every logit is > 0, so it predicts 1
    # everywhere and is right on the 46% of samples labelled 1 (thresholding at 0.5 reported 1.0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)[:, None]
    model = pn.Sequential(pn.Dense(2, 1), device=ctx.device).to(dtype=ctx.dtype_name)
    model.load_state_dict({"0.weight": np.array([[0.1], [0.0]]), "0.bias": np.array([0.5])})
    truth = float(((pn.predict(model, x)[:, 0] > 0) == (y[:, 0] > 0.5)).mean())
    assert truth == 0.46
    res = pn.evaluate(model, x, y, loss=pn.BCEWithLogitsLoss(), metrics="binary_accuracy")
    assert res["binary_accuracy"] == pytest.approx(truth, abs=1e-12)
    hist = pn.fit(model, pn.BCEWithLogitsLoss(), pn.optim.SGD(model.parameters(), lr=0.0), x, y, epochs=1,
                  metrics="binary_accuracy", verbose=0)
    assert hist["binary_accuracy"][-1] == pytest.approx(truth, abs=1e-12)


LOGITS = np.array([[2.0, -1.0], [0.5, 0.4], [-0.3, 1.5], [-2.0, -0.1]])
MULTI = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])     # rows not one-hot: multi-label


@pytest.mark.parametrize("as_batches", [False, True], ids=["arrays", "iterable"])
def test_accuracy_without_a_loss_follows_the_last_layer_and_the_targets(ctx, as_batches):
    """evaluate(model, x, y) without a loss: a final Sigmoid means probabilities per element at any width, 0/1 rows
    that are not one-hot mean multi-label, float targets that are not classes mean a regression (no accuracy).
    The targets are read from the loader's host arrays, or, for any other iterable, from its first batch."""
    def ev(model, x, t, **kw):
        if as_batches:
            data = [(ctx.asarray(x[:2]), ctx.asarray(t[:2])), (ctx.asarray(x[2:]), ctx.asarray(t[2:]))]
            return pn.evaluate(model, data, **kw)
        return pn.evaluate(model, x, t, **kw)

    sigmoid = pn.Sequential(pn.Identity(), pn.Sigmoid(), device=ctx.device)
    plain = pn.Sequential(pn.Identity(), device=ctx.device)
    softmax = pn.Sequential(pn.Identity(), pn.Softmax(), device=ctx.device)
    # per element, each of the 8 entries: 2 + 2 + 1 + 0 right (the argmax of the rows would give 2 of 4)
    per_element = float(((LOGITS > 0) == (MULTI > 0.5)).mean())
    assert per_element == 5 / 8
    assert ev(sigmoid, LOGITS, MULTI)["accuracy"] == pytest.approx(per_element)       # was 0.5 (argmax)
    assert ev(plain, LOGITS, MULTI)["accuracy"] == pytest.approx(per_element)
    # the same model with the loss it would train with agrees
    assert pn.evaluate(sigmoid, LOGITS, MULTI, pn.BCELoss())["accuracy"] == pytest.approx(per_element)
    # one-hot rows and labels are classes: the argmax (also for a final Softmax)
    onehot = np.eye(2)[[0, 0, 1, 1]]
    assert ev(plain, LOGITS, onehot)["accuracy"] == 1.0
    assert ev(softmax, LOGITS, onehot)["accuracy"] == 1.0
    assert ev(plain, LOGITS, np.array([0, 1, 1, 1]))["accuracy"] == 0.75
    assert ev(plain, LOGITS, np.eye(2)[[0, 0, 1, 1]] * 0.8 + 0.1)["accuracy"] == 1.0      # soft labels
    # a regression target: no accuracy, and asking for one says why
    y = np.array([[3.7], [-1.2], [0.4], [2.5]])
    assert ev(plain, LOGITS[:, :1], y) == {}
    assert ev(sigmoid, LOGITS[:, :1], y) == {}
    with pytest.raises(ValueError, match=r"without a loss, on float targets that are not classes.*a regression"):
        ev(plain, LOGITS[:, :1], y, metrics=("accuracy",))
    assert set(ev(plain, LOGITS[:, :1], y, loss=pn.MSELoss())) == {"loss"}


# -- the logged loss is per sample, for every reduction -----------------------------------------------------------
def test_the_reported_sum_reduction_logs_the_per_sample_mean(ctx):
    # squared errors 1, 1, 1, 1, 16 in batches of 2: the mean per sample is 4.0 (not 4.8, batch sums weighted by size)
    x = np.array([[1.0], [1.0], [1.0], [1.0], [4.0]])
    model = pn.Sequential(pn.Identity(), device=ctx.device)
    for reduction in ("sum", "mean"):
        res = pn.evaluate(model, x, np.zeros((5, 1)), pn.MSELoss(reduction=reduction), batch_size=2)
        assert res["loss"] == pytest.approx(4.0, rel=1e-6)


def _loss_cases():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 11)
    probs = rng.uniform(0.05, 0.95, (11, 4))
    return [
        (pn.MSELoss, rng.standard_normal((11, 4)), rng.standard_normal((11, 4))),
        (pn.L1Loss, rng.standard_normal((11, 4)), rng.standard_normal((11, 4))),
        (pn.HuberLoss, 2 * rng.standard_normal((11, 4)), rng.standard_normal((11, 4))),
        (pn.BCELoss, probs, (rng.random((11, 4)) > 0.5).astype(float)),
        (pn.BCEWithLogitsLoss, rng.standard_normal((11, 4)), (rng.random((11, 4)) > 0.5).astype(float)),
        (pn.CrossEntropyLoss, rng.standard_normal((11, 4)), labels),
        (pn.NLLLoss, np.log(probs / probs.sum(1, keepdims=True)), labels),
        (pn.HingeLoss, rng.standard_normal((11, 4)), labels),
    ]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("case", _loss_cases(), ids=lambda c: c[0].__name__)
def test_logged_loss_is_per_sample_for_every_loss(ctx, case, reduction):
    """fit and evaluate log the whole data's loss per sample: reduction="mean" gives the loss of all the data at
    once, reduction="sum" that sum over the number of samples; uneven batches (4, 4, 3) count by samples."""
    cls, out, target = case
    model = pn.Sequential(pn.Identity(), device=ctx.device)
    t = target.astype(np.int64) if target.dtype.kind == "i" else target.astype(np.float32)
    whole = float(ctx.host(cls(reduction=reduction)(ctx.asarray(out, "float32"),
                                                    ctx.asarray(t) if t.dtype.kind == "i" else
                                                    ctx.asarray(t, "float32"))))
    expected = whole / 11 if reduction == "sum" else whole
    logged = pn.evaluate(model, out.astype(np.float32), t, cls(reduction=reduction), batch_size=4)["loss"]
    assert logged == pytest.approx(expected, rel=1e-5)


def test_fit_logs_the_same_per_sample_loss_as_evaluate(ctx):
    x, y = blobs(50)
    for reduction in ("mean", "sum"):
        model, _ = make(ctx.device)
        model.to(dtype=ctx.dtype_name)
        opt = pn.optim.SGD(model.parameters(), lr=0.0)         # the weights stay, so every pass sees one loss
        hist = pn.fit(model, pn.CrossEntropyLoss(reduction=reduction), opt, x, y, epochs=1, batch_size=16,
                      validation_data=(x, y), verbose=0)
        ev = pn.evaluate(model, x, y, pn.CrossEntropyLoss(reduction="mean"))
        assert hist["loss"][0] == pytest.approx(ev["loss"], rel=1e-5)
        assert hist["val_loss"][0] == pytest.approx(ev["loss"], rel=1e-5)


# -- dtype follows the model ---------------------------------------------------------------------------------------
def test_predict_evaluate_and_fit_take_the_models_dtype(ctx64):
    x, y = blobs(40)
    model, _ = make(ctx64.device)
    model.to(dtype="float64")
    out = pn.predict(model, x)                                   # float64 data into a float64 model
    assert out.dtype == np.float64
    ref = ctx64.host(model(ctx64.asarray(x, "float64")))
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    assert pn.evaluate(model, x, y, pn.CrossEntropyLoss())["loss"] > 0
    opt = pn.optim.SGD(model.parameters(), lr=0.1)
    assert len(pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=2, verbose=0)) == 2
    # a model without parameters computes in its device's default, float32
    assert pn.predict(pn.Sequential(pn.Identity(), device=ctx64.device), x).dtype == np.float32


def test_a_loader_in_another_dtype_says_so():
    x, y = blobs(40)
    model, opt = make()
    model.to(dtype="float64")
    loader = pn.DataLoader(x, y)
    for call in (lambda: pn.fit(model, pn.CrossEntropyLoss(), opt, loader, verbose=0),
                 lambda: pn.evaluate(model, loader), lambda: pn.predict(model, loader)):
        with pytest.raises(TypeError, match="model computes in float64 but the loader delivers float32 batches.*"
                                            "dtype='float64'"):
            call()


def test_model_checkpoint_path_names_logged_values_as_keras_does(tmp_path, ctx):
    # Keras' "ckpt-{epoch:02d}-{val_loss:.2f}": a bare KeyError 'val_loss' once the first epoch had trained
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 3)), rng.integers(0, 2, 20)
    model = pn.Sequential(pn.Dense(3, 2), device=ctx.device).to(dtype=ctx.dtype_name)
    opt = pn.optim.SGD(model.parameters(), lr=0.1)
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=2, validation_split=0.25, verbose=0,
                  callbacks=[pn.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.npz"))])
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"ckpt-{e:02d}-{v:.2f}.npz"
                                                         for e, v in zip((1, 2), hist["val_loss"])]
    with pytest.raises(ValueError, match=r"names \{val_acc\}, which fit does not log; it can name: epoch, accuracy, "
                                         r"loss, lr, seconds, val_accuracy, val_loss"):
        pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=1, validation_split=0.25, verbose=0,
               callbacks=[pn.ModelCheckpoint(str(tmp_path / "{val_acc:.3f}.npz"))])


def test_learning_rate_scheduler_takes_keras_one_argument_schedules(ctx):
    # Keras calls schedule(epoch, lr), and schedule(epoch) where that is all it takes; here the latter raised
    # Python's "<lambda>() takes 1 positional argument but 2 were given" at the first epoch
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 3)), rng.integers(0, 2, 16)
    model = pn.Sequential(pn.Dense(3, 2), device=ctx.device).to(dtype=ctx.dtype_name)
    opt = pn.optim.SGD(model.parameters(), lr=0.1)
    for schedule in (lambda epoch: 0.1 / 2 ** epoch, lambda epoch, lr: np.float32(0.1) / 2 ** epoch,
                     lambda *args: 0.1 / 2 ** args[0]):
        hist = pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=3, verbose=0,
                      callbacks=[pn.LearningRateScheduler(schedule)])
        assert hist["lr"] == [pytest.approx(0.1), pytest.approx(0.05), pytest.approx(0.025)]
        assert all(type(v) is float for v in hist["lr"])
    with pytest.raises(TypeError, match=r"takes a function schedule\(epoch, lr\) -> lr or a schedule object.*got "
                                        r"float: for a constant rate, set it on the optimizer"):
        pn.LearningRateScheduler(0.01)
    with pytest.raises(TypeError, match=r"the schedule returned None for epoch 1; it must return the learning rate"):
        pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=1, verbose=0,
               callbacks=[pn.LearningRateScheduler(lambda epoch, lr: None)])
