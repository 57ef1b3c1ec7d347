"""Flat parameter buffers (portanet/step/flat.py): an optimizer's parameters, gradients and state as views into one
buffer per group and dtype, updated in one call; and everything that must keep working around them (state dicts,
checkpoints, .to(), parameter groups, a parameter added late, values rebound by hand)."""
import copy
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

import portanet as pn
from conftest import Ctx

DATA = pathlib.Path(__file__).parent / "data"


def _model(ctx, seed=0):
    pn.seed(seed)
    model = pn.Sequential(pn.Dense(6, 5), pn.ReLU(), pn.Dense(5, 3))
    return model.to(dtype=ctx.dtype_name).to(ctx.spec)


def _backward(ctx, model, seed=1, skip=()):
    """One backward of a fixed loss; the parameters named in ``skip`` get no gradient."""
    loss = pn.CrossEntropyLoss()
    x = ctx.randn(8, 6, seed=seed)
    y = ctx.asarray(np.random.default_rng(seed).integers(0, 3, 8))
    loss.forward(model(x), y)
    model.backward(loss.backward())
    for name, p in model.named_parameters():
        if name in skip:
            p.grad = None


def test_parameters_are_views_of_one_buffer(ctx):
    model = _model(ctx)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    opt = pn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    (fg,) = opt._flat[0]
    assert fg.size == 6 * 5 + 5 + 5 * 3 + 3 and [p.shape for p in fg.params] == [(6, 5), (5,), (5, 3), (3,)]
    for k, v in model.state_dict().items():                 # flattening keeps every value
        np.testing.assert_array_equal(v, before[k])
    fg.data[...] = 0.0                                       # writing the buffer writes every parameter
    assert all(not np.any(ctx.host(p.data)) for p in model.parameters())


def test_one_update_per_group_and_dtype(ctx, monkeypatch):
    """Every parameter has a gradient: one update call for the group (the fused kernel's on NumPy, _update's
    elsewhere); one parameter without: each of the others on its own, as PyTorch skips a parameter with no grad."""
    model = _model(ctx)
    opt = pn.optim.Adam(model.parameters(), lr=0.01)
    calls = []
    original = opt._apply
    monkeypatch.setattr(opt, "_apply", lambda p, g, st, group: calls.append(p.data.shape) or original(p, g, st, group))
    for step in range(3):
        opt.zero_grad()
        _backward(ctx, model, seed=step)
        opt.step()
    assert calls == [(53,)] * 3
    calls.clear()
    opt.zero_grad()
    _backward(ctx, model, seed=7, skip={"2.bias"})
    opt.step()
    assert calls == [(6, 5), (5,), (5, 3)]
    assert [opt.state[p]["step"] for p in model.parameters()] == [4, 4, 4, 3]
    calls.clear()
    opt.zero_grad()
    _backward(ctx, model, seed=8)
    opt.step()                                               # the steps differ now: parameter by parameter
    assert calls == [(6, 5), (5,), (5, 3), (3,)]


def test_partial_gradients_match_torch(ctx):
    """A parameter without a gradient in some steps is left alone, its Adam step count included, as torch.optim."""
    model = _model(ctx)
    ref = [torch.tensor(ctx.host(p.data), dtype=torch.float64, requires_grad=True) for p in model.parameters()]
    opt = pn.optim.Adam(model.parameters(), lr=0.05, weight_decay=0.01)
    topt = torch.optim.Adam(ref, lr=0.05, weight_decay=0.01)
    for step in range(6):
        opt.zero_grad()
        topt.zero_grad()
        skip = {"0.bias"} if step in (1, 2) else {"2.weight"} if step == 4 else set()
        _backward(ctx, model, seed=step, skip=skip)
        for (name, p), t in zip(model.named_parameters(), ref):
            t.grad = None if p.grad is None else torch.tensor(ctx.host(p.grad), dtype=torch.float64)
        opt.step()
        topt.step()
    for p, t in zip(model.parameters(), ref):
        ctx.close(p.data, t.detach())


def test_counts_on_the_device_advance_once_in_a_step_parameter_by_parameter(ctx):
    """A captured fit keeps Adam's count on the device, one 0-d array for the group (flat.py, counts_to_device).
    An eager step where a parameter has no gradient runs parameter by parameter: the parameters with a gradient
    update as with host counts, and the group's count advances once, in place, not once per parameter."""
    def run(on_device):
        model = _model(ctx)
        opt = pn.optim.Adam(model.parameters(), lr=0.05)
        for step in range(3):
            opt.zero_grad()
            _backward(ctx, model, seed=step, skip={"0.bias"} if step == 2 else set())
            opt.step()
            if step == 0 and on_device:
                for group in opt._flat:
                    for fg in group:
                        fg.counts_to_device(opt)
        return model, opt

    model, opt = run(True)
    ref, _ = run(False)
    counts = {id(opt.state[p]["step"]) for p in model.parameters()}
    count = opt.state[model[0].weight]["step"]
    assert len(counts) == 1 and float(ctx.host(count)) == 3.0       # one array, advanced once a step
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        ctx.close(p.data, ctx.host(q.data))


def test_state_dict_round_trip_continues_bit_for_bit(ctx):
    model, twin = _model(ctx), _model(ctx, seed=9)
    opt = pn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for step in range(3):
        opt.zero_grad()
        _backward(ctx, model, seed=step)
        opt.step()
    twin_opt = pn.optim.SGD(twin.parameters(), lr=0.5)
    twin.load_state_dict(model.state_dict())
    twin_opt.load_state_dict(opt.state_dict())
    views = [p.data for p in twin.parameters()]
    for m, o in ((model, opt), (twin, twin_opt)):
        for step in range(3, 5):
            o.zero_grad()
            _backward(ctx, m, seed=step)
            o.step()
    assert all(p.data is v for p, v in zip(twin.parameters(), views))   # loading kept the flat storage
    for a, b in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(ctx.host(a.data), ctx.host(b.data))
    state = opt.state_dict()["state"]
    assert sorted(state) == [0, 1, 2, 3] and state[2]["momentum_buffer"].shape == (5, 3)


def test_moving_the_model_after_the_optimizer_is_refused_by_name():
    model = _model(Ctx("cpu", "float32"))
    opt = pn.optim.SGD(model.parameters(), lr=0.1)
    model.to("strict:device1")
    model.zero_grad()
    with pytest.raises(pn.DeviceMismatchError, match=r"parameter 0 \(shape \(6, 5\)\) is now float32 \(6, 5\) on "
                                                     r"strict:device1.*create the optimizer after model.to"):
        opt.step()
    opt = pn.optim.SGD(model.parameters(), lr=0.1)          # built after the move: trains there
    x = model.device.asarray(np.ones((2, 6), np.float32))
    model.backward(model(x))
    opt.step()
    assert str(model[0].weight.data.device) == "array_api_strict.Device('device1')"


def test_values_rebound_by_hand_are_taken_into_the_buffer(ctx):
    model = _model(ctx)
    opt = pn.optim.SGD(model.parameters(), lr=0.1)
    view = model[0].bias.data
    model[0].bias.data = ctx.asarray(np.full(5, 7.0))       # as tests and notebooks do
    opt.zero_grad()
    _backward(ctx, model)
    g = ctx.host(model[0].bias.grad)
    opt.step()
    assert model[0].bias.data is view
    ctx.close(view, 7.0 - 0.1 * g)


def test_parameter_groups_each_flat_and_as_torch(ctx):
    model = _model(ctx)
    ps = model.parameters()
    ref = [torch.tensor(ctx.host(p.data), dtype=torch.float64, requires_grad=True) for p in ps]
    opt = pn.optim.SGD([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.3, "weight_decay": 0.1}], lr=0.1,
                       momentum=0.8)
    topt = torch.optim.SGD([{"params": ref[:2]}, {"params": ref[2:], "lr": 0.3, "weight_decay": 0.1}], lr=0.1,
                           momentum=0.8)
    assert [[fg.size for fg in flat] for flat in opt._flat] == [[35], [18]]
    for step in range(4):
        opt.zero_grad()
        _backward(ctx, model, seed=step)
        for p, t in zip(ps, ref):
            t.grad = torch.tensor(ctx.host(p.grad), dtype=torch.float64)
        opt.step()
        topt.step()
    for p, t in zip(ps, ref):
        ctx.close(p.data, t.detach())


def test_a_parameter_added_after_the_optimizer_is_refused_with_the_fix(ctx):
    model = _model(ctx)
    opt = pn.optim.SGD(model.parameters(), lr=0.1)
    extra = pn.Parameter(ctx.asarray(np.ones(4)))
    opt.param_groups[0]["params"].append(extra)
    _backward(ctx, model)
    extra.grad = ctx.asarray(np.ones(4))
    with pytest.raises(ValueError, match=r"parameter 4 \(shape \(4,\)\) was added to SGD's param_groups after the "
                                         r"optimizer was built.*add_param_group"):
        opt.step()
    opt.param_groups[0]["params"].pop()
    opt.add_param_group({"params": [extra], "lr": 0.5})
    opt.step()
    ctx.close(extra.data, np.full(4, 0.5))
    with pytest.raises(ValueError, match="twice"):
        opt.add_param_group({"params": [extra]})


def test_copies_and_pickles_of_a_flattened_model_are_independent(ctx):
    model = _model(ctx)
    opt = pn.optim.SGD(model.parameters(), lr=0.1)
    twin = copy.deepcopy(model)
    opt.zero_grad()
    _backward(ctx, model)
    opt.step()
    assert all(p.sink is None for p in twin.parameters())
    assert not np.array_equal(ctx.host(twin[0].weight.data), ctx.host(model[0].weight.data))
    np.testing.assert_array_equal(ctx.host(twin[0].weight.data), _model(ctx).state_dict()["0.weight"])


def test_a_checkpoint_written_before_flat_buffers_still_loads_and_continues():
    """tests/data/checkpoint_v1.npz was written by portanet before this change (two Adam groups, BatchNorm,
    Dropout, a shuffling loader); loading it and training one more epoch gives what the old code gave."""
    script = f"""
import numpy as np, portanet as pn, sys
rng = np.random.default_rng(1)
x, y = rng.standard_normal((64, 4)).astype(np.float32), rng.integers(0, 3, 64)
pn.seed(5)
model = pn.Sequential(pn.Dense(4, 5), pn.ReLU(), pn.BatchNorm1d(5), pn.Dropout(0.2), pn.Dense(5, 3))
opt = pn.optim.Adam([{{"params": model.parameters()[:2], "lr": 0.01}}, {{"params": model.parameters()[2:], "lr": 0.02}}])
loader = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=99)
meta = pn.load({str(DATA / 'checkpoint_v1.npz')!r}, model, opt, loader=loader)
assert meta == {{"epoch": 2}}, meta
np.testing.assert_array_equal(pn.predict(model.eval(), x[:8]), np.load({str(DATA / 'checkpoint_v1_predictions.npy')!r}))
model.train()
pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=1, verbose=0)
want = np.load({str(DATA / 'checkpoint_v1_continued.npz')!r})
for k, v in model.state_dict().items():
    np.testing.assert_allclose(v, want[k], rtol=1e-6, atol=1e-7)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_a_model_and_its_optimizer_copied_together_continue_as_the_original(ctx, how, opt_name):
    """pickle.dumps((model, opt)) or copy.deepcopy of both (a trainer saved whole): the copy trains on from where
    the original was, bit for bit, and the two never share storage."""
    import pickle

    model = _model(ctx)
    make = {"SGD": lambda ps: pn.optim.SGD(ps, lr=0.1, momentum=0.9),
            "Adam": lambda ps: pn.optim.Adam(ps, lr=0.01)}[opt_name]
    opt = make(model.parameters())
    for step in range(2):
        opt.zero_grad()
        _backward(ctx, model, seed=step)
        opt.step()
    twin, twin_opt = pickle.loads(pickle.dumps((model, opt))) if how == "pickle" else copy.deepcopy((model, opt))
    for m, o in ((model, opt), (twin, twin_opt)):
        for step in range(2, 5):
            o.zero_grad()
            _backward(ctx, m, seed=step)
            o.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(ctx.host(p.data), ctx.host(q.data))
    assert all(q.data is v for q, v in zip(twin.parameters(), twin_opt._flat[0][0].data_views))
    twin_opt._flat[0][0].data[...] = 0.0
    assert np.any(ctx.host(model[0].weight.data))
    assert not np.any(ctx.host(twin[0].weight.data))
