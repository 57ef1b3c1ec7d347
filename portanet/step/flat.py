"""Flat parameter buffers: an optimizer group's parameters of one dtype as views into one contiguous array.

    data   (total,)  every parameter's values, back to back; ``p.data`` is a view of its segment, in p's shape
    grad   (total,)  likewise for gradients: ``p.grad`` is None after zero_grad, and its segment's view once a
                     gradient has arrived (weight products and bias sums are written there directly)
    state  {slot: (total,) array, scalar: value}  the optimizer's state for the whole group; each parameter's
                     ``optimizer.state[p]`` holds views of the same slots, so state_dict and checkpoints are unchanged

With every gradient present and the per-parameter states in step (the usual case), the optimizer's textbook
``_update(p, g, state, group)`` runs once on the flat arrays: one launch per operation for the whole group on a GPU,
one call of the fused C kernel on NumPy. Otherwise (a parameter without a gradient this step, states that differ
after a partial step or a load) it runs parameter by parameter on the views, exactly as before flattening.

A parameter whose ``data`` was rebound (``p.data = ...``) is copied back into its segment at the next step when it
keeps its shape, dtype and device; a move to another device or dtype is refused, naming the parameter and the fix.
Flattening relies on slices and reshapes being views that write through, which NumPy, CuPy, PyTorch and
array-api-strict all give; a backend where a probe finds otherwise keeps its parameters as they are.
"""
from __future__ import annotations

from ..backends.kernels import REFUSALS
from ..errors import DeviceMismatchError


class _Whole:
    """What ``_update`` sees as its parameter in the flat case: the group's whole buffer as ``data``."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data


_VIEWS_WRITE_THROUGH: dict = {}


def views_write_through(device) -> bool:
    """Whether a reshaped slice of a 1-D array on ``device`` is a view that writes into it (probed once per
    backend). The Array API leaves view semantics to the library; portanet's backends all have them."""
    name = device.backend.name
    known = _VIEWS_WRITE_THROUGH.get(name)
    if known is None:
        xp = device.xp
        base = xp.zeros((6,), dtype=device.dtype("float32"), device=device.native)
        view = xp.reshape(base[1:5], (2, 2))
        view += 1.0
        view[...] = view * 3.0
        host = device.to_host(base)
        known = _VIEWS_WRITE_THROUGH[name] = [float(v) for v in host] == [0.0, 3.0, 3.0, 3.0, 3.0, 0.0]
    return known


class FlatGroup:
    """One parameter group's parameters of one dtype, flattened. Built by the optimizer (Optimizer.__init__ and
    add_param_group), which rebinds each ``p.data`` to its view and becomes each parameter's gradient sink
    (``Parameter.sink``): weight products and bias sums land in the flat gradient without a copy."""

    def __init__(self, params, device, name):
        xp = self.xp = device.xp
        self.device, self.name = device, name
        self.params = list(params)
        self.index = {p: i for i, p in enumerate(self.params)}
        self.spans, n = [], 0
        for p in self.params:
            self.spans.append((n, n + p.size))
            n += p.size
        self.size = n
        dtype, nat = self.params[0].data.dtype, device.native
        self.data = xp.empty((n,), dtype=dtype, device=nat)
        self.grad = xp.zeros((n,), dtype=dtype, device=nat)
        self.data_views, self.grad_views = [], []
        for p, (lo, hi) in zip(self.params, self.spans):
            self.data[lo:hi] = xp.reshape(p.data, (-1,))
            view = xp.reshape(self.data[lo:hi], p.shape)
            p.data = view
            self.data_views.append(view)
            self.grad_views.append(xp.reshape(self.grad[lo:hi], p.shape))
            if p.grad is not None and tuple(p.grad.shape) == p.shape:
                self.grad_views[-1][...] = p.grad
                p.grad = self.grad_views[-1]
            p.sink = self
        self.whole = _Whole(self.data)
        self.state: dict = {}           # the optimizer's state for the whole group (flat slots and scalars)
        self.slot_views: dict = {}      # slot -> [view per parameter]
        self.ready = True               # per-parameter states agree with self.state (so the flat update may run)
        self.momentum = None            # armed by step/sinks.py inside fit: takes weight products into the buffer
        self.taken: set = set()         # parameters whose gradient went into the momentum buffer this step
        self._shapes: dict = {}         # (index, rows, cols) -> 2-D view of a gradient segment, for the GEMM
        self._slot_arrays: dict = {}    # slot -> the flat array its views were made from
        self._device_counts: set = set()  # state keys whose counts are 0-d device arrays now (counts_to_device)
        self.refresh_kernels()

    # pickles and deep copies (an optimizer saved whole, a trainer deep-copied) carry the flat arrays; views, the
    # namespace and the kernels are made again, and the parameters (which come back as copies, not views) are taken
    # back into their segments at the next step, as a parameter rebound by hand is
    _TRANSIENT = ("xp", "index", "data_views", "grad_views", "whole", "slot_views", "_slot_arrays", "_shapes",
                  "momentum", "taken", "gemm", "bias_grad", "sgd_apply", "bias_grad_rows")

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}

    def __setstate__(self, saved):
        self.__dict__.update(saved)
        xp = self.xp = self.device.xp
        self.index = {p: i for i, p in enumerate(self.params)}
        self.data_views = [xp.reshape(self.data[lo:hi], p.shape) for p, (lo, hi) in zip(self.params, self.spans)]
        self.grad_views = [xp.reshape(self.grad[lo:hi], p.shape) for p, (lo, hi) in zip(self.params, self.spans)]
        self.whole = _Whole(self.data)
        self.slot_views, self._slot_arrays, self._shapes = {}, {}, {}
        for key, value in self.state.items():
            if self._is_slot(value):
                self._views_of(key, value)
        self.momentum, self.taken = None, set()
        self.__dict__.setdefault("_device_counts", set())     # pickled before the attribute existed
        self.ready = False          # the optimizer's per-parameter state came back as copies: adopt them first
        self.refresh_kernels()

    def refresh_kernels(self):
        """Look up the backend's kernels (once per step: the next backward uses them; they can be turned off)."""
        kernel = self.device.kernel
        self.gemm, self.bias_grad, self.sgd_apply = kernel("gemm_tn"), kernel("bias_grad"), kernel("sgd_apply")
        self.bias_grad_rows = kernel("bias_grad_rows")

    # -- gradient sinks (Parameter.accumulate_product / accumulate_sum) ----------------------------------------------
    def take_product(self, p, a, b) -> bool:
        """p.grad += a.T @ b written straight into p's segment by the backend's GEMM (beta = 0 for the first
        contribution: no zero-fill, no temporary). False leaves it to the textbook code."""
        i = self.index.get(p)
        if i is None:
            return False
        if self.momentum is not None and self.momentum(self, i, p, a, b):
            return True
        g, view = p.grad, self.grad_views[i]
        if g is not None and g is not view:
            return False
        gemm = self.gemm
        if gemm is None:
            return False
        try:
            gemm(a, b, self.grad_2d(i, a.shape[1], b.shape[1]), 1.0, 0.0 if g is None else 1.0)
        except REFUSALS:
            return False
        p.grad = view
        return True

    def take_sum(self, p, g, axis) -> bool:
        """p.grad = sum(g, axis) for a 2-D g, written into p's segment by the backend's kernel: axis 0 a Dense's
        bias (``bias_grad``: g (batch, features)), axis 1 a convolution's (``bias_grad_rows``: g (channels,
        positions)); both sum as NumPy does, bit for bit."""
        if p.grad is not None or g.ndim != 2 or axis not in (0, 1):
            return False
        i = self.index.get(p)
        kernel = self.bias_grad if axis == 0 else self.bias_grad_rows
        if i is None or kernel is None:
            return False
        view = self.grad_views[i]
        try:
            kernel(g, view)
        except REFUSALS:
            return False
        p.grad = view
        return True

    def fresh_grad(self, p):
        """Where a parameter's first gradient of a step may be written whole (its segment), or None when it already
        has one. The caller sets ``p.grad`` to it once written (fused kernels that produce a gradient in place)."""
        if p.grad is not None:
            return None
        i = self.index.get(p)
        return None if i is None else self.grad_views[i]

    def grad_2d(self, i, rows, cols):
        """Segment i of the gradient as a (rows, cols) view (cached: every step asks)."""
        key = (i, rows, cols)
        view = self._shapes.get(key)
        if view is None:
            lo, hi = self.spans[i]
            if rows * cols != hi - lo:
                raise ValueError(f"a ({rows}, {cols}) product does not fit a parameter of {hi - lo} elements")
            view = self._shapes[key] = self.xp.reshape(self.grad[lo:hi], (rows, cols))
        return view

    def slot_2d(self, slot, i, rows, cols):
        """Segment i of a state slot as a (rows, cols) view (the momentum sink's GEMM target)."""
        key = (slot, i, rows, cols)
        view = self._shapes.get(key)
        if view is None:
            lo, hi = self.spans[i]
            if rows * cols != hi - lo:
                raise ValueError(f"a ({rows}, {cols}) product does not fit a parameter of {hi - lo} elements")
            view = self._shapes[key] = self.xp.reshape(self.state[slot][lo:hi], (rows, cols))
        return view

    # -- the update --------------------------------------------------------------------------------------------------
    def step(self, optimizer, group) -> bool:
        """Apply ``optimizer``'s update to this group's parameters. Returns whether any had a gradient."""
        try:
            return self._step(optimizer, group)
        finally:
            self.refresh_kernels()

    def _step(self, optimizer, group) -> bool:
        self._hold_data(optimizer)
        complete, found = True, False
        for i, p in enumerate(self.params):
            g = p.grad
            if g is None:
                complete = False
                continue
            found = True
            view = self.grad_views[i]
            if g is not view:           # a gradient that arrived the textbook way (or was set by hand)
                if tuple(g.shape) != p.shape:
                    raise ValueError(f"{optimizer.describe(p)} has a gradient of shape {tuple(g.shape)}: it must "
                                     f"have the parameter's shape {p.shape}")
                view[...] = g
                p.grad = view
        if self.taken:
            from .sinks import apply_taken        # armed only inside fit, by sinks.py itself

            apply_taken(self, optimizer, group)
            return True
        if not found:
            return False
        if complete and self.ready:
            optimizer._apply(self.whole, self.grad, self.state, group)
            if self.whole.data is not self.data:       # an update that rebinds instead of updating in place
                self.data[...] = self.whole.data
                self.whole.data = self.data
            self._spread(optimizer)
        else:
            # Counts on the device (a captured fit's eager steps) are one 0-d array for the whole group: each update
            # advances a copy of its own, and the group's count takes the advanced value once, in place (the
            # recording reads that very array), instead of once per parameter.
            shared = {key: self.state[key] for key in self._device_counts}
            advanced = {}
            for p in self.params:
                if p.grad is not None:
                    state = optimizer.state.get(p)
                    if state is None:
                        state = optimizer.state[p] = {}
                    copies = [key for key, count in shared.items() if state.get(key) is count]
                    for key in copies:
                        state[key] = self.xp.asarray(shared[key], copy=True)
                    optimizer._apply(p, p.grad, state, group)
                    for key in copies:
                        advanced[key] = state[key]          # the update may advance it in place or rebind it
            for key, count in shared.items():
                if key in advanced:
                    count[...] = advanced[key]
                for p in self.params:
                    mine = optimizer.state.get(p)
                    if mine is not None and key in mine:
                        mine[key] = count
            self.adopt(optimizer)
        return True

    def _hold_data(self, optimizer):
        """Every parameter's data is still its view; one rebound since (load by hand, p.data = ...) is copied back."""
        for i, p in enumerate(self.params):
            data = p.data
            if data is self.data_views[i]:
                continue
            view = self.data_views[i]
            if not self.device.holds(data) or data.dtype != view.dtype or tuple(data.shape) != p.shape:
                raise DeviceMismatchError(
                    f"{optimizer.describe(p)} is now {_dtype_name(data)} {tuple(data.shape)} on "
                    f"{_where(data)}, but {type(optimizer).__name__} was built for {self.device.dtype_name(view.dtype)} "
                    f"{p.shape} on {self.device}: create the optimizer after model.to(...)")
            view[...] = data
            p.data = view
            p.sink = self

    def _spread(self, optimizer):
        """After a flat update: each parameter's state holds views of the flat slots and the scalars."""
        state = self.state
        for key, value in state.items():
            if self._is_slot(value) and self._slot_arrays.get(key) is not value:
                self._views_of(key, value)      # a new slot (first step), or one the update rebound
        for i, p in enumerate(self.params):
            mine = optimizer.state.get(p)
            if mine is None:
                mine = optimizer.state[p] = {}
            for key, value in state.items():
                views = self.slot_views.get(key)
                mine[key] = value if views is None else views[i]

    def _is_slot(self, value) -> bool:
        """A flat state array (one value per parameter element), as opposed to a scalar or a 0-d count."""
        return hasattr(value, "shape") and tuple(value.shape) == (self.size,)

    def _views_of(self, key, flat):
        xp = self.xp
        self._slot_arrays[key] = flat
        self._shapes = {k: v for k, v in self._shapes.items() if k[0] != key}
        self.slot_views[key] = [xp.reshape(flat[lo:hi], p.shape) for p, (lo, hi) in zip(self.params, self.spans)]

    # -- counts on the device, for a captured step ---------------------------------------------------------------------
    def counts_to_device(self, optimizer):
        """Move the group's integer state (Adam's step count) to 0-d arrays on the device, in the parameters' dtype,
        updated in place by ``_update``: a step recorded into a CUDA graph then counts on every replay, where a
        Python int would be baked into the recording. Needs ``ready`` (the states agree)."""
        xp, moved = self.xp, {}
        for key, value in self.state.items():
            if isinstance(value, int) and not isinstance(value, bool):
                moved[key] = xp.asarray(float(value), dtype=self.data.dtype, device=self.device.native)
        self.state.update(moved)
        self._device_counts = set(moved)
        if moved:
            self._spread(optimizer)

    def counts_to_host(self, optimizer):
        """Undo ``counts_to_device``: the counts are Python ints again (one read from the device)."""
        keys = self._device_counts
        for key in keys:
            self.state[key] = int(round(float(self.device.to_host(self.state[key]))))
        self._device_counts = set()
        if keys:
            self._spread(optimizer)

    def adopt(self, optimizer):
        """Bring per-parameter state (after a step parameter by parameter, or optimizer.load_state_dict) into the
        flat slots, and decide whether the next update can run flat."""
        xp = self.xp
        keys, scalars = None, {}
        consistent = True
        for i, p in enumerate(self.params):
            mine = optimizer.state.get(p, {})
            for key, value in list(mine.items()):
                if hasattr(value, "shape") and tuple(value.shape) == p.shape:
                    if key not in self.slot_views:
                        flat = xp.zeros((self.size,), dtype=self.data.dtype, device=self.device.native)
                        self.state[key] = flat
                        self._views_of(key, flat)
                    view = self.slot_views[key][i]
                    if value is not view:
                        view[...] = value
                        mine[key] = view
                elif hasattr(value, "shape") and getattr(value, "ndim", None) == 0:
                    if scalars.setdefault(key, value) is not value:
                        consistent = False          # counts on the device (capture) are one array for the group
                elif hasattr(value, "shape"):
                    consistent = False              # an array slot the flat layout cannot hold
                elif scalars.setdefault(key, value) != value:
                    consistent = False
            these = frozenset(mine)
            if keys is None:
                keys = these
            elif these != keys:
                consistent = False
        if consistent:
            self.state = {k: (self.state[k] if k in self.slot_views else scalars[k]) for k in (keys or ())}
        self.ready = consistent


def _dtype_name(a) -> str:
    return str(a.dtype).rsplit(".", 1)[-1]


def _where(a) -> str:
    from ..devices import describe

    return describe(a).split(" on ")[-1]
