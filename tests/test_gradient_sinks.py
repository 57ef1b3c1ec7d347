"""Gradient sinks (portanet/step/sinks.py): inside fit (a TrainStep), SGD with momentum takes each weight gradient
x.T @ dy straight into its momentum buffer through one GEMM. fit must train exactly as the documented loop
(zero_grad, backward, step) does, on every backend, and leave no sink armed behind it."""
import numpy as np
import pytest

import portanet as pn
from portanet.backends import kernels
from portanet.step import sinks

SGD_OPTIONS = [dict(momentum=0.9), dict(momentum=0.9, weight_decay=1e-2), dict(momentum=0.5, dampening=0.3),
               dict(momentum=0.9, nesterov=True), dict()]


def _data(n=96):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 12)), rng.integers(0, 4, n)


class SquareTwice(pn.Module):
    """z = (x @ W) @ W: one weight used twice in one layer, so its gradient is the sum of two products."""

    def __init__(self, n, device=None):
        super().__init__(device)
        self.weight = pn.Parameter(pn.init.get("glorot_uniform")((n, n), device=self.device,
                                                                  dtype=self.device.dtype(None)))

    def forward(self, x):
        self._x, self._y = x, x @ self.weight.data
        return self._y @ self.weight.data

    def backward(self, dz, input_grad=True):
        w = self.weight.data
        self.weight.accumulate_product(self._y, dz)
        dy = dz @ w.T
        self.weight.accumulate_product(self._x, dy)
        return dy @ w.T


def _model(ctx, shared=False):
    pn.seed(5)
    if shared:
        model = pn.Sequential(pn.Dense(12, 16), pn.ReLU(), SquareTwice(16), pn.Tanh(), pn.Dense(16, 4))
    else:
        model = pn.Sequential(pn.Dense(12, 16), pn.ReLU(), pn.Dense(16, 16), pn.Tanh(), pn.Dense(16, 4))
    model.to(dtype=ctx.dtype_name)
    return model.to(ctx.spec)


def _train(ctx, opts, use_fit, shared=False, epochs=3):
    x, y = _data()
    model = _model(ctx, shared)
    opt = pn.optim.SGD(model.parameters(), lr=0.05, **opts)
    loss = pn.CrossEntropyLoss()
    loader = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=2, device=ctx.spec, dtype=ctx.dtype_name)
    fit_or_documented_loop(use_fit, model, loss, opt, loader, epochs)
    return model, opt


def fit_or_documented_loop(use_fit, model, loss, opt, loader, epochs):
    """``epochs`` epochs of pn.fit (use_fit), or of the loop README documents: zero_grad, backward, step."""
    if use_fit:
        pn.fit(model, loss, opt, loader, epochs=epochs, metrics=(), verbose=0)
        return
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for xb, yb in loader:
            loss.forward(model.forward(xb), yb)
            opt.zero_grad()
            model.backward(loss.backward(), input_grad=False)
            opt.step()


def _armed(opt):
    return [fg for flat in opt._flat for fg in flat or () if fg.momentum is not None or fg.taken]


def _sinks_used(ctx, opts):
    return (ctx.spec == "cpu" and kernels.get("gemm_tn") is not None and opts.get("momentum", 0) > 0
            and not opts.get("nesterov"))


@pytest.mark.parametrize("opts", SGD_OPTIONS, ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()) or "plain")
def test_fit_trains_as_the_documented_loop_does(ctx, opts):
    """Weights and momentum buffers after three epochs of fit equal those of the hand-written loop; on NumPy with
    plain or dampened momentum fit took the Dense weights' gradients into the buffers (their grad stays None)."""
    model, opt = _train(ctx, opts, use_fit=True)
    ref_model, ref_opt = _train(ctx, opts, use_fit=False)
    for (name, p), ref in zip(model.named_parameters(), ref_model.parameters()):
        ctx.close(p.data, ctx.host(ref.data), rtol=1e-5, atol=1e-6)
        if opts.get("momentum"):
            ctx.close(opt.state[p]["momentum_buffer"], ctx.host(ref_opt.state[ref]["momentum_buffer"]),
                      rtol=1e-5, atol=1e-6)
        took = _sinks_used(ctx, opts) and name.endswith("weight")
        assert (p.grad is None) == took, name
        assert p.sink is opt._flat[0][0]          # the flat gradient buffer stays the sink; its momentum part is off
    assert not _armed(opt)


def test_a_weight_with_two_products_a_step_takes_both(ctx):
    model, _ = _train(ctx, dict(momentum=0.9), use_fit=True, shared=True)
    ref, _ = _train(ctx, dict(momentum=0.9), use_fit=False, shared=True)
    assert len(model.parameters()) == 5
    for p, q in zip(model.parameters(), ref.parameters()):
        ctx.close(p.data, ctx.host(q.data), rtol=1e-5, atol=1e-6)
    assert (model[2].weight.grad is None) == _sinks_used(ctx, dict(momentum=0.9))


def test_sequential_refuses_a_layer_used_twice():
    relu = pn.ReLU()
    with pytest.raises(ValueError, match="one ReLU object at '1' and again at '3'.*new ReLU"):
        pn.Sequential(pn.Dense(2, 3), relu, pn.Dense(3, 3), relu)
    inner = pn.Dense(3, 3)
    with pytest.raises(ValueError, match="one Dense object at '0.1' and again at '1'"):
        pn.Sequential(pn.Sequential(pn.Dense(2, 3), inner), inner)


def test_only_a_train_step_arms_sinks_and_only_with_the_gemm_kernel(standard_code):
    """Outside a step a product lands in grad (the flat buffer's segment); sinks.arm arms nothing without the GEMM
    kernel, or for an optimizer that needs the gradient itself (Adam, Nesterov)."""
    p = pn.Parameter(np.zeros((3, 2), np.float32))
    a, b = np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)
    sgd = pn.optim.SGD([p], lr=0.1, momentum=0.9)
    p.accumulate_product(a, b)
    np.testing.assert_array_equal(p.grad, np.full((3, 2), 4.0))
    assert p.grad is sgd._flat[0][0].grad_views[0] or kernels.get("gemm_tn") is None
    q = pn.Parameter(np.zeros((3, 2), np.float32))
    assert sinks.arm(pn.optim.Adam([q])) == 0
    assert sinks.arm(pn.optim.SGD([q], lr=0.1, momentum=0.9, nesterov=True)) == 0
    assert standard_code(lambda: sinks.arm(sgd)) == 0
    if kernels.get("gemm_tn") is None:
        pytest.skip(f"no GEMM kernel: {kernels.status()}")
    assert sinks.arm(sgd) == 1
    # no momentum buffer yet: the first step's gradient goes to grad and starts it
    p.grad = None
    p.accumulate_product(a, b)
    assert p.grad is not None
    sgd.step()
    p.grad = None
    p.accumulate_product(a, b)
    assert p.grad is None and p in sgd._flat[0][0].taken
    # a strided input is refused by the kernel: that product goes to grad, and step adds it as well
    p.accumulate_product(np.ones((4, 6), np.float32)[:, ::2], b)
    np.testing.assert_array_equal(p.grad, np.full((3, 2), 4.0))
    sgd.step()
    # buffer: 4 after step 1, then 0.9 * 4 + 4 + 4; w = -0.1 * 4 - 0.1 * 11.6
    np.testing.assert_allclose(sgd.state[p]["momentum_buffer"], np.full((3, 2), 11.6), rtol=1e-6)
    np.testing.assert_allclose(p.data, np.full((3, 2), -1.56), rtol=1e-6)
    sinks.disarm(sgd)
    assert not _armed(sgd)


def test_sinks_are_detached_when_fit_raises(ctx):
    """A loss that blows up raises NonFiniteError out of fit; no parameter keeps a sink, and a loop of one's own
    afterwards sees every gradient in grad."""
    x, y = _data()
    model = _model(ctx)
    opt = pn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x[40, 3] = np.nan                            # the third batch
    loader = pn.DataLoader(x, y, batch_size=16, device=ctx.spec, dtype=ctx.dtype_name)
    with pytest.raises(pn.NonFiniteError):
        pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=5, metrics=(), verbose=0)
    assert not _armed(opt)
    xb, yb = ctx.asarray(x[:16]), ctx.asarray(y[:16])
    loss = pn.CrossEntropyLoss()
    loss.forward(model.forward(xb), yb)
    opt.zero_grad()
    model.backward(loss.backward())
    assert all(p.grad is not None for p in model.parameters())


def test_a_model_copied_during_fit_trains_with_its_own_optimizer():
    """A callback that deep-copies the model mid-fit (the usual "keep the best model") must not copy the running
    optimizer along as the copy's sink: the copy trains later with an optimizer of its own."""
    import copy

    class KeepCopy(pn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            self.copy = copy.deepcopy(self.trainer.model)

    x, y = _data()
    model = pn.Sequential(pn.Dense(12, 16), pn.ReLU(), pn.Dense(16, 4))
    keep = KeepCopy()
    loader = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=2)
    pn.fit(model, pn.CrossEntropyLoss(), pn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), loader,
           epochs=2, callbacks=[keep], verbose=0)
    twin = keep.copy
    assert all(p.sink is None for p in twin.parameters())
    before = [p.data.copy() for p in twin.parameters()]
    opt = pn.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)
    pn.fit(twin, pn.CrossEntropyLoss(), opt, loader, epochs=2, verbose=0)
    for p, old in zip(twin.parameters(), before):
        assert not np.array_equal(p.data, old)
        assert opt.state[p]["momentum_buffer"].shape == old.shape
