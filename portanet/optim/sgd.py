"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay."""
from __future__ import annotations

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
