"""PyTorch state_dicts in and out: ``pn.load_torch_state_dict(model, sd)`` and ``pn.torch_state_dict(model)``.

portanet names parameters as PyTorch does (a Sequential's layers are '0', '1', ...; nested modules join with '.'),
so the same architecture has the same keys on both sides. What differs is the layout of some weights:

    portanet                   PyTorch                        in the state dict
    Dense(in, out) / Linear    nn.Linear(in, out)             weight (in, out) <-> (out, in), transposed; bias as is
    Maxout(in, out, pieces)    nn.Linear(in, out * pieces),   weight transposed, bias as is (the pieces of a unit
                               then y.view(n, out, pieces)    are side by side on both sides)
                               .amax(-1)
    BatchNorm1d / BatchNorm2d  nn.BatchNorm1d / 2d            weight, bias, running_mean, running_var as they are;
                                                              torch's num_batches_tracked <-> the layer's count
    PReLU                      nn.PReLU                       weight as is
    Conv2d                     nn.Conv2d                      weight (out, in, kh, kw) and bias as they are
    any other layer                                           as is, unless it says otherwise (TRANSPOSED below)

A layer class whose 2-D parameters are stored as the transpose of PyTorch's names them in a class attribute
``torch_transposed = ("weight",)``; Dense and Maxout are listed here by name (TRANSPOSED).

Values may be torch tensors (CPU or CUDA), NumPy arrays, or any array that speaks DLPack. One already on the
model's device (a torch CPU tensor for a "cpu" model, a torch CUDA tensor for "gpu:0") is read there through DLPack,
with no trip through host memory; anything else goes through the host. Either way the values are copied into the
model's own arrays (as torch's load_state_dict copies into its parameters), in its dtype: nothing is shared with
the PyTorch model afterwards.

Other names, the same arrays. A PyTorch model written as an ``nn.Module`` subclass names its layers after its
attributes (``fc1.weight``, ``bn.running_mean``) where the portanet Sequential has ``0.weight``, ``1.running_mean``.
``by_position=True`` pairs the two state_dicts' arrays in order instead of by name: PyTorch's order is each module's
parameters, then its buffers, then its children in the order ``__init__`` assigned them, so it is the forward order
when ``__init__`` creates the layers in the order ``forward`` uses them. Every pair must agree in shape (up to the
transposes above), which catches most orders that differ; layers of equal shapes in another order it cannot
catch. ``torch_state_dict(model, keys=torch_model.state_dict().keys())`` names the tensors the other way.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict, namedtuple

from . import devices
from ._words import a as _a
from .errors import CheckpointError, DeviceMismatchError
from .module import Module

TRANSPOSED = {"Dense": ("weight",), "Maxout": ("weight",)}
COUNT = "num_batches_tracked"      # PyTorch's int64 buffer on every BatchNorm; portanet keeps it as a host int

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
IncompatibleKeys.__doc__ = "What load_torch_state_dict skipped with strict=False, as torch's load_state_dict says it."


def load_torch_state_dict(model, state_dict, strict=True, by_position=False):
    """Load a PyTorch ``state_dict`` (``torch_model.state_dict()``, or ``torch.load(path)``) into ``model``,
    transposing the weights whose layout differs (see the module docstring). The inverse of torch_state_dict.

    strict       True: the keys must match exactly (torch's num_batches_tracked may be absent, as in checkpoints
                 from PyTorch before 0.4.1). False: keys missing on either side are skipped and returned, as
                 PyTorch does, and a UserWarning says so when that leaves nothing to load; a shape that disagrees is
                 an error either way.
    by_position  True: pair the arrays in order, not by name (an ``nn.Module`` whose layers are attributes,
                 ``fc1``/``fc2``; module docstring); each pair must agree in shape. With strict, the counts must
                 agree too; without, the arrays past the shorter side are returned as missing or unexpected.

    Returns IncompatibleKeys(missing_keys, unexpected_keys): portanet's names of what was not loaded, and the
    state_dict's of what was not used. Raises CheckpointError naming the key (with the expected shape, and a hint
    where the array is the transpose of it) for a wrong shape or non-numeric data, and, where names differ but the
    arrays match one to one in order and shape, saying ``by_position=True``; TypeError for something that is not a
    mapping of arrays. Every value is checked before anything is written, so a failed load leaves the model as it
    was."""
    if not isinstance(model, Module):
        raise TypeError(f"load_torch_state_dict needs a portanet Module as model, got {type(model).__name__}")
    if not hasattr(state_dict, "items") or not hasattr(state_dict, "keys"):
        fix = ("pass torch_model.state_dict(), not the module itself" if hasattr(state_dict, "state_dict")
               else "pass a mapping of names to arrays, such as torch_model.state_dict()")
        raise TypeError(f"load_torch_state_dict got {type(state_dict).__name__}: {fix}")
    targets, counters = _targets(model)
    if by_position:
        pairs, count_keys, missing, unexpected = _by_position(model, targets, counters, state_dict, strict)
    else:
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets and k not in counters]
        if strict and (missing or unexpected):
            raise CheckpointError(_key_message(model, missing, unexpected, list(state_dict),
                                               _fits_by_position(targets, state_dict)))
        pairs = [(key, key) for key in targets if key in state_dict]
        count_keys = [(m, key) for key, m in counters.items() if key in state_dict]
        if not pairs and targets:
            hint = (" The arrays match one to one in order and shape: pass by_position=True to load them by "
                    "position." if _fits_by_position(targets, state_dict) else " Build the same architecture, "
                    "with the same names (PyTorch's nn.Sequential numbers its layers as portanet's Sequential does).")
            warnings.warn(f"load_torch_state_dict(strict=False) loaded nothing: none of the {len(state_dict)} keys "
                          f"({_first(list(state_dict))}) is one of the model's ({_first(list(targets))})." + hint,
                          stacklevel=2)
    device = model.device
    staged = [(targets[ours], _take(device, theirs, state_dict[theirs], targets[ours])) for ours, theirs in pairs]
    counts = [(m, _count(key, state_dict[key])) for m, key in count_keys]
    # written into the model's own arrays, as torch's param.copy_(value) does: whatever holds them (an optimizer,
    # a flat parameter buffer) keeps holding the loaded values
    for (module, name, kind, _), array in staged:
        if kind == "param":
            param = module._parameters[name]
            param.data[...] = array
            param.grad = None
        else:
            module._buffers[name][...] = array
    for module, n in counts:
        module.num_batches_tracked = n
    return IncompatibleKeys(missing, unexpected)


def torch_state_dict(model, device=None, keys=None):
    """``model``'s parameters and buffers as a PyTorch state_dict: an OrderedDict of torch tensors in PyTorch's
    names, order and layout, which ``torch_model.load_state_dict`` takes for the same architecture (strict).

    device   the torch device of the tensors ("torch:cpu", "torch:cuda:0"). Default: the model's own when it is
             on torch; torch:cuda:N for a model on gpu:N; else torch:cpu. A model on the same physical device is
             read through DLPack, without a trip through host memory.
    keys     names for the tensors, in order: ``torch_model.state_dict().keys()`` of a PyTorch model with the same
             arrays under other names (``fc1.weight``; by position, as load_torch_state_dict's by_position). Their
             number and their batch counts (num_batches_tracked) must fall where the model's do (ValueError).

    The tensors are copies (C-contiguous, the model's dtype), so training either model leaves the other alone.
    BatchNorm layers also give torch's num_batches_tracked (int64). Needs PyTorch (DeviceUnavailableError
    saying so otherwise)."""
    if not isinstance(model, Module):
        raise TypeError(f"torch_state_dict needs a portanet Module as model, got {type(model).__name__}")
    target = _torch_device(model.device, device)
    source = model.device
    targets, counters = _targets(model)
    out = OrderedDict()
    for key, (module, name, kind, transposed) in targets.items():
        array = module._parameters[name].data if kind == "param" else module._buffers[name]
        out[key] = _fresh(target, _onto(target, array, key, source), transposed)
        count_key = _count_key_after(key, counters)
        if count_key is not None:
            m = counters[count_key]
            out[count_key] = target.xp.asarray(int(getattr(m, COUNT, 0)), dtype=target.xp.int64,
                                               device=target.native)
    return out if keys is None else _renamed(out, list(keys))


def _renamed(out, keys):
    """``out`` under ``keys``, by position; batch counts must meet batch counts."""
    ours = list(out)
    if len(keys) != len(ours):
        raise ValueError(f"torch_state_dict got {len(keys)} keys for the model's {len(ours)} tensors ({_first(ours)}):"
                         " give the PyTorch model's state_dict().keys() for the same architecture")
    for mine, key in zip(ours, keys):
        if mine.endswith(COUNT) != str(key).endswith(COUNT):
            raise ValueError(f"torch_state_dict keys: '{key}' falls where the model has '{mine}': the PyTorch "
                             "model's layers differ from this one's, or come in another order")
    return OrderedDict(zip(keys, out.values()))


# -- keys ---------------------------------------------------------------------------------------------------------
def _targets(model):
    """({torch key: (module, attribute, "param" | "buffer", transposed)}, {torch key of a count: module}), in
    PyTorch's order: each module's parameters, then its buffers, then its children."""
    targets, counters = OrderedDict(), OrderedDict()
    for mname, m in model.named_modules():
        prefix = f"{mname}." if mname else ""
        flipped = _transposed(m)
        for pname in m._parameters:
            targets[prefix + pname] = (m, pname, "param", pname in flipped)
        for bname in m._buffers:
            targets[prefix + bname] = (m, bname, "buffer", False)
        if "running_mean" in m._buffers and "running_var" in m._buffers:
            counters[prefix + COUNT] = m
    return targets, counters


def _transposed(module):
    own = getattr(type(module), "torch_transposed", None)
    if own is not None:
        return tuple(own)
    for cls in type(module).__mro__:
        if cls.__name__ in TRANSPOSED:
            return TRANSPOSED[cls.__name__]
    return ()


def _count_key_after(key, counters):
    """The count key that follows ``key`` in PyTorch's order (after a BatchNorm's running_var), or None."""
    if key.endswith("running_var"):
        count_key = key[: -len("running_var")] + COUNT
        if count_key in counters:
            return count_key
    return None


def _first(keys, n=5):
    return f"{', '.join(str(k) for k in keys[:n])}{' ...' if len(keys) > n else ''}"


def _key_message(model, missing, unexpected, given, positional=False):
    parts = []
    if missing:
        parts.append(f"missing {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected {_first(unexpected)}")
    if positional:
        fix = ("the names differ but the arrays match one to one in order and shape (a PyTorch model whose layers "
               "are attributes, fc1/fc2): pass by_position=True to load them by position, or strict=False to load only "
               "the keys that match")
    else:
        fix = ("build the same architecture as the PyTorch model (layer for layer: the arrays do not match in order "
               "and shape either), or pass strict=False to load the keys that match")
    for prefix in ("module.", "_orig_mod."):
        if given and all(k.startswith(prefix) for k in given):
            fix = (f"every key starts with '{prefix}' (saved from a wrapped model: DataParallel, "
                   f"DistributedDataParallel or torch.compile): strip it first, "
                   f"{{k.removeprefix('{prefix}'): v for k, v in sd.items()}}")
    return f"the PyTorch state_dict does not fit {type(model).__name__}: {'; '.join(parts)}. Fix: {fix}"


def _torch_shape(target):
    """The shape PyTorch stores a target's array in."""
    module, name, kind, transposed = target
    current = module._parameters[name].data if kind == "param" else module._buffers[name]
    own = tuple(current.shape)
    return tuple(reversed(own)) if transposed else own


def _arrays(state_dict):
    """The state_dict's keys other than BatchNorm's batch counts, in its order (what pairs with portanet's arrays)."""
    return [k for k in state_dict if not str(k).endswith(COUNT)]


def _fits_by_position(targets, state_dict) -> bool:
    theirs = _arrays(state_dict)
    return len(theirs) == len(targets) > 0 and all(
        tuple(getattr(state_dict[k], "shape", ())) == _torch_shape(t) for k, t in zip(theirs, targets.values()))


def _by_position(model, targets, counters, state_dict, strict):
    """(pairs (portanet key, state_dict key), counts (module, key), missing, unexpected) pairing arrays in order."""
    ours, theirs = list(targets), _arrays(state_dict)
    if strict and len(ours) != len(theirs):
        raise CheckpointError(f"by_position: the PyTorch state_dict has {len(theirs)} arrays (besides batch counts) "
                              f"but {type(model).__name__} has {len(ours)}: the architectures differ (compare "
                              f"{_first(theirs)} with {_first(ours)}), or pass strict=False to load the first "
                              f"{min(len(ours), len(theirs))}")
    pairs, count_keys = list(zip(ours, theirs)), []
    for i, (mine, key) in enumerate(pairs):
        shape, want = tuple(getattr(state_dict[key], "shape", ())), _torch_shape(targets[mine])
        if shape != want:
            module = targets[mine][0]
            raise CheckpointError(f"by_position: array {i}, PyTorch's '{key}', has shape {shape} but pairs with "
                                  f"'{mine}' of {module!r}, which takes {want} from PyTorch: the layers differ in "
                                  "size or in order (by_position follows the order the PyTorch module's __init__ "
                                  "creates them); load by name where the names agree")
        count = key[: -len("running_var")] + COUNT if key.endswith("running_var") else None
        owner = mine[: -len("running_var")] + COUNT if mine.endswith("running_var") else None
        if count in state_dict and owner in counters:
            count_keys.append((counters[owner], count))
    return pairs, count_keys, ours[len(pairs):], theirs[len(pairs):]


# -- values -------------------------------------------------------------------------------------------------------
def _take(device, key, value, target):
    """``value`` checked against ``target`` and read onto ``device`` in the target's dtype and layout (a view where
    it can be: the caller copies it into the model's own array)."""
    module, name, kind, transposed = target
    current = module._parameters[name].data if kind == "param" else module._buffers[name]
    own = tuple(current.shape)
    expected = tuple(reversed(own)) if transposed else own
    shape = getattr(value, "shape", None)
    if shape is None:
        raise CheckpointError(f"'{key}' is {_a(type(value).__name__)}, not an array: a state_dict maps names to "
                              "tensors or arrays")
    shape = tuple(shape)
    if shape != expected:
        raise CheckpointError(_shape_message(key, module, shape, expected, own, transposed))
    array = _onto(device, value, key)
    xp = device.xp
    if not xp.isdtype(array.dtype, ("real floating", "integral")):
        raise CheckpointError(f"'{key}' holds {array.dtype} data; {module!r} takes real numbers: convert it "
                              "first (tensor.float())")
    if array.dtype != current.dtype:
        array = xp.astype(array, current.dtype)
    return xp.permute_dims(array, (1, 0)) if transposed else array


def _shape_message(key, module, shape, expected, own, transposed):
    if transposed and shape == own and own != expected:
        return (f"'{key}' has shape {shape} but {module!r} takes {expected} from PyTorch (out, in), the transpose "
                f"of portanet's {own}: a portanet-layout array loads with model.load_state_dict; otherwise the "
                "PyTorch layer has other sizes (a different architecture)")
    flipped = " (the transpose of what it takes)" if len(shape) == 2 and shape == tuple(reversed(expected)) else ""
    layout = f" (PyTorch's layout; portanet stores {own})" if transposed else ""
    return (f"'{key}' has shape {shape}{flipped} but {module!r} takes {expected}{layout}: the state dict is for a "
            "different architecture; build the model with the PyTorch model's sizes")


def _onto(device, value, key, source=None):
    """``value`` as an array of ``device``: itself, a view through DLPack when it lives on the same physical
    device, else a copy through the host."""
    if device.holds(value):
        return value
    shared = device.from_dlpack(value)
    if shared is not None:
        return shared
    try:
        try:
            host = (source or devices.device_of(value)).to_host(value)
        except DeviceMismatchError:
            host = value               # not a library portanet knows: whatever NumPy makes of it
        return device.asarray(host)
    except (TypeError, ValueError, RuntimeError) as e:        # e.g. bfloat16, which NumPy has no type for
        raise CheckpointError(f"'{key}' ({devices.describe(value)}, dtype {getattr(value, 'dtype', '?')}) cannot "
                              f"be read onto {device}: convert it to float32 first (tensor.float()); {e}") from e


def _fresh(device, array, transposed):
    """A new C-contiguous array on ``device`` holding ``array`` (transposed when asked): owned by its model alone."""
    xp = device.xp
    if transposed:
        array = xp.permute_dims(array, (1, 0))
    out = xp.empty(tuple(array.shape), dtype=array.dtype, device=device.native)
    out[...] = array
    return out


def _count(key, value):
    shape = tuple(getattr(value, "shape", ()))
    try:
        n = int(value)
        exact = shape == () and n >= 0 and float(value) == n
    except (TypeError, ValueError):
        exact = False
    if not exact:
        raise CheckpointError(f"'{key}' should be PyTorch's 0-d count of training batches (a non-negative int), "
                              f"got {devices.describe(value)} of shape {shape}")
    return n


def _torch_device(model_device, spec):
    if spec is None:
        if model_device.backend.name == "torch":
            return model_device
        spec = "torch:cuda:" + model_device.label.rsplit(":", 1)[-1] if model_device.is_gpu else "torch:cpu"
    target = devices.device(spec)
    if target.backend.name != "torch":
        raise ValueError(f"torch_state_dict writes torch tensors: device must be a torch device such as 'torch:cpu' "
                         f"or 'torch:cuda:0', got '{target}'")
    return target
