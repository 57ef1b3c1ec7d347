"""State survives moves and copies: a Dropout keeps its seed (and, between NumPy and array-api-strict, its stream)
when its model moves, and models pickle and deep-copy after training on every backend."""
import copy
import pickle

import numpy as np
import pytest

import portanet as pn


def _mask(model):
    x = model.device.asarray(np.ones((4, 16), np.float32))
    return model.device.to_host(model(x))


@pytest.mark.parametrize("spec", ["strict:CPU_DEVICE", "strict:device1"])
def test_a_moved_dropout_draws_the_masks_it_draws_on_the_cpu(spec):
    cpu = _mask(pn.Sequential(pn.Dropout(0.5, seed=2), device="cpu"))
    moved = _mask(pn.Sequential(pn.Dropout(0.5, seed=2), device=spec))
    np.testing.assert_array_equal(cpu, moved)
    assert 0 < (cpu == 0).mean() < 1


def test_a_dropout_in_use_continues_its_stream_when_moved():
    a, b = pn.Dropout(0.5, seed=4), pn.Dropout(0.5, seed=4)
    x = np.ones((3, 10), np.float32)
    a(x), b(x)
    b.to("strict:device1")
    np.testing.assert_array_equal(a.device.to_host(a(x)), b.device.to_host(b(b.device.asarray(x))))


def test_torch_dropout_keeps_its_seed_when_moved():
    """torch's generator is not NumPy's: a model moved there draws torch's stream of the same seed, reproducibly."""
    first = _mask(pn.Sequential(pn.Dropout(0.5, seed=2), device="torch:cpu"))
    again = _mask(pn.Sequential(pn.Dropout(0.5, seed=2), device="torch:cpu"))
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("placed", ["moved", "built there"])
def test_float64_training_with_dropout_agrees_on_numpy_and_strict(placed):
    """After pn.seed(0), README's 1e-10: a model built on the default device and moved (the usual way to write it),
    or built layer by layer on the device."""
    results = {}
    for spec in ("cpu", "strict:device1"):
        pn.seed(0)
        rng = np.random.default_rng(1)
        x, y = rng.standard_normal((120, 5)), rng.integers(0, 3, 120)
        d = None if placed == "moved" else pn.device(spec)
        model = pn.Sequential(pn.Dense(5, 16, device=d, dtype="float64"), pn.ReLU(device=d),
                              pn.Dropout(0.3, device=d), pn.Dense(16, 3, device=d, dtype="float64"), device=spec)
        loader = pn.DataLoader(x, y, batch_size=12, shuffle=True, seed=2, device=spec, dtype="float64")
        pn.fit(model, pn.CrossEntropyLoss(), pn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), loader,
               epochs=3, verbose=0)
        results[spec] = model.state_dict()
    for k, v in results["cpu"].items():
        np.testing.assert_allclose(results["strict:device1"][k], v, rtol=1e-10, atol=1e-10)


def test_models_pickle_and_deepcopy_after_training(ctx):
    model = pn.Sequential(pn.Dense(4, 8), pn.ReLU(), pn.Dropout(0.5), pn.BatchNorm1d(8), pn.Dense(8, 2),
                          device=ctx.device).to(dtype=ctx.dtype_name)
    opt = pn.optim.Adam(model.parameters())
    x = ctx.randn(6, 4)
    y = ctx.asarray(np.array([0, 1, 0, 1, 1, 0]))
    loss = pn.CrossEntropyLoss()
    loss(model(x), y)
    model.backward(loss.backward())
    opt.step()
    twins = [pickle.loads(pickle.dumps(model)), copy.deepcopy(model)]
    for twin in twins:
        for (k, v), w in zip(model.state_dict().items(), twin.state_dict().values()):
            np.testing.assert_array_equal(v, w)
        assert twin.device == model.device
    # each copy's dropout continues the original's stream: the next training forward is the same
    want = ctx.host(model(x))
    for twin in twins:
        np.testing.assert_array_equal(ctx.host(twin(x)), want)


def _resume_run(tmp_path, dropout, first, then=None):
    """2 epochs on ``first``, saved; then 2 more: on ``then`` after loading the checkpoint there (None: straight on)."""
    pn.seed(0)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((96, 6)), rng.integers(0, 3, 96)

    def build(spec):
        layers = [pn.Dense(6, 32, dtype="float64"), pn.ReLU()] + ([pn.Dropout(0.3, seed=5)] if dropout else [])
        model = pn.Sequential(*layers, pn.Dense(32, 3, dtype="float64"), device=spec)
        opt = pn.optim.Adam(model.parameters(), lr=0.01)
        loader = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=3, device=spec, dtype="float64")
        return model, opt, loader

    model, opt, loader = build(first)
    pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=2, verbose=0)
    if then is not None:
        pn.save(tmp_path / "c.npz", model, opt, loader=loader)
        model, opt, loader = build(then)
        pn.load(tmp_path / "c.npz", model, opt, loader=loader)
    pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=2, verbose=0)
    return model.state_dict()


@pytest.mark.parametrize("dropout", [False, True], ids=["no dropout", "dropout"])
@pytest.mark.parametrize("then", ["strict:device1", "torch:cpu"])
def test_a_checkpoint_resumed_on_another_backend(tmp_path, then, dropout):
    """What README says holds: weights, optimizer, schedule and shuffling resume on any backend; Dropout's stream
    resumes where the generator that saved it draws (NumPy and array-api-strict share one), while torch draws its
    own masks, so with Dropout a CPU checkpoint continued on torch:cpu is not the straight run (the step restores
    no generator of another kind)."""
    straight = _resume_run(tmp_path, dropout, "cpu")
    resumed = _resume_run(tmp_path, dropout, "cpu", then)
    close = all(np.allclose(resumed[k], v, rtol=1e-10, atol=1e-10) for k, v in straight.items())
    assert close == (then == "strict:device1" or not dropout)
    assert all(np.isfinite(v).all() for v in resumed.values())
