"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay."""
from __future__ import annotations

from ..backends.kernels import REFUSALS
from .optimizer import Optimizer


class SGD(Optimizer):
    """PyTorch's SGD, update for update:

        g = grad + weight_decay * w
        b = g (first step), else momentum * b + (1 - dampening) * g
        g = g + momentum * b (nesterov) or b (momentum > 0)
        w -= lr * g
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, **unknown):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov), unknown)
        for g in self.param_groups:
            if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
                raise ValueError("SGD nesterov=True needs momentum > 0 and dampening = 0")

    kernel_name = "sgd"

    def _update(self, p, g, state, group):
        wd, mu = group["weight_decay"], group["momentum"]
        fused = self._fused
        if fused is not None and mu and "momentum_buffer" in state:
            try:   # one pass instead of four; the same arithmetic as below, bit for bit
                fused(p.data, g, state["momentum_buffer"], group["lr"], mu, 1.0 - group["dampening"], wd,
                      group["nesterov"])
                return
            except REFUSALS:
                pass
        if wd:
            g = g + wd * p.data
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = self.xp.asarray(g, copy=True)
            else:
                buf *= mu
                damp = 1.0 - group["dampening"]
                buf += g if damp == 1.0 else damp * g
            g = g + mu * buf if group["nesterov"] else buf
        p.data -= group["lr"] * g

    # Gradient sinks (Optimizer.attach_sinks, armed by fit): with momentum and without Nesterov, the update
    # needs the gradient only inside  b = momentum * b + (1 - dampening) * (grad + weight_decay * w),  so the
    # weight gradient's GEMM writes it straight into b:  b = momentum * b + (1 - dampening) * x.T @ dy.
    # OpenBLAS's general GEMM scales b first, then adds the very product NumPy's matmul gets, so without dampening
    # or weight decay this rounds as _update does (the MNIST net's 784x256 and 256x256 weights); its small-matrix
    # kernels (a 256x10 weight) fold the scaling into one rounding, and dampening or weight decay round in
    # another order: float tolerance there (tests/test_gradient_sinks.py).

    def _sink_ready(self, group):
        return group["momentum"] > 0 and not group["nesterov"]

    def _take(self, p, a, b, group):
        state = self.state.get(p)
        buf = None if state is None else state.get("momentum_buffer")
        if buf is None:           # the first step starts the buffer from the gradient itself: the usual way
            return False
        # a second product in one step (a layer used twice) adds to the first, as grad += would
        beta = 1.0 if p in self._taken else group["momentum"]
        try:
            self._gemm(a, b, buf, 1.0 - group["dampening"], beta)
        except REFUSALS:          # e.g. a non-contiguous input: the product goes to p.grad instead
            return False
        self._taken.add(p)
        return True

    def _apply_taken(self, p, state, group):
        buf, damp, wd = state["momentum_buffer"], 1.0 - group["dampening"], group["weight_decay"]
        if p.grad is not None:    # a contribution that came the usual way as well
            buf += p.grad if damp == 1.0 else damp * p.grad
        kernel = self.device.kernel("sgd_apply")
        if kernel is not None:
            try:
                kernel(p.data, buf, group["lr"], damp * wd)
                return
            except REFUSALS:
                pass
        if wd:
            buf += (damp * wd) * p.data
        p.data -= group["lr"] * buf
