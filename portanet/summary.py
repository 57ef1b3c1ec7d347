"""model.summary(): a table of layers, output shapes and parameter counts, with containers' layers indented."""
from __future__ import annotations


def summary(model, input_shape=None, print_fn=print) -> str:
    """The table for ``model`` (Module.summary's body). ``input_shape`` excludes the batch axis (e.g. (1, 28, 28));
    without it, the first layer's ``in_features`` is used, and models that start with another layer (Conv2d: its
    image size is unknown) show "?".

    Shapes come from one forward pass of a zero batch of 2 in eval mode (every module's own mode is restored).
    A container (Sequential, Residual, Concat) has a row with its output shape and all its parameters, and its
    layers follow, indented, with the shapes they produce inside it: in turn for Sequential and Residual, each
    from the container's input for Concat. Layers of other modules with children show "?" for their shapes."""
    shape = input_shape
    if shape is None:
        first = next(m for m in model.modules() if not m._modules)     # the layer that sees the input
        shape = (first.in_features,) if hasattr(first, "in_features") else None
    rows = []
    if shape is not None:
        dev = model.device
        x = dev.xp.zeros((2, *tuple(shape)), dtype=model._param_dtype(), device=dev.native)
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            if model._modules:
                _inside(model, x, 0, rows)
            else:
                _walk(model, x, 0, rows)
        finally:
            for m, mode in modes:
                object.__setattr__(m, "training", mode)
    else:
        for layer in list(model._modules.values()) or [model]:
            _unknown(layer, 0, rows)
    w0 = max([len(r[0]) for r in rows] + [5])
    w1 = max([len(r[1]) for r in rows] + [12])
    lines = [f"{'Layer':<{w0}}  {'Output shape':<{w1}}  {'Params':>10}", "-" * (w0 + w1 + 14)]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c:>10,}" for a, b, c in rows]
    lines += ["-" * (w0 + w1 + 14), f"Total parameters: {model.num_parameters():,}   device: {model.device}"]
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text


def _label(m, depth):
    if m._modules:
        extra = m.extra_repr()
        text = type(m).__name__ + (f"({extra})" if extra else "")
    else:
        text = repr(m)
    return "  " * depth + text


def _shape(y):
    return "(None, " + ", ".join(str(s) for s in y.shape[1:]) + ")"


def _walk(m, x, depth, rows):
    """Append m's row and its layers' rows; return m's output for x."""
    y = m.forward(x)
    rows.append((_label(m, depth), _shape(y), m.num_parameters()))
    if m._modules:
        _inside(m, x, depth + 1, rows)
    return y


def _inside(m, x, depth, rows):
    """The rows of container m's layers, each run on the input m gives it."""
    from .layers.containers import Concat
    from .module import Sequential

    if isinstance(m, Sequential):
        skip = x
        for layer in m.layers:
            x = _walk(layer, x, depth, rows)
        if getattr(m, "shortcut", None) is not None:      # a Residual's projection, run on the block's input
            _walk(m.shortcut, skip, depth, rows)
    elif isinstance(m, Concat):
        for branch in m.branches:
            _walk(branch, x, depth, rows)
    else:
        for child in m._modules.values():
            _unknown(child, depth, rows)


def _unknown(m, depth, rows):
    rows.append((_label(m, depth), "?", m.num_parameters()))
    for child in m._modules.values():
        _unknown(child, depth + 1, rows)
