"""Gradient clipping, computed on the device (no host round trip)."""
from __future__ import annotations

import array_api_compat

from ..errors import NonFiniteError
from ..module import Parameter


def clip_grad_norm(parameters, max_norm, eps=1e-6, error_if_nonfinite=False):
    """Scale all gradients together so their global L2 norm is at most ``max_norm`` (PyTorch's
    clip_grad_norm_): each gradient is multiplied by min(1, max_norm / (norm + eps)), in place.
    Returns the norm before clipping as a 0-d array on the device; nothing is read back to the host.

    The norm is computed as m * sqrt(sum((g / m)^2)) with m the largest |g|, so that squares neither
    overflow (float32 gradients of 1e20: norm 1e21, not inf) nor underflow (1e-30: not 0). That is two
    passes more than sqrt(sum(g^2)): ~180 instead of ~85 us for the 784-256-256-10 MLP's gradients on NumPy.

    A NaN or infinite gradient makes the norm NaN or inf, and then the gradients are left as they are:
    scaling by max_norm / inf would silently zero every finite gradient (what PyTorch does with an inf;
    a NaN it spreads to all of them). Check the returned norm to skip such a step, or pass
    ``error_if_nonfinite=True`` to raise NonFiniteError; that reads the norm on the host, one
    synchronisation per call.
    """
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if max_norm <= 0:
        raise ValueError(f"clip_grad_norm max_norm must be positive, got {max_norm}")
    if not grads:
        raise ValueError("clip_grad_norm found no gradients: call it after backward and before step")
    xp = array_api_compat.array_namespace(grads[0])
    largest = xp.max(xp.abs(grads[0]))                      # NaN if a gradient holds one: max propagates it
    for g in grads[1:]:
        largest = xp.maximum(largest, xp.max(xp.abs(g)))
    unit = xp.where(largest > 0, largest, 1.0)              # all-zero gradients: divide by 1, the norm is 0
    sum_sq = 0.0
    for g in grads:
        u = g / unit                                        # |u| <= 1: its square neither overflows nor vanishes
        sum_sq = sum_sq + xp.sum(u * u)
    # m * sqrt(...) is NaN when m is inf (inf / inf); the norm is then inf, or NaN where a gradient is NaN
    total = xp.where(xp.isfinite(largest), largest * xp.sqrt(sum_sq), largest)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise NonFiniteError(f"clip_grad_norm found a gradient norm of {float(total)}: a gradient is NaN or "
                             "infinite; lower the learning rate, check the data, or skip this step")
    scale = xp.where(xp.isfinite(total), xp.minimum(max_norm / (total + eps), 1.0), 1.0)
    for g in grads:
        g *= scale
    return total


clip_grad_norm_ = clip_grad_norm
