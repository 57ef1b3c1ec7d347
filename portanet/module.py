"""Module, Parameter, Sequential: parameters, train/eval mode, devices, state dicts, summaries."""
from __future__ import annotations

from collections import OrderedDict

from . import devices
from ._words import a as _a
from .errors import CheckpointError, DeviceMismatchError, NotFittedError, ShapeError


class Parameter:
    """A trainable array. ``data`` lives on the module's device; ``grad`` is None until a
    backward pass accumulates into it, and ``zero_grad()`` sets it back to None.

    ``sink``: where this parameter's gradients may be written directly (``accumulate_product``,
    ``accumulate_sum``): the optimizer's flat gradient buffer (portanet/step/flat.py), which also takes weight
    products into SGD's momentum buffer inside ``fit``; None for a parameter no optimizer holds."""

    __slots__ = ("data", "grad", "sink")

    def __init__(self, data):
        self.data = data
        self.grad = None
        self.sink = None

    # copies and pickles carry the array and its gradient, never the sink: that belongs to one optimizer
    def __getstate__(self):
        return {"data": self.data, "grad": self.grad}

    def __setstate__(self, state):
        self.data, self.grad, self.sink = state["data"], state["grad"], None

    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self) -> int:
        n = 1
        for s in self.data.shape:
            n *= s
        return n

    def accumulate(self, g):
        """grad += g (the first contribution is taken as is, without a zero-fill pass)."""
        if self.grad is None:
            self.grad = g
        else:
            self.grad += g

    def accumulate_product(self, a, b):
        """grad += a.T @ b, for a weight whose gradient is a product.   a: (batch, rows), b: (batch, cols),
        rows * cols = the parameter's size; the product is read in row-major order into the parameter's shape
        (a Conv2d weight (out, in, kh, kw) takes a (out, in * kh * kw) product).

        The sink may write it where it is needed in one GEMM (the flat gradient buffer; inside ``fit``, SGD's
        momentum buffer, scaled by the momentum on the way, leaving ``grad`` None)."""
        sink = self.sink
        if sink is not None and sink.take_product(self, a, b):
            return
        xp = devices.namespace_of(a)
        g = xp.matmul(a.T, b)
        if tuple(g.shape) != tuple(self.data.shape):
            g = xp.reshape(g, tuple(self.data.shape))
        self.accumulate(g)

    def accumulate_sum(self, g, axis=0):
        """grad += sum(g, axis), for a bias whose gradient sums the output gradient over the batch (and, for a
        convolution, over positions: axis=(0, 2, 3)). The sink may sum straight into the flat gradient buffer."""
        sink = self.sink
        if sink is not None and sink.take_sum(self, g, axis):
            return
        self.accumulate(devices.namespace_of(g).sum(g, axis=axis))

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.data.dtype})"


class Module:
    """Base of every layer and model.

    forward(x) computes and keeps what backward needs; backward(dy) returns dL/dx and
    accumulates dL/dparam into each Parameter's ``grad``. ``module(x)`` checks that x lives on
    the module's device, then runs forward; an array of another library on that same device (a torch CPU
    tensor for a "cpu" model) is taken through DLPack without a copy, and the output is the module's own kind.
    """

    generator = None        # modules that draw randomness in forward (Dropout) expose their Generator

    def __init__(self, device=None):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_device", devices.device(device))

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    # -- computing ----------------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__} must implement backward(dy)")

    def __call__(self, x):
        if not self._device.holds(x):
            # another library's array on this same device is taken without a copy (DLPack); anything else is
            # an error that names both places
            shared = self._device.from_dlpack(x)
            if shared is None:
                self._device.check(x, self._named())
            x = shared
        return self.forward(x)

    def _named(self) -> str:
        """How a message names this module: its repr, or for a container, whose repr lists every layer on a line
        of its own, ``Sequential(...)``."""
        text = repr(self)
        return text if "\n" not in text else f"{type(self).__name__}(...)"

    def _needs_forward(self, saved):
        if saved is None:
            raise NotFittedError(f"{self._named()}.backward() was called before forward(): "
                                 "run the model on a batch first (y = model(x)), then backward")

    def _checked_dy(self, dy, out):
        """backward's check of its ``dy`` against the last forward's output, ``out`` = (shape, dtype): dy itself when
        it is an array on this device of that shape and dtype (one tuple comparison on the hot path), else
        ``check_gradient``'s answer (a DLPack view of another library's array here, or an error naming the fix),
        never a gradient broadcast into another shape or upcast."""
        if self._device.holds(dy) and dy.shape == out[0] and dy.dtype == out[1]:
            return dy
        return check_gradient(self, dy, out, f"{self._named()}.backward()", "its")

    # -- device and dtype -----------------------------------------------------------------
    @property
    def device(self) -> devices.Device:
        return self._device

    @property
    def xp(self):
        return self._device.xp

    def to(self, device=None, dtype=None):
        """Move parameters and buffers to ``device`` (through the host) and/or cast them to
        ``dtype``. Gradients are dropped. Returns self."""
        new = self._device if device is None else devices.device(device)
        for m in self.modules():
            old = m._device
            for store in (m._parameters, m._buffers):
                for key, item in store.items():
                    arr = item.data if isinstance(item, Parameter) else item
                    dt = new.dtype(dtype) if dtype is not None and old.is_float(arr.dtype) else None
                    if new == old and dt is None:
                        continue
                    host = old.to_host(arr)
                    moved = new.asarray(host, dtype=dt if dt is not None else
                                        (new.dtype(old.dtype_name(arr.dtype)) if old.is_float(arr.dtype) else None))
                    if isinstance(item, Parameter):
                        item.data, item.grad = moved, None
                    else:
                        store[key] = moved
                        object.__setattr__(m, key, moved)
            if new != old:
                object.__setattr__(m, "_device", new)
                m._moved()
        return self

    def cuda(self, device=None):
        """PyTorch's ``model.cuda()``: ``self.to("cuda")`` (CuPy, as ``pn.device("cuda")``), or ``"cuda:N"`` for
        ``device=N``. Raises DeviceUnavailableError where there is no CUDA device, saying why. Returns self."""
        return self.to("cuda" if device is None else f"cuda:{int(device)}")

    def cpu(self):
        """PyTorch's ``model.cpu()``: ``self.to("cpu")`` (NumPy). Returns self."""
        return self.to("cpu")

    def _moved(self):
        """Hook: the module now lives on a new device (drop device-bound caches)."""

    # -- traversal ----------------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def children(self):
        return list(self._modules.values())

    def named_parameters(self, prefix=""):
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def register_buffer(self, name, array):
        """A non-trainable array that belongs to the model's state (BatchNorm running statistics)."""
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    def named_buffers(self, prefix=""):
        for mname, m in self.named_modules(prefix):
            for bname, b in m._buffers.items():
                yield (f"{mname}.{bname}" if mname else bname), b

    def named_generators(self):
        """(name, Generator) for modules that draw randomness in forward (Dropout)."""
        for mname, m in self.named_modules():
            gen = getattr(m, "generator", None)
            if gen is not None:
                yield mname, gen

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, object]":
        """Parameters and buffers as host NumPy arrays: device-neutral, safe to save anywhere."""
        out = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = self._device.to_host(p.data).copy()
        for name, b in self.named_buffers():
            out[name] = self._device.to_host(b).copy()
        return out

    def load_state_dict(self, state, strict: bool = True):
        """Copy host arrays into the parameters and buffers, onto this module's device.

        Everything is checked before anything is written, so a failed load leaves the model as it was.
        """
        targets = OrderedDict()
        for name, p in self.named_parameters():
            targets[name] = ("param", p)
        for mname, m in self.named_modules():
            for bname in m._buffers:
                targets[f"{mname}.{bname}" if mname else bname] = ("buffer", (m, bname))
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
            if unexpected:
                parts.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
            raise CheckpointError(f"state does not fit {type(self).__name__}: {'; '.join(parts)}. "
                                  "Build the same architecture that saved it, or pass strict=False"
                                  + _torch_hint(state))
        staged = []
        for name, (kind, target) in targets.items():
            if name not in state:
                continue
            value = state[name]
            current = target.data if kind == "param" else target[0]._buffers[target[1]]
            shape = tuple(getattr(value, "shape", ()))
            if shape != tuple(current.shape):
                flipped = len(shape) == 2 and shape == tuple(current.shape)[::-1]
                raise CheckpointError(f"'{name}' has shape {shape} in the saved state but {tuple(current.shape)} "
                                      "in this model: the checkpoint is for a different architecture"
                                      + _torch_hint(state, flipped))
            kind_char = getattr(getattr(value, "dtype", None), "kind", "?")
            if kind_char not in "fiub":
                raise CheckpointError(f"'{name}' holds {getattr(value, 'dtype', type(value))} data; "
                                      "only numeric arrays can be loaded" + _torch_hint(state))
            dt = current.dtype
            staged.append((kind, target, self._device.asarray(value, dtype=dt if self._device.is_float(dt) else None,
                                                              copy=True)))
        for kind, target, arr in staged:
            if kind == "param":
                # in place, as PyTorch's copy_: the parameter keeps its storage (an optimizer's flat buffer)
                try:
                    target.data[...] = arr
                except (TypeError, ValueError):       # a read-only array given by the user: replace it
                    target.data = arr
                target.grad = None
            else:
                target[0].register_buffer(target[1], arr)
        return self

    # -- description ----------------------------------------------------------------------
    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def summary(self, input_shape=None, print_fn=print) -> str:
        """A table of layers, output shapes and parameter counts, containers' layers indented under them
        (portanet/summary.py). ``input_shape`` excludes the batch axis (e.g. (1, 28, 28)); without it, the first
        layer's ``in_features`` is used."""
        from .summary import summary

        return summary(self, input_shape, print_fn)

    def _param_dtype(self):
        """The float dtype this module computes in: its first float parameter's, else float32."""
        for p in self.parameters():
            if self._device.is_float(p.data.dtype):
                return p.data.dtype
        return self._device.dtype("float32")


class Sequential(Module):
    """Layers applied in order. ``Sequential(Dense(784, 100), Sigmoid(), Dense(100, 10), device="cpu")``.

    With ``device=``, every layer is moved there; without it, the layers must already agree.
    """

    can_skip_input_grad = True
    _out = None             # (shape, dtype) of the last forward's output, for backward's check

    def __init__(self, *layers, device=None):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential takes portanet Modules; item {i} is {type(layer).__name__}")
        if device is None:
            device = common_device(layers, type(self).__name__, "layers")
        super().__init__(device)
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)
        refuse_repeats(self)
        self.layers = list(layers)
        self.to(self._device)

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def to(self, device=None, dtype=None):
        target = self._device if device is None else devices.device(device)
        for layer in getattr(self, "layers", []):
            layer.to(target, dtype)
        object.__setattr__(self, "_device", target)
        object.__setattr__(self, "_out", None)
        return self

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        # what backward must be given: a gradient of this output's shape and dtype (two attribute reads there)
        object.__setattr__(self, "_out", (x.shape, x.dtype))
        return x

    def backward(self, dy, input_grad: bool = True):
        """Backpropagate dL/d(output) through every layer. Returns dL/dx, or None with
        ``input_grad=False``: then backpropagation stops at the first layer that has parameters
        (which skips its input GEMM), and parameter-free layers before it (Flatten) are not visited.

        dy: dL/d(output) for the last forward, ``loss_fn.backward()``: an array of the output's shape
        (batch, ...) and dtype on the model's device (another library's array there is taken through DLPack, as
        ``model(x)`` takes it). Anything else (the loss's value, the loss object, a number, another shape or
        dtype) raises a TypeError, ShapeError or DeviceMismatchError naming ``model.backward(loss_fn.backward())``."""
        out = self._out
        if out is None or not (self._device.holds(dy) and dy.shape == out[0] and dy.dtype == out[1]):
            dy = check_gradient(self, dy, out, "model.backward()")
        layers = self.layers
        stop = 0 if input_grad else self.first_trainable()
        if stop is None:
            return None
        for i in range(len(layers) - 1, stop, -1):
            dy = layers[i].backward(dy)
        return backward_through(layers[stop], dy, input_grad)

    def first_trainable(self):
        """Index of the first layer with parameters, or None (worked out once per list of layers: every step asks)."""
        key = tuple(map(id, self.layers))
        if getattr(self, "_first_key", None) != key:
            first = next((i for i, layer in enumerate(self.layers)
                          if next(layer.named_parameters(), None) is not None), None)
            object.__setattr__(self, "_first", first)
            object.__setattr__(self, "_first_key", key)
        return self._first

    def __repr__(self):
        inner = ",\n  ".join(repr(layer).replace("\n", "\n  ") for layer in self.layers)   # nested containers indent
        return f"Sequential(\n  {inner}\n)"


def backward_through(layer, dy, input_grad=True):
    """``layer.backward(dy)``, the input gradient; with ``input_grad=False`` the parameter gradients alone and None,
    skipping the layer's input GEMM where it can (``can_skip_input_grad``), else computing dx and dropping it."""
    if input_grad:
        return layer.backward(dy)
    if getattr(layer, "can_skip_input_grad", False):
        return layer.backward(dy, input_grad=False)
    layer.backward(dy)
    return None


def common_device(modules, owner, what):
    """The device a container's ``modules`` (its layers or branches) agree on: that of those with parameters, else
    of all; None for no modules. ValueError naming each one's device and the fix (``device=``) when they differ."""
    seen = {m.device for m in modules if m.parameters()} or {m.device for m in modules}
    if len(seen) > 1:
        where = ", ".join(f"{i}: {m.device}" for i, m in enumerate(modules))
        raise ValueError(f"{owner}'s {what} are on different devices ({where}): pass device= to {owner} to put them "
                         "all in one place")
    return next(iter(seen)) if seen else None


def refuse_repeats(container):
    """A layer keeps what its forward saw for its backward, so one object in two places of a container would
    backpropagate through its last run only (and a shared weight would be counted twice by optimizers)."""
    first = {}
    for name, m in container.named_modules():
        if m is container:
            continue
        if id(m) in first:
            kind = type(m).__name__
            raise ValueError(f"{type(container).__name__} got one {kind} object at '{first[id(m)]}' and again at "
                             f"'{name}': a portanet layer keeps its forward's values for backward, so each place "
                             f"needs its own layer: create a new {kind}(...) for each (copy.deepcopy copies one "
                             "with its weights)")
        first[id(m)] = name


def _torch_hint(state, transposed=False) -> str:
    """A PyTorch state_dict given to load_state_dict fails on its transposed Linear weights, its BatchNorm counts or
    its tensors: say where it loads instead."""
    if transposed:
        return (", or it is the transpose of this model's, as in a PyTorch state_dict (nn.Linear stores (out, in)):"
                " pn.load_torch_state_dict(model, state) loads those")
    torch_like = any(str(k).endswith("num_batches_tracked") for k in state) or any(
        type(v).__module__.split(".")[0] == "torch" for v in state.values())
    return (" (this is a PyTorch state_dict: pn.load_torch_state_dict(model, state) loads it, transposing "
            "Linear weights)") if torch_like else ""


def check_gradient(module, dy, out, where, whose="the model's"):
    """The slow path of backward's check (Sequential, Dense): ``dy`` failed the cheap test of being an array on
    ``module``'s device of the output's shape and dtype ``out`` = (shape, dtype), None before any forward. Returns
    dy, or another library's array on this device taken through DLPack (as ``module(x)`` takes it); raises an error
    naming what was expected, what came, and ``model.backward(loss_fn.backward())``."""
    from .losses import Loss

    dev = module.device
    fix = "call model.backward(loss_fn.backward())"
    if out is None:
        shape, dtype = None, None
        want = f"dL/d(output), an array shaped like {whose} output (batch, ...)"
    else:
        shape, dtype = tuple(out[0]), out[1]
        want = (f"dL/d(output), an array shaped like {whose} output {shape} (batch, ...) on {dev} in "
                f"{dev.dtype_name(dtype)}")
    if isinstance(dy, Loss):
        raise TypeError(f"{where} got the loss object {type(dy).__name__}() itself; it takes {want}: {fix}")
    if callable(dy) and isinstance(getattr(dy, "__self__", None), Loss):
        raise TypeError(f"{where} got the method {type(dy.__self__).__name__}.backward, not called; it takes {want}: "
                        f"add the parentheses, {fix}")
    if not (hasattr(dy, "shape") and hasattr(dy, "dtype")):
        found = f"the number {dy!r} (the loss's value?)" if isinstance(dy, (int, float)) else devices.describe(dy)
        raise TypeError(f"{where} got {found}; it takes {want}: {fix}")
    if len(dy.shape) == 0:
        raise ShapeError(f"{where} got a 0-d array, the loss's value; it takes {want}: {fix}")
    if not dev.holds(dy):
        shared = dev.from_dlpack(dy)
        if shared is None:
            raise DeviceMismatchError(f"{where} got {devices.describe(dy)}; it takes {want}: {fix} (the loss "
                                      f"gives it on the output's device), or move it with {dev!r}.asarray(dy)")
        dy = shared
    if shape is not None and tuple(dy.shape) != shape:
        raise ShapeError(f"{where} got a gradient of shape {tuple(dy.shape)}; it takes {want}, for the last "
                         f"forward's batch: {fix}")
    if dtype is not None and dy.dtype != dtype:
        have, need = dev.dtype_name(dy.dtype), dev.dtype_name(dtype)
        why = (f"portanet never upcasts silently: every grad would become {have}" if have == "float64" else
               "portanet never converts silently")
        raise TypeError(f"{where} got {_a(have)} gradient; it takes {want} ({why}): {fix}, or convert it with "
                        f"xp.astype(dy, xp.{need})")
    return dy


def empty_batch(layer, x) -> ShapeError:
    """The error for a batch of no samples given to ``layer`` (check_features, the window layers' check_images)."""
    return ShapeError(f"{layer!r} got an empty batch (shape {tuple(x.shape)}): batches need at least one sample; "
                      "check the slicing or the DataLoader's drop_last")


def check_features(layer, x, expected: int, what: str = "features"):
    """Shared check for layers that take (batch, features) input. The fix in the message follows from the
    shape: an input whose whole size is one sample's features is that sample without its batch axis."""
    if x.ndim == 2 and x.shape[0] == 0:
        raise empty_batch(layer, x)
    if x.ndim == 2 and x.shape[1] == expected:
        return
    shape = tuple(x.shape)
    size = 1
    for s in shape:
        size *= s
    if x.ndim == 2 or x.ndim == 0:
        if x.ndim == 2 and size == expected:
            fix = (f"{shape} holds {size} values, one sample's {what}: add a batch axis (x[None]; "
                   "x.reshape(1, -1) if the model does not start with Flatten())")
        elif x.ndim == 2:
            fix = "check the previous layer's output size or the data's feature count"
        else:
            fix = "pass a batch of samples, not a single number"
        raise ShapeError(f"{layer!r} got input of shape {shape}; it expects (batch, {expected}) {what}: {fix}.")
    if x.ndim == 1:
        if size == expected:
            fix = "it is one sample: add a batch axis (x[None, :])"
        elif expected == 1:
            fix = "it is a batch of single values: add a feature axis (x[:, None])"
        else:
            fix = f"it is neither one sample ({expected} values) nor a batch of single values: reshape the data"
    else:
        per_sample = size // shape[0] if shape[0] else 0
        if per_sample == expected:
            fix = "flatten images first (add Flatten() before it)"
        elif size == expected:
            fix = "it is one sample: add a batch axis (x[None]) and flatten it (Flatten() first)"
        else:
            fix = (f"flatten images first (add Flatten() before it); each sample holds {per_sample} values, "
                   f"not {expected}")
    raise ShapeError(f"{layer!r} got input of shape {shape}; it expects (batch, {expected}): {fix}.")


def check_float(layer, x, dtype):
    if x.dtype != dtype:
        dev = layer.device
        if not dev.is_float(x.dtype):
            raise TypeError(f"{layer!r} got {x.dtype} input; it computes in {dev.dtype_name(dtype)}: convert first "
                            f"(x.astype(float32) / 255 for images; DataLoader does this for you)")
        raise TypeError(f"{layer!r} holds {dev.dtype_name(dtype)} parameters but got {dev.dtype_name(x.dtype)} "
                        f"input: portanet never upcasts silently; convert the input, or build the layer with "
                        f"dtype='{dev.dtype_name(x.dtype)}' (model.to(dtype='{dev.dtype_name(x.dtype)}'))")
