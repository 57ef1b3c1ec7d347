"""Every loss: finite differences (float64) and PyTorch (value and gradient), both reductions."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import portanet as pn

N, C = 6, 4


def _data(kind, rng):
    z = rng.standard_normal((N, C))
    if kind == "labels":
        return z, rng.integers(0, C, N)
    if kind == "probs":
        t = rng.random((N, C))
        return z, t / t.sum(1, keepdims=True)
    if kind == "binary":
        return z, rng.integers(0, 2, (N, C)).astype(float)
    if kind == "sigmoid":
        return 1 / (1 + np.exp(-z)), rng.random((N, C))
    if kind == "logprobs":
        return z - np.log(np.exp(z).sum(1, keepdims=True)), rng.integers(0, C, N)
    return z, rng.standard_normal((N, C))


def _t(a):
    a = np.asarray(a)
    return torch.tensor(a, dtype=torch.float64 if a.dtype.kind == "f" else torch.int64)


LOSSES = [
    ("MSE", lambda r: pn.MSELoss(r), lambda p, t, r: F.mse_loss(p, t, reduction=r), "regression"),
    ("L1", lambda r: pn.L1Loss(r), lambda p, t, r: F.l1_loss(p, t, reduction=r), "regression"),
    ("Huber", lambda r: pn.HuberLoss(r, delta=0.8), lambda p, t, r: F.huber_loss(p, t, reduction=r, delta=0.8),
     "regression"),
    ("BCE", lambda r: pn.BCELoss(r), lambda p, t, r: F.binary_cross_entropy(p, t, reduction=r), "sigmoid"),
    ("BCEWithLogits", lambda r: pn.BCEWithLogitsLoss(r),
     lambda p, t, r: F.binary_cross_entropy_with_logits(p, t, reduction=r), "binary"),
    ("CE-labels", lambda r: pn.CrossEntropyLoss(r), lambda p, t, r: F.cross_entropy(p, t, reduction=r), "labels"),
    ("CE-probs", lambda r: pn.CrossEntropyLoss(r), lambda p, t, r: F.cross_entropy(p, t, reduction=r), "probs"),
    ("CE-smoothing", lambda r: pn.CrossEntropyLoss(r, label_smoothing=0.1),
     lambda p, t, r: F.cross_entropy(p, t, reduction=r, label_smoothing=0.1), "labels"),
    ("NLL", lambda r: pn.NLLLoss(r), lambda p, t, r: F.nll_loss(p, t, reduction=r), "logprobs"),
    ("Hinge", lambda r: pn.HingeLoss(r), lambda p, t, r: F.multi_margin_loss(p, t, reduction=r), "labels"),
]
IDS = [x[0] for x in LOSSES]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("spec", LOSSES, ids=IDS)
def test_loss_matches_torch(spec, reduction, ctx):
    name, make, ref, kind = spec
    p, t = _data(kind, np.random.default_rng(3))
    loss = make(reduction)
    value = loss(ctx.asarray(p), ctx.asarray(t))
    grad = loss.backward()
    assert value.shape == ()
    tp = _t(p).requires_grad_(True)
    tv = ref(tp, _t(t), reduction)
    tv.backward()
    ctx.close(value, tv.detach())
    ctx.close(grad, tp.grad)


@pytest.mark.parametrize("spec", LOSSES, ids=IDS)
def test_forward_gives_a_0d_array_with_and_without_kernels(spec, ctx, standard_code):
    """What fit's step holds (and a recorded step writes each replay's loss into): a 0-d array of the library,
    never a NumPy scalar, whether a fused kernel or the standard code computed it."""
    name, make, _, kind = spec
    p, t = _data(kind, np.random.default_rng(3))
    for reduction in ("mean", "sum"):
        loss = make(reduction)
        for run in (lambda fn: fn(), standard_code):
            value = run(lambda: loss.forward(ctx.asarray(p), ctx.asarray(t)))
            assert not isinstance(value, np.generic) and value.shape == (), type(value)


@pytest.mark.parametrize("spec", LOSSES, ids=IDS)
def test_loss_gradcheck(spec, ctx64):
    name, make, _, kind = spec
    p, t = _data(kind, np.random.default_rng(4))
    errors = pn.gradcheck(make("mean"), (ctx64.asarray(p), ctx64.asarray(t)))
    assert errors["input"] < 1e-6


def test_cross_entropy_gradient_is_softmax_minus_onehot(ctx):
    z, y = _data("labels", np.random.default_rng(0))
    loss = pn.CrossEntropyLoss(reduction="sum")
    loss(ctx.asarray(z), ctx.asarray(y))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    ctx.close(loss.backward(), p - np.eye(C)[y])


def test_bce_with_logits_is_stable_for_huge_logits(ctx):
    loss = pn.BCEWithLogitsLoss()
    z = ctx.asarray(np.array([[1000.0, -1000.0, 50.0]]))
    t = ctx.asarray(np.array([[0.0, 1.0, 1.0]]))
    v = float(ctx.host(loss(z, t)))
    assert np.isfinite(v) and abs(v - (1000 + 1000 + np.log1p(np.exp(-50))) / 3) < 1e-3
    assert np.all(np.isfinite(ctx.host(loss.backward())))


@pytest.mark.parametrize("bad,found", [(2.0, r"one above 1 \(max 2\)"), (-0.5, r"a negative one \(min -0.5\)")])
def test_cross_entropy_refuses_probability_targets_outside_0_1(ctx, bad, found):
    # README lists probabilities outside [0, 1] among the clear errors; a target of 2.0 gave a loss of 2.197
    z = ctx.asarray(np.zeros((2, 3)))
    t = np.array([[bad, 0.0, 0.0], [0.0, 0.5, 0.5]])
    with pytest.raises(ValueError, match=r"class probabilities in \[0, 1\] as targets, but the batch's targets "
                                         rf"hold {found}"):
        pn.CrossEntropyLoss()(z, ctx.asarray(t))
    # fit checks the loader's targets once on the host, every batch of them, and then never on the device
    model = pn.Sequential(pn.Dense(3, 3), device=ctx.device).to(dtype=ctx.dtype_name)
    x = np.zeros((8, 3))
    targets = np.array([[0.0, 0.5, 0.5]] * 6 + [t[0]] * 2)
    with pytest.raises(ValueError, match=rf"the loader's targets hold {found}"):
        pn.fit(model, pn.CrossEntropyLoss(), pn.optim.SGD(model.parameters(), lr=0.1), x, targets, batch_size=4,
               shuffle=False, verbose=0)
    # the bounds themselves are probabilities
    assert float(ctx.host(pn.CrossEntropyLoss()(z, ctx.asarray([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])))) == \
        pytest.approx(np.log(3), rel=1e-6)
