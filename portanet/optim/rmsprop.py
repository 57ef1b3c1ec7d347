"""RMSprop and Adagrad: per-coordinate step sizes from squared-gradient statistics."""
from __future__ import annotations

from .optimizer import Optimizer


class RMSprop(Optimizer):
    """PyTorch's RMSprop:  s = alpha s + (1 - alpha) g^2;  w -= lr * g / (sqrt(s) + eps).
    centered=True subtracts the squared running mean of g; momentum > 0 adds a velocity."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 **unknown):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered), unknown)

    def _update(self, p, g, state, group):
        xp = self.xp
        alpha, eps, wd, mu = group["alpha"], group["eps"], group["weight_decay"], group["momentum"]
        if wd:
            g = g + wd * p.data
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.data)
            if mu > 0:
                state["momentum_buffer"] = xp.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(p.data)
        state["step"] += 1
        sq = state["square_avg"]
        sq *= alpha
        sq += (1.0 - alpha) * (g * g)
        if group["centered"]:
            ga = state["grad_avg"]
            ga *= alpha
            ga += (1.0 - alpha) * g
            avg = xp.sqrt(sq - ga * ga)
        else:
            avg = xp.sqrt(sq)
        avg += eps
        if mu > 0:
            buf = state["momentum_buffer"]
            buf *= mu
            buf += g / avg
            p.data -= group["lr"] * buf
        else:
            p.data -= group["lr"] * (g / avg)


class Adagrad(Optimizer):
    """PyTorch's Adagrad:  s += g^2;  w -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)."""

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                 **unknown):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps), unknown)

    def _update(self, p, g, state, group):
        xp = self.xp
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        if not state:
            state["step"] = 0
            state["sum"] = xp.full(p.data.shape, float(group["initial_accumulator_value"]), dtype=p.data.dtype,
                                   device=self.device.native)
        state["step"] = t = state["step"] + 1
        s = state["sum"]
        s += g * g
        std = xp.sqrt(s)
        std += group["eps"]
        clr = group["lr"] / (1.0 + (t - 1) * group["lr_decay"])
        p.data -= clr * (g / std)
