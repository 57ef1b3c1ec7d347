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


def test_early_stopping_restores_the_best_weights():
    x, y = blobs()
    model, opt = make()
    loader = pn.DataLoader(x, y, batch_size=32, shuffle=True, seed=0)
    val = pn.DataLoader(*blobs(90, seed=1), batch_size=90)
    seen = {}

    class Spy(pn.Callback):
        def on_epoch_end(self, epoch, logs):
            seen[epoch] = (logs["val_loss"], self.trainer.model.state_dict())

    opt.lr = 0.3  # noisy enough that val_loss goes back up
    stopper = pn.EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=40, val_loader=val, callbacks=[Spy(), stopper],
                  verbose=0)
    best = min(seen, key=lambda e: seen[e][0])
    assert stopper.best_epoch == best and len(hist.epoch) < 40
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, seen[best][1][k])


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
