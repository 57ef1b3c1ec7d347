"""Finite-difference check of any Module or Loss against its analytic backward."""
from __future__ import annotations

import array_api_compat

from .errors import NonFiniteError
from .losses import Loss
from .module import Module


class GradcheckError(AssertionError):
    """The analytic gradient of a module or loss disagrees with finite differences."""


def gradcheck(target, inputs, *, eps=1e-6, tol=1e-6, atol=1e-8, seed=0, check_params=True):
    """Compare ``target``'s backward with central differences, in float64.

    target: a Module (``inputs`` is its input array) or a Loss (``inputs`` is (pred, target)).
    For a module, the scalar checked is L = sum(forward(x) * r) with a fixed random r, so every
    output element contributes. Randomness inside forward (dropout) is replayed identically for
    each evaluation, and parameters and buffers are restored afterwards.

    Returns {name: worst relative error} ("input" and every parameter name), where the error of
    an array is max|analytic - numeric| / max(max|numeric|, max|analytic|, atol / tol).
    Raises GradcheckError naming the worst offender when any error exceeds ``tol``.

    ``atol`` is the absolute difference that always passes (PyTorch's gradcheck has one too, atol=1e-5 beside
    rtol=1e-3): a gradient that is truly zero (a convolution's bias before BatchNorm, which subtracts every
    channel's mean) comes out of central differences as rounding noise of about 1e-16 * |L| / eps, and relative
    to itself that noise would be an error of 1. An array whose gradients are all below atol / tol (1e-2 by
    default) is therefore judged by absolute difference <= atol.
    """
    if not (tol > 0 and atol >= 0):
        raise ValueError(f"gradcheck needs tol > 0 and atol >= 0, got tol={tol!r}, atol={atol!r}")
    if isinstance(target, Loss):
        pred, tgt = inputs
        _require_float64(pred, "the loss's prediction")
        xp = array_api_compat.array_namespace(pred)

        def value():
            return _scalar(target(pred_holder[0], tgt))

        pred_holder = [pred]
        target(pred, tgt)
        analytic = {"input": target.backward()}
        numeric = {"input": _numeric(xp, value, pred_holder, eps)}
        return _report(xp, type(target).__name__, analytic, numeric, tol, atol)

    if not isinstance(target, Module):
        raise TypeError(f"gradcheck checks a portanet Module or Loss, got {type(target).__name__}")
    x = inputs
    _require_float64(x, "the input")
    for name, p in target.named_parameters():
        _require_float64(p.data, f"parameter '{name}'")
    xp = target.xp
    dev = target.device
    saved_state = target.state_dict()
    gens = list(target.named_generators())
    gen_states = [g.get_state() for _, g in gens]

    def replay():
        for (_, g), st in zip(gens, gen_states):
            g.set_state(st)

    replay()
    y = target(x)
    r = dev.rng(seed).normal(tuple(y.shape), y.dtype)

    def value():
        replay()
        return _scalar(xp.sum(target.forward(holder[0]) * r))

    holder = [x]
    for p in target.parameters():
        p.grad = None
    replay()
    target.forward(x)
    analytic = {"input": target.backward(r)}
    numeric = {"input": _numeric(xp, value, holder, eps)}
    if check_params:
        for name, p in target.named_parameters():
            analytic[name] = p.grad
            ph = [p.data]

            def value_p(p=p, ph=ph):
                p.data = ph[0]
                return value()

            numeric[name] = _numeric(xp, value_p, ph, eps)
            p.data = ph[0]
    target.load_state_dict(saved_state)
    for p in target.parameters():
        p.grad = None
    replay()
    return _report(xp, type(target).__name__, analytic, numeric, tol, atol)


def _require_float64(a, what):
    xp = array_api_compat.array_namespace(a)
    if a.dtype != xp.float64:
        raise TypeError(f"gradcheck needs float64 ({what} is {a.dtype}): build the layer with dtype='float64' "
                        "and pass float64 inputs; float32 differences are too coarse to judge")
    if not bool(xp.all(xp.isfinite(a))):
        raise NonFiniteError(f"gradcheck got non-finite values in {what}: finite differences need finite inputs")


def _scalar(a) -> float:
    return float(a)


def _numeric(xp, f, holder, eps):
    """Central differences of scalar f with respect to every element of holder[0]."""
    base = holder[0]
    flat = xp.reshape(base, (-1,))
    n = flat.shape[0]
    grads = []
    dev = array_api_compat.device(base)
    for i in range(n):
        bump = xp.zeros((n,), dtype=base.dtype, device=dev)
        bump[i] = eps
        bump = xp.reshape(bump, base.shape)
        holder[0] = base + bump
        plus = f()
        holder[0] = base - bump
        minus = f()
        grads.append((plus - minus) / (2 * eps))
    holder[0] = base
    return xp.reshape(xp.asarray(grads, dtype=base.dtype, device=dev), base.shape)


def _report(xp, what, analytic, numeric, tol, atol):
    errors = {}
    for name, num in numeric.items():
        ana = analytic.get(name)
        if ana is None:
            raise GradcheckError(f"{what}: backward produced no gradient for '{name}'")
        if tuple(ana.shape) != tuple(num.shape):
            raise GradcheckError(f"{what}: gradient for '{name}' has shape {tuple(ana.shape)}, expected "
                                 f"{tuple(num.shape)}")
        diff = float(xp.max(xp.abs(ana - num))) if num.shape != (0,) else 0.0
        scale = max(float(xp.max(xp.abs(num))), float(xp.max(xp.abs(ana))), atol / tol, 1e-300)
        errors[name] = diff / scale
    worst = max(errors, key=errors.get)
    if errors[worst] > tol:
        raise GradcheckError(f"{what}: gradient of '{worst}' is off by {errors[worst]:.3g} (relative) > tol {tol:g}; "
                             + ", ".join(f"{k}: {v:.2g}" for k, v in errors.items()))
    return errors
