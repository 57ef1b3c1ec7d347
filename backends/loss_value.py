"""What ``loss_fn(pred, target)`` returns: the 0-d loss on its device, marked so that ``loss.backward()`` says what
to call instead. portanet has no autograd graph: ``model.backward`` takes the loss's gradient, ``loss_fn.backward()``.

    numpy             a 0-d ndarray subclass: float(), print, format and comparisons as a plain 0-d array;
                      arithmetic gives plain NumPy values (``__array_wrap__``)
    torch             the tensor itself, with ``backward`` set on the instance (torch's own would raise "element 0
                      of tensors does not require grad and does not have a grad_fn")
    array-api-strict  an Array subclass over the same data and device
    cupy              a 0-d cupy.ndarray subclass (``ndarray.view(type=...)``)

Nothing here reads the value or copies it: the step stays free of host synchronisation. A value of any other
type, or one a library refuses to re-type, is returned unchanged.
"""
from __future__ import annotations

import numpy as np

MESSAGE = ("loss_value.backward(): portanet losses keep no autograd graph, so the loss's value cannot "
           "backpropagate itself: call model.backward(loss_fn.backward()) (the loss's gradient with respect to the "
           "model's output), then optimizer.step()")


def _refuse(*args, **kwargs):
    raise TypeError(MESSAGE)


class NumpyLossValue(np.ndarray):
    """A NumPy 0-d loss whose backward() explains itself."""

    backward = staticmethod(_refuse)

    def __array_wrap__(self, array, context=None, return_scalar=False):
        # what NumPy gives for a plain 0-d array: a scalar, or a plain ndarray
        array = array.view(np.ndarray)
        return array[()] if return_scalar else array

    def __repr__(self):
        return repr(self[()])


def _numpy(value):
    return np.asarray(value).view(NumpyLossValue)


def _torch(value):
    value.backward = _refuse           # an instance attribute shadows torch.Tensor.backward
    return value


_STRICT = None


def _strict(value):
    global _STRICT
    if _STRICT is None:
        from array_api_strict._array_object import Array

        class StrictLossValue(Array):
            """An array-api-strict 0-d loss whose backward() explains itself."""
            __slots__ = ()
            backward = staticmethod(_refuse)

        _STRICT = StrictLossValue
    return _STRICT._new(value._array, device=value.device)


_CUPY = None


def _cupy(value):
    global _CUPY
    if _CUPY is None:
        import cupy

        class CupyLossValue(cupy.ndarray):
            """A CuPy 0-d loss whose backward() explains itself."""
            backward = staticmethod(_refuse)

        _CUPY = CupyLossValue
    return value.view(type=_CUPY)


_BY_LIBRARY = {"numpy": _numpy, "torch": _torch, "array_api_strict": _strict, "cupy": _cupy}
_by_type: dict = {}


def mark(value):
    """``value`` (a 0-d loss) as its library's loss value (module docstring)."""
    t = type(value)
    fn = _by_type.get(t)
    if fn is None:
        fn = _by_type[t] = _BY_LIBRARY.get(t.__module__.split(".")[0], _unchanged)
    try:
        return fn(value)
    except (AttributeError, TypeError, ValueError):     # a library version that refuses the re-typing
        return value


def _unchanged(value):
    return value
