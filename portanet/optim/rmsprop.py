"""RMSprop and Adagrad: per-coordinate step sizes from squared-gradient statistics."""
from __future__ import annotations

import math

from ..backends.quiet import quiet
from .optimizer import Optimizer


class RMSprop(Optimizer):
    """PyTorch's RMSprop:  s = alpha s + (1 - alpha) g^2;  w -= lr * g / (sqrt(s) + eps).
    centered=True subtracts the squared running mean of g; momentum > 0 adds a velocity.

    Edges. The averages are updated as s += (1 - alpha)(g^2 - s), the same average, but rounding only the
    small update: written alpha s + (1 - alpha) g^2 they drift by rounding every step, and for a steady gradient
    the centered variance s - mean(g)^2, which then nears 0, is all drift (float32, constant gradient, alpha
    0.99: NaN weights from step ~1200 before). (1 - alpha) g g is formed (1 - alpha) g first, as in PyTorch, so
    that g g does not overflow float32 before the average does (from |g| ~ 1.8e19). The centered variance is
    clamped at 0, where rounding can still take it: the step there is lr * g / eps, the limit of the exact
    variance going to 0, finite. Where s overflows, the variance is inf and the step 0, as in PyTorch (whose
    fused s - mean^2 stays finite there by rounding once; a constant gradient of 1e-20 makes its weights NaN).
    A NaN gradient gives NaN weights.
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 **unknown):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered), unknown)

    @quiet          # s overflowing to inf is the documented edge (class docstring)
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
        # the moving averages as updates, s += (1 - alpha)(g^2 - s): as s nears g^2 (a steady gradient) the update
        # is small and rounds little, where alpha s + (1 - alpha) g^2 rounds two big terms every step and drifts
        sq = state["square_avg"]
        d = (1.0 - alpha) * g
        d *= g                                   # (1 - alpha) g first, as PyTorch: g * g overflows float32 sooner
        d -= (1.0 - alpha) * sq
        sq += xp.where(sq == math.inf, 0.0, d)   # an overflowed s stays inf (inf - inf would make it NaN)
        if group["centered"]:
            ga = state["grad_avg"]
            ga += (1.0 - alpha) * (g - ga)
            # a variance, so never below 0, however the two averages rounded; inf where s itself overflowed
            # (inf - inf), as PyTorch's fused s - mean^2 gives there
            var = xp.maximum(sq - ga * ga, 0.0)
            avg = xp.sqrt(xp.where(sq == math.inf, sq, var))
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
    """PyTorch's Adagrad:  s += g^2;  w -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps).

    Edges, as PyTorch: once s overflows (float32 |g| beyond ~1.8e19) the step is 0, finite; eps=0 with a
    zero gradient gives 0 / 0 = NaN.
    """

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                 **unknown):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps), unknown)

    @quiet          # s overflowing to inf is the documented edge (class docstring)
    def _update(self, p, g, state, group):
        xp = self.xp
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        if not state:
            state["step"] = 0
            state["sum"] = xp.full(p.data.shape, float(group["initial_accumulator_value"]), dtype=p.data.dtype,
                                   device=self.device.native)
        state["step"] += 1                   # in place where the count lives on the device (a captured step)
        t = state["step"]
        s = state["sum"]
        s += g * g
        std = xp.sqrt(s)
        std += group["eps"]
        clr = group["lr"] / (1.0 + (t - 1) * group["lr_decay"])
        p.data -= clr * (g / std)
