"""The Optimizer base: parameter groups, per-parameter state, state dicts, option checks."""
from __future__ import annotations

import difflib

from .. import devices
from ..errors import CheckpointError, DeviceMismatchError, NotFittedError
from ..module import Parameter


class Optimizer:
    """Updates Parameters in place from their ``grad``.

    params: an iterable of Parameters, or of dicts {"params": [...], "lr": ...} (parameter groups
    with their own options, as in PyTorch). ``step()`` applies one update; ``zero_grad()`` clears
    gradients; ``lr`` reads or sets the learning rate of every group.
    """

    def __init__(self, params, defaults: dict, unknown: dict):
        name = type(self).__name__
        if unknown:
            bad = next(iter(unknown))
            close = difflib.get_close_matches(bad, list(defaults), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise TypeError(f"{name} has no option '{bad}'{hint}; its options are {', '.join(defaults)}")
        self._check_options(defaults)
        self.defaults = dict(defaults)
        groups = list(params) if not isinstance(params, Parameter) else [params]
        if not groups:
            raise ValueError(f"{name} got an empty parameter list: pass model.parameters()")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups = []
        for g in groups:
            g = dict(g)
            ps = list(g.pop("params"))
            for p in ps:
                if not isinstance(p, Parameter):
                    raise TypeError(f"{name} optimizes portanet Parameters; got {type(p).__name__}: "
                                    "pass model.parameters()")
            extra = {k: v for k, v in g.items() if k not in defaults}
            if extra:
                raise TypeError(f"{name} parameter group has unknown option '{next(iter(extra))}'; "
                                f"options are {', '.join(defaults)}")
            opts = {**defaults, **g}
            self._check_options(opts)
            self.param_groups.append({"params": ps, **opts})
        self.state: dict = {}
        self._schedulers: list = []
        self._sink_groups: dict = {}     # armed parameter -> its group (fit only; see attach_sinks)
        self._taken: set = set()         # parameters whose gradient this step went into the state
        self.device = devices.device_of(self.param_groups[0]["params"][0].data)
        self.xp = self.device.xp
        for group in self.param_groups:
            for p in group["params"]:
                if not self.device.holds(p.data):
                    raise DeviceMismatchError(f"{name} got parameters on different devices ({self.device} and "
                                              f"{devices.describe(p.data)}): move the model to one device with "
                                              "model.to(device) before creating the optimizer")

    # -- options ---------------------------------------------------------------------------
    def _check_options(self, opts):
        name = type(self).__name__
        for key in ("lr", "weight_decay", "eps", "momentum", "lr_decay", "initial_accumulator_value"):
            if key in opts and (not isinstance(opts[key], (int, float)) or opts[key] < 0):
                raise ValueError(f"{name} {key} must be a non-negative number, got {opts[key]!r}")
        for key in ("alpha", "dampening"):
            if key in opts and not 0.0 <= opts[key] <= 1.0:
                raise ValueError(f"{name} {key} must be in [0, 1], got {opts[key]!r}")
        if "betas" in opts:
            b = opts["betas"]
            if len(b) != 2 or not all(0.0 <= v < 1.0 for v in b):
                raise ValueError(f"{name} betas must be two numbers in [0, 1), got {b!r}")

    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"learning rate must be a non-negative number, got {value!r}")
        for g in self.param_groups:
            g["lr"] = float(value)

    def parameters(self):
        return [p for g in self.param_groups for p in g["params"]]

    # -- stepping --------------------------------------------------------------------------
    def zero_grad(self):
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    kernel_name = None      # a fused update the backend may offer (Device.kernel); the standard code is the default

    def step(self):
        self._fused = self.device.kernel(self.kernel_name) if self.kernel_name else None
        found = False
        taken = self._taken
        for group in self.param_groups:
            for p in group["params"]:
                if taken and p in taken:
                    found = True
                    self._apply_taken(p, self.state[p], group)
                    continue
                if p.grad is None:
                    continue
                found = True
                st = self.state.get(p)
                if st is None:
                    st = self.state[p] = {}
                self._update(p, p.grad, st, group)
        taken.clear()
        if not found:
            raise NotFittedError(f"{type(self).__name__}.step() found no gradients: compute them first "
                                 "(model.backward(loss.backward())), and call zero_grad() before, not after, backward")

    def _update(self, p, g, state, group):
        raise NotImplementedError

    # -- gradient sinks ----------------------------------------------------------------------
    # A weight gradient is a product a.T @ b (Dense: x.T @ dy). Where the update only needs it added into a
    # state buffer (SGD's momentum), one GEMM can write it there directly, scaled by the momentum on the way:
    # no gradient array written and read back, no zero-fill of it by the BLAS. That bypasses param.grad, so
    # only fit arms it: between its backward and its step nothing reads a gradient. A loop of your own
    # (zero_grad, backward, clip, step) never sees a sink.

    def _sink_ready(self, group) -> bool:
        """Whether this group's update can take gradient products into its state (subclasses say)."""
        return False

    def attach_sinks(self) -> int:
        """Arm this optimizer as the gradient sink of the parameters it can take products for, where the
        backend has the GEMM kernel for it. Returns how many; ``detach_sinks()`` undoes it (fit does both)."""
        self.detach_sinks()
        gemm = self.device.kernel("gemm_tn")
        if gemm is None:
            return 0
        self._gemm = gemm
        for group in self.param_groups:
            if self._sink_ready(group):
                for p in group["params"]:
                    p.sink = self       # any other sink is stale: a sink takes nothing once its fit has ended
                    self._sink_groups[p] = group
        return len(self._sink_groups)

    def detach_sinks(self):
        """Give every armed parameter its plain ``grad`` back. A step interrupted between backward and step
        (an exception, Ctrl-C) leaves its gradient in the buffers it reached, as one extra momentum term."""
        for p in self._sink_groups:
            if p.sink is self:
                p.sink = None
        self._sink_groups = {}
        self._taken.clear()

    def take_product(self, p, a, b) -> bool:
        """Take p's gradient a.T @ b into this optimizer's state; False leaves it to ``p.grad``.
        a: (batch, rows), b: (batch, cols), p: (rows, cols)."""
        group = self._sink_groups.get(p)
        return group is not None and self._take(p, a, b, group)

    def _take(self, p, a, b, group) -> bool:
        return False

    def _apply_taken(self, p, state, group):
        raise NotImplementedError

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """{"type", "groups": [options], "state": {index: {slot: host array | number}}, "schedulers"}."""
        index = {p: i for i, p in enumerate(self.parameters())}
        state = {}
        for p, slots in self.state.items():
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
                                  f"create a {sd.get('type')} to load it, or load the model alone")
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
        for sched, ssd in zip(self._schedulers, sd.get("schedulers", [])):
            sched.load_state_dict(ssd)
        return self

    def __repr__(self):
        opts = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({opts})"
