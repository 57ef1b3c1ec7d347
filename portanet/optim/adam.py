"""Adam and AdamW (decoupled weight decay)."""
from __future__ import annotations

import math

from ..backends.quiet import quiet
from .optimizer import Optimizer


class Adam(Optimizer):
    """Kingma & Ba's Adam, as PyTorch computes it:

        g = grad + weight_decay * w          (L2 penalty; AdamW decouples it instead)
        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
        w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    amsgrad=True uses the running maximum of v.

    Edges, as PyTorch: (1 - b2) g g is computed (1 - b2) g first, so a float32 gradient up to ~5.8e20 does not
    overflow at once; v itself overflows once g^2 passes ~3.4e38, and the step is then 0 (m / inf), finite.
    A zero gradient gives a zero step thanks to eps; eps=0 gives 0 / 0 = NaN there (and inf where g^2
    underflows), as in PyTorch. A NaN gradient gives NaN weights. Clip huge gradients with clip_grad_norm.
    """

    _decoupled = False
    kernel_name = "adam"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 **unknown):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad), unknown)

    @quiet          # g * g overflowing to inf is the documented edge (class docstring)
    def _update(self, p, g, state, group):
        xp = self.xp
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if wd:
            if self._decoupled:
                p.data *= 1.0 - lr * wd
            else:
                g = g + wd * p.data
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1                   # in place where the count lives on the device (a captured step)
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        g2 = (1.0 - b2) * g                  # PyTorch's order: g * g alone overflows float32 from |g| ~ 1.8e19
        g2 *= g                              # in place: one temporary instead of two
        v += g2
        if group["amsgrad"]:
            vmax = state["max_exp_avg_sq"]
            vmax[...] = xp.maximum(vmax, v)
            v = vmax
        # PyTorch's denom = sqrt(v) / sqrt(1 - b2^t) + eps, built in place; then p -= lr / (1 - b1^t) * m / denom
        update = xp.sqrt(v)
        update *= 1.0 / _sqrt(xp, 1.0 - b2 ** t)
        update += eps
        update = m / update
        update *= lr / (1.0 - b1 ** t)
        p.data -= update


def _sqrt(xp, c):
    """sqrt of a bias correction: a Python float, or a 0-d array on the device where the step count lives there
    (a step captured into a CUDA graph, portanet/step/capture.py)."""
    return math.sqrt(c) if isinstance(c, float) else xp.sqrt(c)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): w *= 1 - lr * weight_decay, then Adam."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 **unknown):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, **unknown)
