"""The Optimizer base: parameter groups, per-parameter state, flat buffers, state dicts, option checks."""
from __future__ import annotations

import difflib
import math

from .. import devices
from .._numbers import is_real
from .._words import a
from ..errors import CheckpointError, DeviceMismatchError, NotFittedError
from ..module import Parameter
from ..step.flat import FlatGroup, views_write_through
from ..step.updates import fused_for


class Optimizer:
    """Updates Parameters in place from their ``grad``.

    params: an iterable of Parameters, or of dicts {"params": [...], "lr": ...} (parameter groups
    with their own options, as in PyTorch). ``step()`` applies one update; ``zero_grad()`` clears
    gradients; ``lr`` reads or sets the learning rate of every group; ``add_param_group`` adds a group.

    Building an optimizer flattens its parameters (portanet/step/flat.py): each group's parameters of one dtype
    become views into one contiguous buffer, their gradients and the optimizer's state likewise, so ``step()``
    updates the whole group in one pass. ``p.data`` keeps its shape and values; only its storage moves. Subclasses
    write ``_update(p, g, state, group)`` for one parameter, elementwise: it runs on the flat arrays as well.
    """

    def __init__(self, params, defaults: dict, unknown: dict):
        name = type(self).__name__
        if unknown:
            bad = next(iter(unknown))
            close = difflib.get_close_matches(bad, list(defaults), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise TypeError(f"{name} has no option '{bad}'{hint}; its options are {', '.join(defaults)}")
        check_options(name, defaults)
        self.defaults = dict(defaults)
        groups = list(params) if not isinstance(params, Parameter) else [params]
        if not groups:
            raise ValueError(f"{name} got an empty parameter list: pass model.parameters()")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups = []
        self.state: dict = {}
        self._schedulers: list = []
        self._flat: list = []            # per group: its FlatGroups (one per dtype), or None where not flattened
        self.device = None
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict):
        """Add a group {"params": [...], option: value, ...} (PyTorch's add_param_group); its parameters are
        flattened like the others'. The way to give the optimizer a parameter created after it."""
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}.add_param_group takes a dict with a 'params' list, got {type(group).__name__}")
        g = dict(group)
        ps = g.pop("params")
        ps = [ps] if isinstance(ps, Parameter) else list(ps)
        for p in ps:
            if not isinstance(p, Parameter):
                raise TypeError(f"{name} optimizes portanet Parameters; got {type(p).__name__}: "
                                "pass model.parameters()")
        if not ps:
            raise ValueError(f"{name} got a parameter group without parameters")
        extra = {k: v for k, v in g.items() if k not in self.defaults}
        if extra:
            raise TypeError(f"{name} parameter group has unknown option '{next(iter(extra))}'; "
                            f"options are {', '.join(self.defaults)}")
        held = {id(p) for p in self.parameters()}
        seen = set()
        for p in ps:
            if id(p) in held or id(p) in seen:
                raise ValueError(f"{name} got the parameter {p!r} twice (in one group or in two): each parameter "
                                 "belongs to one group; pass each once")
            seen.add(id(p))
        opts = {**self.defaults, **g}
        check_options(name, opts)
        if self.device is None:
            self.device = devices.device_of(ps[0].data)
            self.xp = self.device.xp
        for p in ps:
            if not self.device.holds(p.data):
                raise DeviceMismatchError(f"{name} got parameters on different devices ({self.device} and "
                                          f"{devices.describe(p.data)}): move the model to one device with "
                                          "model.to(device) before creating the optimizer")
        self.param_groups.append(ParamGroup(name, {"params": ps, **opts}))
        self._flat.append(self._flatten(ps, len(self.param_groups) - 1))

    def _flatten(self, ps, index):
        if not views_write_through(self.device):
            return None
        by_dtype: dict = {}
        for p in ps:
            if p.size:
                by_dtype.setdefault(self.device.dtype_name(p.data.dtype), []).append(p)
        return [FlatGroup(members, self.device, f"group {index} {dt}") for dt, members in by_dtype.items()]

    # an optimizer pickles and deep-copies (with its model, or alone: then with copies of its parameters); the
    # namespace module and the kernel wrapper are looked up again
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("xp", "_fused")}

    def __setstate__(self, saved):
        self.__dict__.update(saved)
        self.xp = self.device.xp if self.device is not None else None

    # -- options ---------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        """Set every group's learning rate: a finite non-negative real (NumPy's too), as the constructor takes
        (each ParamGroup checks and stores it; a bad value fails at the first, before any group changes)."""
        for g in self.param_groups:
            g["lr"] = value

    def parameters(self):
        return [p for g in self.param_groups for p in g["params"]]

    def describe(self, p) -> str:
        """'parameter 3 (shape (256,))': how messages name a parameter (the optimizer does not know its model)."""
        for i, q in enumerate(self.parameters()):
            if q is p:
                return f"parameter {i} (shape {p.shape})"
        return f"a parameter of shape {p.shape}"

    # -- stepping --------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True):
        """Forget the gradients before the next backward, as PyTorch's (and with its default since 2.0): each
        parameter's ``grad`` becomes None, or with ``set_to_none=False`` is filled with zeros in place (a
        gradient that is None stays None)."""
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    kernel_name = None      # a fused update the backend may offer (Device.kernel); the standard code is the default

    def step(self):
        """One update of every parameter that has a gradient (PyTorch's semantics: one without is left alone)."""
        self._fused = fused_for(self, getattr(self, "_fused", None))
        found = False
        for group, flat in zip(self.param_groups, self._flat):
            if flat is None:
                found = self._step_each(group) or found
                continue
            held = 0
            for fg in flat:
                found = fg.step(self, group) or found
                held += len(fg.params)
            if held != len(group["params"]):
                self._refuse_unheld(group, flat)
        if not found:
            self._no_gradients()

    def _step_each(self, group) -> bool:
        found = False
        for p in group["params"]:
            if p.grad is None:
                continue
            found = True
            st = self.state.get(p)
            if st is None:
                st = self.state[p] = {}
            self._apply(p, p.grad, st, group)
        return found

    def _refuse_unheld(self, group, flat):
        held = {id(p) for fg in flat for p in fg.params}
        for p in group["params"]:
            if id(p) not in held and p.size:
                raise ValueError(f"{self.describe(p)} was added to {type(self).__name__}'s param_groups after the "
                                 "optimizer was built, so its flat buffers do not hold it: add it with "
                                 "optimizer.add_param_group({'params': [p]}), or create the optimizer after the model "
                                 "is complete")

    def _no_gradients(self):
        name = type(self).__name__
        ps = self.parameters()
        raise NotFittedError(
            f"{name}.step() found no gradient on any of its {len(ps)} parameters: none of them received one in the "
            "last backward. Run model.backward(loss_fn.backward()) between zero_grad() and step(); if you did, this "
            f"optimizer may belong to another model (built as {name}(other_model.parameters()), or before the model "
            "was replaced): build it from the model you train")

    def _apply(self, p, g, state, group):
        """One update: the backend's one-pass kernel where it has one (step/updates.py), else ``_update``."""
        fused = self._fused
        if fused is None or not fused(p, g, state, group):
            self._update(p, g, state, group)

    def _update(self, p, g, state, group):
        """The update of one parameter p (its ``data``) from its gradient g, in place, with ``state`` its slots:
        the optimizer's textbook definition. Elementwise, so it also runs on a whole flat group at once."""
        raise NotImplementedError

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """{"type", "groups": [options], "state": {index: {slot: host array | number}}, "schedulers"}."""
        index = {p: i for i, p in enumerate(self.parameters())}
        state = {}
        for p, slots in self.state.items():
            if p in index:
                state[index[p]] = {k: (self.device.to_host(v).copy() if hasattr(v, "shape") else v)
                                   for k, v in slots.items()}
        groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"}
                  for g in self.param_groups]
        return {"type": type(self).__name__, "groups": groups, "state": state,
                "schedulers": [s.state_dict() for s in self._schedulers]}

    def load_state_dict(self, sd: dict):
        name = type(self).__name__
        if sd.get("type") != name:
            raise CheckpointError(f"this optimizer state is for {sd.get('type')}, not {name}: "
                                  f"create {a(sd.get('type'))} to load it, or load the model alone")
        if len(sd["groups"]) != len(self.param_groups):
            raise CheckpointError(f"the saved {name} has {len(sd['groups'])} parameter group(s), this one "
                                  f"{len(self.param_groups)}")
        params = self.parameters()
        staged = {}
        for key, slots in sd["state"].items():
            i = int(key)
            if i >= len(params):
                raise CheckpointError(f"the saved {name} state names parameter {i}, but the model has "
                                      f"{len(params)}: the checkpoint is for a different architecture")
            p = params[i]
            new = {}
            for slot, v in slots.items():
                if hasattr(v, "shape") and getattr(v, "ndim", 0) > 0:
                    if tuple(v.shape) != tuple(p.data.shape):
                        raise CheckpointError(f"optimizer slot '{slot}' of parameter {i} has shape {tuple(v.shape)} "
                                              f"but the parameter has {tuple(p.data.shape)}")
                    new[slot] = self.device.asarray(v, dtype=p.data.dtype, copy=True)
                else:
                    new[slot] = v.item() if hasattr(v, "item") else v
            staged[p] = new
        for g, saved in zip(self.param_groups, sd["groups"]):
            for k, v in saved.items():
                g[k] = tuple(v) if isinstance(g.get(k), tuple) else v
        self.state = staged
        for flat in self._flat:
            for fg in flat or ():
                fg.adopt(self)
        for sched, ssd in zip(self._schedulers, sd.get("schedulers", [])):
            sched.load_state_dict(ssd)
        return self

    def __repr__(self):
        opts = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({opts})"


NON_NEGATIVE = ("lr", "weight_decay", "eps", "momentum", "lr_decay", "initial_accumulator_value")
FRACTIONS = ("alpha", "dampening")
OPTIONS = NON_NEGATIVE + FRACTIONS + ("betas",)     # what check_options checks (ParamGroup: on every set)


def check_options(name, opts):
    """Refuse what PyTorch refuses (and NaN or infinite values, which would train to NaN), taking any real
    number (NumPy's too); store the numbers as Python floats, and betas as a tuple, in ``opts`` itself."""

    def number(key, ok, want):
        v = opts[key]
        if not is_real(v) or not math.isfinite(v) or not ok(v):
            raise ValueError(f"{name} {key} must be {want}, got {v!r}")
        opts[key] = float(v)

    for key in NON_NEGATIVE:
        if key in opts:
            number(key, lambda v: v >= 0, "a finite non-negative number")
    for key in FRACTIONS:
        if key in opts:
            number(key, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
    if "betas" in opts:
        b = opts["betas"]
        if is_real(b) or not isinstance(b, (tuple, list)):
            raise ValueError(f"{name} betas must be a pair (beta1, beta2) of numbers in [0, 1), e.g. (0.9, 0.999), "
                             f"got {b!r}")
        if len(b) != 2 or not all(is_real(v) and 0.0 <= v < 1.0 for v in b):
            raise ValueError(f"{name} betas must be two numbers in [0, 1), got {b!r}")
        opts["betas"] = (float(b[0]), float(b[1]))


class ParamGroup(dict):
    """A parameter group: a dict, as in PyTorch, that checks each option set on it as the constructor does and
    stores it as the constructor does (Python floats, betas a tuple). So PyTorch's way to change the rate,
    ``for g in opt.param_groups: g["lr"] = new_lr``, takes NumPy's numbers on every backend (array-api-strict's
    arrays refuse NumPy scalars; History would log them as they are) and refuses NaN or a negative rate at once."""

    def __init__(self, owner: str, items: dict):
        super().__init__(items)
        self.owner = owner                  # the optimizer's class name, for messages

    def __setitem__(self, key, value):
        if key in OPTIONS:
            opts = {key: value}
            check_options(self.owner, opts)
            value = opts[key]
        super().__setitem__(key, value)

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __reduce__(self):                   # pickle and deepcopy rebuild it from its items
        return type(self), (self.owner, dict(self))
