"""Gradient clipping, computed on the device (no host round trip)."""
from __future__ import annotations

import array_api_compat

from ..module import Parameter


def clip_grad_norm(parameters, max_norm, eps=1e-6):
    """Scale all gradients together so their global L2 norm is at most ``max_norm``.
    Returns the norm before clipping as a 0-d array on the device (PyTorch's clip_grad_norm_)."""
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if max_norm <= 0:
        raise ValueError(f"clip_grad_norm max_norm must be positive, got {max_norm}")
    if not grads:
        raise ValueError("clip_grad_norm found no gradients: call it after backward and before step")
    xp = array_api_compat.array_namespace(grads[0])
    total = xp.sqrt(sum(xp.sum(g * g) for g in grads))
    scale = xp.minimum(max_norm / (total + eps), 1.0)
    for g in grads:
        g *= scale
    return total


clip_grad_norm_ = clip_grad_norm
