"""PyTorch twins of portanet layers, built from the same weights (host copies)."""
from __future__ import annotations

import numpy as np
import torch


def t(a, dtype=torch.float64):
    return torch.tensor(np.asarray(a), dtype=dtype)


def run_torch(module_fn, x_host, dy_host, params, dtype):
    """Run a torch function f(x, *params) and backprop dy. Returns (y, dx, [dparams])."""
    x = t(x_host, dtype).requires_grad_(True)
    ps = [t(p, dtype).requires_grad_(True) for p in params]
    y = module_fn(x, *ps)
    y.backward(t(dy_host, dtype))
    return y.detach(), x.grad, [p.grad for p in ps]
