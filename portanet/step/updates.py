"""One-pass optimizer updates: the backend's fused kernel for an optimizer's textbook ``_update``.

An optimizer names its kernel (``kernel_name``: "sgd", "adam"); the backend may offer it (``Device.kernel``). The
callers here translate a group's options into the kernel's arguments, and return False where the kernel does not
apply or refuses its arrays, so that ``_update`` runs instead. The kernels do the textbook arithmetic in the same
order (tests/test_kernels.py holds them bit for bit), four to six passes in one.
"""
from __future__ import annotations

import math

from ..backends.kernels import REFUSALS


def _sgd(kernel, optimizer, p, g, state, group) -> bool:
    mu = group["momentum"]
    if not mu or "momentum_buffer" not in state:      # the first step starts the buffer: the textbook way
        return False
    try:
        kernel(p.data, g, state["momentum_buffer"], group["lr"], mu, 1.0 - group["dampening"],
               group["weight_decay"], group["nesterov"])
    except REFUSALS:
        return False
    return True


def _adam(kernel, optimizer, p, g, state, group) -> bool:
    if not state:
        return False        # the first step creates the moments
    lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    mode = 0 if not wd else 2 if optimizer._decoupled else 1
    if not isinstance(state["step"], int):
        return _adam_counted(optimizer, p, g, state, b1, b2, eps, lr, wd, mode)
    t = state["step"] + 1
    try:
        kernel(p.data, g, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"), b1, b2,
               1.0 / math.sqrt(1.0 - b2 ** t), eps, lr / (1.0 - b1 ** t), 1.0 - lr * wd if mode == 2 else wd, mode)
    except REFUSALS:
        return False
    state["step"] = t
    return True


def _adam_counted(optimizer, p, g, state, b1, b2, eps, lr, wd, mode) -> bool:
    """The count lives on the device (a recorded step, flat.py's counts_to_device): the backend's adam_counted
    advances it and computes the bias corrections there (CuPy's only); elsewhere the textbook way."""
    counted = optimizer.device.kernel("adam_counted")
    if counted is None:
        return False
    try:
        counted(p.data, g, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"), state["step"], b1, b2,
                eps, lr, 1.0 - lr * wd if mode == 2 else wd, mode)
    except REFUSALS:
        return False
    return True


_CALLERS = {"sgd": _sgd, "adam": _adam}


class FusedUpdate:
    """``update(p, g, state, group) -> bool``: the optimizer's update through its backend kernel."""

    __slots__ = ("kernel", "optimizer", "caller")

    def __init__(self, kernel, optimizer, caller):
        self.kernel, self.optimizer, self.caller = kernel, optimizer, caller

    def __call__(self, p, g, state, group) -> bool:
        return self.caller(self.kernel, self.optimizer, p, g, state, group)


def fused_for(optimizer, previous=None):
    """The fused update for ``optimizer`` on its device now (kernels can be turned off between steps), or None.
    ``previous`` is reused when it wraps the same kernel: every step asks."""
    name = optimizer.kernel_name
    caller = _CALLERS.get(name) if name else None
    kernel = optimizer.device.kernel(name) if caller is not None else None
    if kernel is None:
        return None
    if previous is not None and previous.kernel is kernel and previous.optimizer is optimizer:
        return previous
    return FusedUpdate(kernel, optimizer, caller)
