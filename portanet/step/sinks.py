"""SGD momentum's gradient sinks: weight gradients straight into the momentum buffer (host backends, inside fit).

SGD with momentum (no Nesterov) needs a weight's gradient only inside

    b = momentum * b + (1 - dampening) * (grad + weight_decay * w)

and a weight gradient is a product, x.T @ dy. So while ``fit`` runs (where nothing reads a gradient between backward
and step), the GEMM writes ``momentum * b + (1 - dampening) * x.T @ dy`` into the buffer's segment of the flat
state, and the update then applies ``w -= lr * (b + (1 - dampening) * weight_decay * w)`` in one pass (sgd_apply).
Spared per step: the gradient array, the BLAS's zero-fill of it, and one stream of the update (3-7% of an epoch on
the MNIST MLP on two cores). The weights' ``grad`` stays None during fit; your own loop never arms a sink.

OpenBLAS's general GEMM scales b first, then adds the very product NumPy's matmul computes, so without dampening or
weight decay the bits are those of the textbook update at the MNIST net's shapes; its small-matrix kernels (a 256x10
weight) fold the scaling into one rounding, and dampening or weight decay round in another order: float tolerance
there (tests/test_gradient_sinks.py). On a GPU the flat update (one launch for the group) is worth more than the
sink's saved pass, so sinks are armed on host backends only.
"""
from __future__ import annotations

from ..backends.kernels import REFUSALS
from ..optim.sgd import SGD

SLOT = "momentum_buffer"


class _Momentum:
    """The armed sink of one SGD group's FlatGroup."""

    __slots__ = ("optimizer", "group")

    def __init__(self, optimizer, group):
        self.optimizer, self.group = optimizer, group

    def __call__(self, fg, i, p, a, b) -> bool:
        views = fg.slot_views.get(SLOT)
        state = self.optimizer.state.get(p)
        if views is None or state is None or state.get(SLOT) is not views[i]:
            return False                       # the first step starts the buffer from the gradient: textbook
        gemm = fg.gemm
        if gemm is None:
            return False
        group = self.group
        # a second product in one step (a layer using its weight twice) adds to the first, as grad += would
        beta = 1.0 if p in fg.taken else group["momentum"]
        try:
            gemm(a, b, fg.slot_2d(SLOT, i, a.shape[1], b.shape[1]), 1.0 - group["dampening"], beta)
        except REFUSALS:                       # e.g. a non-contiguous input: the product goes to p.grad instead
            return False
        fg.taken.add(p)
        return True


def arm(optimizer) -> int:
    """Make ``optimizer``'s SGD groups with momentum take weight products into their buffers, on host backends with
    the GEMM kernel. Returns how many parameters are armed; ``disarm`` undoes it (fit does both)."""
    if not isinstance(optimizer, SGD) or optimizer.device.is_gpu or optimizer.device.kernel("gemm_tn") is None:
        return 0
    armed = 0
    for group, flat in zip(optimizer.param_groups, optimizer._flat):
        if flat is None or group["momentum"] <= 0 or group["nesterov"]:
            continue
        for fg in flat:
            fg.momentum = _Momentum(optimizer, group)
            armed += len(fg.params)
    return armed


def disarm(optimizer):
    """Give every parameter its plain ``grad`` back. A step interrupted between backward and step (an exception,
    Ctrl-C) leaves its gradient in the buffers it reached, as one extra momentum term."""
    for flat in optimizer._flat:
        for fg in flat or ():
            fg.momentum = None
            fg.taken.clear()


def apply_taken(fg, optimizer, group):
    """The step of a group some of whose gradients went into the momentum buffer: those parameters get
    ``w -= lr * (b + damp * wd * w)``; the others (biases, a refused product) their usual update."""
    damp, wd, lr = 1.0 - group["dampening"], group["weight_decay"], group["lr"]
    kernel = fg.sgd_apply
    created = False
    for p in fg.params:
        state = optimizer.state.get(p)
        if p in fg.taken:
            buf = state[SLOT]
            if p.grad is not None:            # a contribution that came the usual way as well
                buf += p.grad if damp == 1.0 else damp * p.grad
            if kernel is not None:
                try:
                    kernel(p.data, buf, lr, damp * wd)
                    continue
                except REFUSALS:
                    pass
            if wd:
                buf += (damp * wd) * p.data
            p.data -= lr * buf
        elif p.grad is not None:
            if state is None:
                state = optimizer.state[p] = {}
            created = created or SLOT not in state
            optimizer._apply(p, p.grad, state, group)
    fg.taken.clear()
    if created:
        fg.adopt(optimizer)
