"""Promises: non-finite losses stop training clearly; checkpoints survive SIGKILL; resumed runs continue
exactly, in a new process; loading never unpickles; one seed gives one result."""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile

import numpy as np
import pytest

import portanet as pn
from test_train import Snapshots

F32 = np.float32


def _loader(x, y, **kw):
    return pn.DataLoader(x, y, batch_size=10, **kw)


def _model(seed=0):
    pn.seed(seed)
    return pn.Sequential(pn.Dense(3, 8), pn.Tanh(), pn.Dense(8, 2))


def _poisoned():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 3)).astype(F32)
    x[27, 1] = np.nan           # batch index 2 (samples 20..29): step 3
    return x, rng.integers(0, 2, 60)


def test_nonfinite_loss_names_epoch_and_step():
    x, y = _poisoned()
    model = _model()
    with pytest.raises(pn.NonFiniteError, match=r"epoch 1, step 3: lower the learning rate.*TerminateOnNaN"):
        pn.fit(model, pn.CrossEntropyLoss(), pn.optim.SGD(model.parameters(), lr=0.1), _loader(x, y), verbose=0)


def test_nonfinite_inputs_raise_nonfinite_error_without_numpys_warning_first(ctx):
    """NumPy (and array-api-strict, which computes with it) printed "RuntimeWarning: invalid value encountered in
    matmul" before fit's NonFiniteError; the step runs without NumPy's floating-point warnings, and only there."""
    x, y = _poisoned()
    x[27, 1] = np.inf
    model = _model().to(ctx.device, dtype=ctx.dtype_name)
    before = np.geterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Tanh takes the inf to 1, so step 3's loss is finite; its gradient is not, and step 4's loss is NaN
        with pytest.raises(pn.NonFiniteError, match=r"epoch 1, step 4"):
            pn.fit(model, pn.CrossEntropyLoss(), pn.optim.SGD(model.parameters(), lr=0.1),
                   _loader(x, y, device=ctx.device, dtype=ctx.dtype_name), verbose=0)
    assert np.geterr() == before                     # NumPy still warns outside fit's step
    with pytest.warns(RuntimeWarning, match="invalid value"):
        np.float32(np.inf) - np.float32(np.inf)


def test_terminate_on_nan_stops_cleanly_with_good_weights():
    x, y = _poisoned()
    model = _model()
    before = model.state_dict()
    hist = pn.fit(model, pn.CrossEntropyLoss(), pn.optim.SGD(model.parameters(), lr=0.1), _loader(x, y), epochs=3,
                  callbacks=[pn.TerminateOnNaN()], verbose=0)
    after = model.state_dict()
    assert hist.epoch == [0] and np.isnan(hist["loss"][0])      # the stopped epoch is logged, as Keras logs it
    assert all(np.all(np.isfinite(v)) for v in after.values())
    for k in before:   # no refresh happened before the bad step here, so the epoch's starting weights remain
        np.testing.assert_array_equal(after[k], before[k])


def test_terminate_on_nan_logs_the_epoch_it_stops_as_keras_does(ctx, tmp_path):
    """Keras' TerminateOnNaN sets stop_training in on_batch_end, and fit still validates that epoch and calls every
    on_epoch_end (its History's too) before it stops: the user sees the NaN loss. Here the first epoch goes bad at
    its ninth step; validation runs on the weights kept."""
    x, y = _poisoned()
    clean = np.nan_to_num(x)
    model = _model().to(ctx.device, dtype=ctx.dtype_name)
    seen, csv = Snapshots(), tmp_path / "log.csv"
    loader = pn.DataLoader(np.concatenate([clean, x]), np.concatenate([y, y]), batch_size=10, device=ctx.device,
                           dtype=ctx.dtype_name)
    val = pn.DataLoader(clean, y, batch_size=10, device=ctx.device, dtype=ctx.dtype_name)
    hist = pn.fit(model, pn.CrossEntropyLoss(), pn.optim.SGD(model.parameters(), lr=0.1), loader, epochs=3,
                  val_loader=val, callbacks=[pn.TerminateOnNaN(), seen, pn.EarlyStopping("val_loss"),
                                             pn.CSVLogger(csv)], verbose=0)
    assert hist.epoch == [0] and len(hist) == 1
    assert np.isnan(hist["loss"][0]) and np.isfinite(hist["val_loss"][0]) and 0 <= hist["val_accuracy"][0] <= 1
    assert list(seen.logs) == [0] and np.isnan(seen.logs[0]["loss"])
    assert "nan" in csv.read_text().splitlines()[1]
    assert all(np.all(np.isfinite(v)) for v in model.state_dict().values())
    # the validation numbers are the kept weights' own
    np.testing.assert_allclose(pn.evaluate(model, val, loss=pn.CrossEntropyLoss())["loss"], hist["val_loss"][0],
                               rtol=1e-6)


def test_gradcheck_refuses_nonfinite_inputs():
    with pytest.raises(pn.NonFiniteError):
        pn.gradcheck(pn.MSELoss(), (np.array([[np.inf]]), np.array([[0.0]])))


# -- crash safety -------------------------------------------------------------------------------------------------
SAVER = textwrap.dedent("""
    import sys, numpy as np, portanet as pn
    path = sys.argv[1]
    pn.seed(0)
    model = pn.Sequential(pn.Dense(512, 1024), pn.ReLU(), pn.Dense(1024, 512))
    opt = pn.optim.Adam(model.parameters())
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        for p in model.parameters():
            p.data += 1.0          # every checkpoint differs from the last
        pn.save(path, model, opt, generation=i)
""")


def test_checkpoint_survives_sigkill_at_random_moments(tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    path = tmp_path / "ckpt.npz"
    pn.seed(0)
    model = pn.Sequential(pn.Dense(512, 1024), pn.ReLU(), pn.Dense(1024, 512))
    initial = model.state_dict()
    pn.save(path, model, generation=0)
    rng = random.Random(0)
    kills, mid_save, generations = 0, 0, []
    for cycle in range(12):
        child = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait()
        kills += 1
        leftovers = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
        mid_save += bool(leftovers)
        for f in leftovers:       # a temporary file is never the checkpoint: it is hidden and ends in .tmp
            assert f.startswith(".ckpt.npz.")
            os.unlink(tmp_path / f)
        assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".npz")) == ["ckpt.npz"]
        meta = pn.load(path, model)            # complete and loadable: the previous or the new checkpoint
        generations.append(meta["generation"])
        for k, v in model.state_dict().items():   # all of one generation, never half of each
            np.testing.assert_allclose(v, initial[k] + meta["generation"], atol=1e-3 * (1 + meta["generation"]))
        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None
    assert kills == 12 and mid_save >= 1, f"no kill landed during a save ({mid_save}); the test proved little"
    assert max(generations) > 0


# -- exact resume across processes ----------------------------------------------------------------------------------
TRAINER = textwrap.dedent("""
    import sys, numpy as np, portanet as pn
    device, epochs, ckpt, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dtype = sys.argv[5] if len(sys.argv) > 5 else "float64" if device.startswith("strict") else "float32"
    pn.seed(0)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((96, 6)), rng.integers(0, 3, 96)
    d = pn.device(device)
    model = pn.Sequential(pn.Dense(6, 32, device=d, dtype=dtype), pn.ReLU(device=d), pn.Dropout(0.3, device=d),
                          pn.Dense(32, 3, device=d, dtype=dtype), device=d)
    opt = pn.optim.Adam(model.parameters(), lr=0.01)
    sched = pn.optim.StepLR(opt, 1, gamma=0.8)
    loader = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=3, device=d, dtype=dtype)
    if ckpt != "-" and epochs < 0:
        pn.load(ckpt, model, opt, loader=loader)
        epochs = -epochs
    pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=epochs, verbose=0,
           callbacks=[pn.LearningRateScheduler(sched)] + ([pn.ModelCheckpoint(ckpt)] if ckpt != "-" else []))
    np.savez(out, **model.state_dict())
""")


def _train(tmp_path, *args):
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    subprocess.run([sys.executable, str(script), *map(str, args)], check=True, capture_output=True, text=True)


def test_resume_in_a_new_process_continues_exactly(tmp_path, ctx):
    """2 epochs + save + a new process + load + 2 epochs gives the weights of 4 straight epochs, bit for bit, on
    every backend (Dropout's generator, the shuffling position, Adam's state and StepLR all resume)."""
    _train(tmp_path, ctx.spec, 4, "-", tmp_path / "straight.npz", ctx.dtype_name)
    _train(tmp_path, ctx.spec, 2, tmp_path / "ckpt.npz", tmp_path / "half.npz", ctx.dtype_name)
    _train(tmp_path, ctx.spec, -2, tmp_path / "ckpt.npz", tmp_path / "resumed.npz", ctx.dtype_name)
    a, b = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resumed.npz")
    half = np.load(tmp_path / "half.npz")
    assert a.files
    for k in a.files:
        assert not np.array_equal(a[k], half[k])
        np.testing.assert_array_equal(a[k], b[k])


# -- untrusted files ----------------------------------------------------------------------------------------------
class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('PORTANET_PWNED', '/tmp/portanet-pwned')}",))


def test_a_pickled_checkpoint_is_refused_without_unpickling(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PORTANET_PWNED", str(marker))
    path = tmp_path / "evil.npz"
    model = pn.Dense(2, 2)
    pn.save(path, model)
    with zipfile.ZipFile(path, "a") as z:      # smuggle a pickled object array next to the real entries
        import io as _io

        buf = _io.BytesIO()
        np.save(buf, np.array([Exploit()], dtype=object), allow_pickle=True)
        z.writestr("model/weight_extra.npy", buf.getvalue())
    with pytest.raises(pn.CheckpointError, match="pickled object array; portanet never unpickles"):
        pn.load(path, model)
    assert not marker.exists()


@pytest.mark.parametrize("key,array,msg", [
    ("model/extra", np.zeros(2), "unexpected"),
    ("evil/key", np.zeros(2), "unexpected entry 'evil/key'"),
    ("model/weight", np.array(["a", "b"]), "entry 'model/weight' has dtype <U1"),
    ("model/bias", np.zeros(2, complex), "entry 'model/bias' has dtype complex128"),
])
def test_unexpected_keys_and_dtypes_are_refused_by_name(tmp_path, key, array, msg):
    path = tmp_path / "c.npz"
    model = pn.Dense(2, 2)
    pn.save(path, model)
    with np.load(path) as z:
        entries = {k: z[k] for k in z.files}
    entries[key] = array
    np.savez(path, **entries)
    with pytest.raises(pn.CheckpointError, match=msg):
        pn.load(path, model)


# -- determinism --------------------------------------------------------------------------------------------------
def test_same_seed_is_bit_identical_across_processes(tmp_path):
    _train(tmp_path, "cpu", 2, "-", tmp_path / "a.npz")
    _train(tmp_path, "cpu", 2, "-", tmp_path / "b.npz")
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    for k in a.files:
        assert a[k].tobytes() == b[k].tobytes()
