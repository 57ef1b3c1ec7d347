"""Losses. ``loss(pred, target)`` returns a 0-d array on the device; ``loss.backward()``
returns dL/dpred for the last call. reduction: "mean" (default) or "sum".

    MSELoss, L1Loss (MAE), HuberLoss          regression, pred and target of one shape
    BCELoss                                   probabilities in [0, 1] vs targets in [0, 1]
    BCEWithLogitsLoss                         logits vs targets in [0, 1], stable for any logit
    CrossEntropyLoss                          logits (batch, classes) vs int labels (batch,) or
                                              probabilities (batch, classes); fused gradient p - t
    NLLLoss                                   log-probabilities vs int labels
    HingeLoss                                 multi-class hinge (Weston-Watkins / torch MultiMarginLoss)

Infinite and huge scores give the loss and gradient of the limit, the same on every backend and kernel:
an entry is picked out of a score array by selecting it (``where``), never by multiplying with a one-hot or
target array, because 0 * inf is NaN. So a -inf logit of a class with target 0 costs nothing, a +inf logit of
the target class gives loss 0 (BCEWithLogitsLoss at z = +inf, t = 1; CrossEntropyLoss), and gradients stay the
limit's (softmax - t, sigmoid - t: 0 at a class whose logit is -inf). A loss that is truly infinite (the target
class at -inf) is +inf with a finite gradient. A NaN score gives a NaN loss. Values whose float square or
difference overflows (MSE of 1e30 in float32) are +inf, as IEEE arithmetic rounds them.
"""
from __future__ import annotations

import array_api_compat

from . import devices
from .backends import loss_value
from .backends.quiet import quiet
from .backends.kernels import REFUSALS
from .errors import DeviceMismatchError, NotFittedError, ShapeError


class Loss:
    """Base class. Subclasses implement ``forward(pred, target) -> 0-d`` and ``_grad() -> dL/dpred``.

    ``check_values`` (default True) validates data-dependent facts (labels in range, probabilities
    in [0, 1]) on every call; that reads a flag from the device. ``fit`` checks its data once on
    the host instead, and calls ``forward`` directly so the training step never waits on the device.
    """

    def __init__(self, reduction="mean", check_values=True):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        self.check_values = check_values
        self._cache = None

    def __call__(self, pred, target):
        self.check(pred, target, values=self.check_values)
        # a 0-d array of pred's library whose .backward() names model.backward(loss_fn.backward())
        return loss_value.mark(self.forward(pred, target))

    def check(self, pred, target, values=True):
        """Raise on arrays of the wrong library, device, dtype or shape; with ``values``, also on
        data-dependent problems (which reads a flag from the device)."""
        self._check_arrays(pred, target)
        self._check_shapes(pred, target)
        if values:
            self._check_values(pred, target)

    def forward(self, pred, target):
        raise NotImplementedError

    def backward(self):
        """dL/dpred for the last forward (scaled by 1/N for reduction='mean')."""
        if self._cache is None:
            raise NotFittedError(f"{type(self).__name__}.backward() was called before the loss was computed: "
                                 "call loss(pred, target) first")
        return self._grad()

    # -- checks ---------------------------------------------------------------------------
    def _check_arrays(self, pred, target):
        name = type(self).__name__
        if not (hasattr(pred, "shape") and hasattr(pred, "dtype")):
            raise TypeError(f"{name} needs the model's output array as pred, got {type(pred).__name__}")
        try:
            array_api_compat.array_namespace(pred, target)
        except TypeError as e:
            raise DeviceMismatchError(f"{name} got pred as {devices.describe(pred)} and target as "
                                      f"{devices.describe(target)}: put both on the model's device "
                                      "(the DataLoader's device= does this)") from e
        pd, td = array_api_compat.device(pred), array_api_compat.device(target)
        if pd != td:
            raise DeviceMismatchError(f"{name} got pred on {pd} and target on {td}: pass device=model.device to "
                                      "the DataLoader so labels arrive with the batch")
        xp = devices.namespace_of(pred)
        if not xp.isdtype(pred.dtype, "real floating"):
            raise TypeError(f"{name} needs floating-point predictions, got {pred.dtype}")

    def _check_shapes(self, pred, target):
        if tuple(pred.shape) != tuple(target.shape):
            raise ShapeError(f"{type(self).__name__} needs pred and target of one shape, got {tuple(pred.shape)} "
                             f"and {tuple(target.shape)}" + (": reshape the target to match (y[:, None] for one "
                                                             "output unit)" if target.ndim + 1 == pred.ndim else ""))
        if pred.ndim == 0 or pred.shape[0] == 0:
            raise ShapeError(f"{type(self).__name__} got an empty batch (shape {tuple(pred.shape)}): "
                             "batches need at least one sample")

    def _check_values(self, pred, target):
        pass

    def _reduce(self, per_element, count):
        xp = self._xp
        total = xp.sum(per_element)
        # asarray: NumPy's reductions give a scalar (numpy.float32), the other libraries a 0-d array; the loss is a
        # 0-d array everywhere, so that code holding it (a recorded step's outputs) can write into it
        return xp.asarray(total / count if self.reduction == "mean" else total)

    def _scale(self, count):
        return 1.0 / count if self.reduction == "mean" else 1.0

    @property
    def _xp(self):
        return devices.namespace_of(self._cache[0])

    def __repr__(self):
        return f"{type(self).__name__}(reduction='{self.reduction}')"


def _numel(a):
    n = 1
    for s in a.shape:
        n *= s
    return n


def _require_float_target(loss, pred, target):
    xp = devices.namespace_of(pred)
    if target.dtype != pred.dtype:
        if xp.isdtype(target.dtype, "real floating"):
            raise TypeError(f"{type(loss).__name__} got {pred.dtype} predictions but {target.dtype} targets: "
                            "convert the targets to the model's dtype (portanet never upcasts silently)")
        raise TypeError(f"{type(loss).__name__} needs floating-point targets like its predictions, got "
                        f"{target.dtype}: convert them (y.astype(float32))")


class MSELoss(Loss):
    """mean((pred - target)^2). dL/dpred = 2 (pred - target) / N."""

    @quiet
    def forward(self, pred, target):
        diff = pred - target
        self._cache = (diff,)
        return self._reduce(diff * diff, _numel(diff))

    def _check_shapes(self, pred, target):
        super()._check_shapes(pred, target)
        _require_float_target(self, pred, target)

    @quiet
    def _grad(self):
        (diff,) = self._cache
        return diff * (2.0 * self._scale(_numel(diff)))


class L1Loss(MSELoss):
    """mean|pred - target| (MAE). dL/dpred = sign(pred - target) / N (0 where they are equal)."""

    @quiet
    def forward(self, pred, target):
        xp = devices.namespace_of(pred)
        diff = pred - target
        self._cache = (diff,)
        return self._reduce(xp.abs(diff), _numel(diff))

    @quiet
    def _grad(self):
        (diff,) = self._cache
        return self._xp.sign(diff) * self._scale(_numel(diff))


class HuberLoss(MSELoss):
    """0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta); d = pred - target (PyTorch's HuberLoss)."""

    def __init__(self, reduction="mean", delta=1.0, check_values=True):
        if delta <= 0:
            raise ValueError(f"HuberLoss delta must be positive, got {delta}")
        super().__init__(reduction, check_values)
        self.delta = float(delta)

    @quiet
    def forward(self, pred, target):
        xp = devices.namespace_of(pred)
        diff = pred - target
        a = xp.abs(diff)
        self._cache = (diff,)
        per = xp.where(a <= self.delta, 0.5 * diff * diff, self.delta * (a - 0.5 * self.delta))
        return self._reduce(per, _numel(diff))

    @quiet
    def _grad(self):
        (diff,) = self._cache
        xp = self._xp
        return xp.clip(diff, -self.delta, self.delta) * self._scale(_numel(diff))


class BCELoss(MSELoss):
    """-(t log p + (1 - t) log(1 - p)) for probabilities p (after a Sigmoid). Logs are clamped at
    -100 as in PyTorch. Prefer BCEWithLogitsLoss on raw logits: it is exact for any logit."""

    def _check_values(self, pred, target):
        xp = devices.namespace_of(pred)
        if bool(xp.any((pred < 0) | (pred > 1))):
            raise ValueError("BCELoss needs probabilities in [0, 1] as pred, got values outside that range: "
                             "add a Sigmoid() as the last layer, or use BCEWithLogitsLoss on the logits")
        if bool(xp.any((target < 0) | (target > 1))):
            raise ValueError("BCELoss needs targets in [0, 1], got values outside that range")

    @quiet
    def forward(self, pred, target):
        xp = devices.namespace_of(pred)
        log_p = xp.maximum(xp.log(pred), -100.0)
        log_q = xp.maximum(xp.log(1.0 - pred), -100.0)
        self._cache = (pred, target)
        return self._reduce(-(target * log_p + (1.0 - target) * log_q), _numel(pred))

    @quiet
    def _grad(self):
        pred, target = self._cache
        xp = self._xp
        eps = 1e-12
        denom = xp.maximum(pred * (1.0 - pred), eps)
        return (pred - target) / denom * self._scale(_numel(pred))


class BCEWithLogitsLoss(MSELoss):
    """Binary cross-entropy on logits z: max(z, 0) - z t + log(1 + exp(-|z|)). dL/dz = sigmoid(z) - t.

    Written as w |z| + log(1 + exp(-|z|)) with w = 1 - t for z >= 0 and t for z < 0, w selected before it
    multiplies: z = -inf with t = 0 and z = +inf with t = 1 give loss 0 and gradient 0 (PyTorch: NaN);
    z = -inf with t > 0 gives +inf. A NaN logit gives NaN.
    """

    def _check_values(self, pred, target):
        xp = devices.namespace_of(pred)
        if bool(xp.any((target < 0) | (target > 1))):
            raise ValueError("BCEWithLogitsLoss needs targets in [0, 1], got values outside that range")

    @quiet
    def forward(self, z, target):
        xp = devices.namespace_of(z)
        a = xp.abs(z)
        e = xp.exp(-a)
        self._cache = (z, target, e)
        w = xp.where(z >= 0, 1.0 - target, target)
        per = xp.where(w == 0, 0.0, a) * w + xp.log1p(e)      # 0, not 0 * inf, where w is 0 and z infinite
        return self._reduce(per, _numel(z))

    @quiet
    def _grad(self):
        z, target, e = self._cache
        xp = self._xp
        r = 1.0 / (1.0 + e)
        sig = xp.where(z >= 0, r, e * r)
        return (sig - target) * self._scale(_numel(z))


class _ClassLoss(Loss):
    """Shared checks for losses over (batch, classes) scores and int labels (batch,)."""

    accepts_probabilities = False

    def _check_shapes(self, pred, target):
        name = type(self).__name__
        xp = devices.namespace_of(pred)
        if pred.ndim != 2:
            raise ShapeError(f"{name} needs scores of shape (batch, classes), got {tuple(pred.shape)}: "
                             + _scores_fix(pred, target))
        if pred.shape[0] == 0:
            raise ShapeError(f"{name} got an empty batch (shape {tuple(pred.shape)}): batches need at least one sample")
        n, c = pred.shape
        if xp.isdtype(target.dtype, "integral"):
            if tuple(target.shape) != (n,):
                raise ShapeError(f"{name} needs integer labels of shape ({n},) for scores of shape {(n, c)}, got "
                                 f"{tuple(target.shape)}: " + self._labels_fix(target, n, c))
        elif self.accepts_probabilities and xp.isdtype(target.dtype, "real floating"):
            if tuple(target.shape) != (n, c):
                fix = ("these look like class labels stored as floats: convert them (y.astype(int64))"
                       if tuple(target.shape) == (n,) else "give one probability per class, each row summing to 1")
                raise ShapeError(f"{name} with probability targets needs them shaped like the scores {(n, c)}, "
                                 f"got {tuple(target.shape)}: {fix}")
            if target.dtype != pred.dtype:
                raise TypeError(f"{name} got {pred.dtype} scores but {target.dtype} probability targets: convert "
                                f"the targets to {pred.dtype} (portanet never upcasts silently)")
        else:
            kinds = "integer class labels" + (" or class probabilities" if self.accepts_probabilities else "")
            if xp.isdtype(target.dtype, "real floating"):
                fix = ("convert labels to integers (y.astype(int64)); for probability targets use "
                       "CrossEntropyLoss on the logits")
            else:
                fix = "pass labels as int64 (y.astype(int64))"
            raise TypeError(f"{name} needs {kinds}, got {target.dtype} targets: {fix}")

    def _labels_fix(self, target, n, c):
        """The fix for integer labels of the wrong shape, from the shape they have."""
        shape = tuple(target.shape)
        if shape == (n, c) and c > 1:
            alt = ", or pass the rows as float probabilities (y.astype(float32))" if self.accepts_probabilities else ""
            return f"they look like one-hot rows; pass the class index of each (y.argmax(1)){alt}"
        if shape in ((n, 1), (1, n)):
            return "flatten them (y.reshape(-1))"
        if target.ndim == 0:
            return "pass one label per sample, as an array of shape (batch,)"
        return f"pass one label per sample ({n} samples in this batch); check that x and y were sliced alike"

    def _check_values(self, pred, target):
        xp = devices.namespace_of(pred)
        c = pred.shape[1]
        if xp.isdtype(target.dtype, "integral"):
            if bool(xp.any((target < 0) | (target >= c))):
                lo, hi = int(xp.min(target)), int(xp.max(target))
                raise ValueError(f"{type(self).__name__} got labels in [{lo}, {hi}] but the model has {c} classes "
                                 f"(labels 0..{c - 1}): {labels_fix(lo)}")
        elif bool(xp.any((target < 0) | (target > 1))):
            raise ValueError(probabilities_message(type(self).__name__, float(xp.min(target)), float(xp.max(target)),
                                                   "batch's targets"))

    def _one_hot(self, xp, labels, c, dtype):
        """(batch,) int -> (hit, t): hit (batch, c) bool marks each row's label, t is its float one-hot. A label
        outside 0..c-1 gives t a row of NaN, so a bad label that slipped past the checks poisons the loss
        instead of silently counting as zero. Pick scores with ``where(hit, ...)``, not ``t * scores``."""
        hit = labels[:, None] == _class_index(xp, c, labels)
        onehot = xp.astype(hit, dtype)
        valid = xp.any(hit, axis=1, keepdims=True)
        return hit, xp.where(valid, onehot, float("nan"))


def labels_fix(lowest) -> str:
    """The fix for integer labels outside 0..classes-1, from the lowest one: a negative label is no class, most
    often PyTorch's ignore_index (-100) marking samples to skip, which portanet's losses do not have."""
    if lowest < 0:
        return ("negative labels are no class; to skip samples as PyTorch's ignore_index=-100 does, drop them first "
                "(keep = y >= 0, then x[keep], y[keep])")
    return "check the labels, or give the last layer more outputs"


def probabilities_message(name, lo, hi, where="targets") -> str:
    """Class-probability targets outside [0, 1] (checked on a batch, or on fit's host targets once)."""
    found = f"a negative one (min {lo:g})" if lo < 0 else f"one above 1 (max {hi:g})"
    return (f"{name} needs class probabilities in [0, 1] as targets, but the {where} hold {found}: give each row "
            "probabilities that sum to 1 (y / y.sum(1, keepdims=True) for counts or weights), or integer labels")


def _scores_fix(pred, target):
    """The fix for class scores that are not (batch, classes), from their shape and the target's."""
    if pred.ndim == 1:
        if target.ndim == 0:
            return "one sample's scores without a batch axis: add one (scores[None], y[None])"
        if tuple(target.shape) == tuple(pred.shape):
            return ("one score per sample is a binary problem: use BCEWithLogitsLoss with float targets, or give "
                    "the last layer one output per class")
        return "add a batch axis (scores[None]) for one sample, or give the last layer one output per class"
    if pred.ndim == 0:
        return "pass the model's output for a batch, not a single number"
    return "flatten the extra axes into the batch or the classes (scores.reshape(-1, classes))"


_CLASS_INDEX: dict = {}


def _class_index(xp, c, like):
    """arange(c) on ``like``'s device, made once per (namespace, device, c): it is compared every step."""
    dev = array_api_compat.device(like)
    key = (id(xp), str(dev), c)
    idx = _CLASS_INDEX.get(key)
    if idx is None:
        idx = _CLASS_INDEX[key] = xp.arange(c, device=dev)
    return idx


class CrossEntropyLoss(_ClassLoss):
    """Softmax cross-entropy on logits, fused: dL/dz = (softmax(z) - t) / N.

    z: (batch, classes) logits. target: int labels (batch,) or class probabilities (batch, classes).
    label_smoothing e mixes the target with the uniform distribution: t' = (1 - e) t + e / classes.
    Returns a 0-d array (mean over the batch, or the sum).

    Infinite logits, the rule every backend and kernel follows (NumPy's C kernel, CuPy's, this code):
      - shifted = z - max(z) per row, but exactly 0 wherever z equals its row's max, so that an infinite max
        gives 0 instead of inf - inf = NaN. Ties at the max share the probability, infinite ones too:
        [inf, 0] -> p = [1, 0]; [inf, inf, 0] -> [1/2, 1/2, 0]; a row of only -inf -> uniform.
      - p = exp(shifted) / sum(exp(shifted)): exactly 0 at a -inf logit below the max.
      - the loss picks the target's entries by selection: label rows take shifted[label] (no one-hot product);
        probability rows add t * (log s - shifted) only where t > 0, as 0 * inf would be NaN. So a -inf logit
        of a class with target 0 costs nothing ([2, -inf, 1], label 0: 0.3132617; probabilities [0, 1] for
        [-inf, 0]: 0), a +inf target class gives 0, and a target class infinitely below the max (at -inf,
        or under a +inf) gives +inf.
      - the gradient is p - t (p * sum(t) - t for probabilities) times 1/N: finite, 0 at a -inf logit whose
        target is 0 (-t where it is not).
      - a NaN logit makes its row's loss and gradient NaN (its loss only where the row has a target above 0:
        a row of zero targets weighs nothing).
    PyTorch gives NaN for each of these rows but the NaN one.
    """

    accepts_probabilities = True

    def __init__(self, reduction="mean", label_smoothing=0.0, check_values=True):
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        super().__init__(reduction, check_values)
        self.label_smoothing = float(label_smoothing)

    def forward(self, z, target):
        xp = devices.namespace_of(z)
        n = z.shape[0]
        if target.ndim == 1 and not self.label_smoothing:     # the kernel takes int64 labels only
            fused = devices.kernel_for(z, "softmax_ce")
            if fused is not None:   # loss and gradient in one pass (backends/kernels.py); same math as below
                grad = xp.empty_like(z)
                try:
                    total = fused(z, target, grad, self._scale(n))
                except REFUSALS:
                    pass
                else:
                    self._cache = (grad, None, None, "fused")
                    return xp.asarray(total / n if self.reduction == "mean" else total, dtype=z.dtype)
        return self._standard(xp, z, target)

    @quiet      # the kernel above warns of nothing; this code meets inf - inf on purpose (class docstring)
    def _standard(self, xp, z, target):
        n, c = z.shape
        labels = target.ndim == 1     # check() has made 1-d targets int labels and 2-d ones probabilities
        m = xp.max(z, axis=1, keepdims=True)
        shifted = xp.where(z == m, 0.0, z - m)          # 0 at the max even when it is infinite (class docstring)
        e = xp.exp(shifted)
        s = xp.sum(e, axis=1, keepdims=True)
        log_s = xp.log(s)
        eps = self.label_smoothing
        if labels:
            hit = target[:, None] == _class_index(xp, c, target)
            t = xp.astype(hit, z.dtype)
            # rows of t sum to 1, so -sum t (shifted - log s) = sum(log s) - sum(shifted[label]), the label's entry
            # selected (t * shifted is 0 * -inf = NaN at a -inf logit). Label smoothing adds e / c of every entry.
            # (Labels outside 0..c-1 are caught by __call__'s checks, or once on the host by fit.)
            total = xp.sum(log_s)
            if eps < 1.0:
                picked = xp.sum(xp.where(hit, shifted, 0.0))
                total = total - (picked if not eps else (1.0 - eps) * picked)
            if eps:
                total = total - (eps / c) * xp.sum(shifted)
                t = (1.0 - eps) * t + eps / c
        else:
            t = target if not eps else (1.0 - eps) * target + eps / c
            # t * -log p, with 0 where t = 0 (0 * inf at a -inf logit would be NaN)
            total = xp.sum(t * xp.where(t == 0, 0.0, log_s - shifted))
        self._cache = (e, s, t, labels)
        return xp.asarray(total / n if self.reduction == "mean" else total)      # a 0-d array on NumPy too (_reduce)

    def _grad(self):
        e, s, t, labels = self._cache
        if labels == "fused":
            return e
        return self._standard_grad(e, s, t, labels)

    @quiet
    def _standard_grad(self, e, s, t, labels):
        n = e.shape[0]
        p = e / s
        if labels:  # each row of t sums to 1, so d/dz of -sum t log softmax(z) is exactly p - t
            return (p - t) * self._scale(n)
        return (p * self._xp.sum(t, axis=1, keepdims=True) - t) * self._scale(n)

    def __repr__(self):
        ls = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return f"CrossEntropyLoss(reduction='{self.reduction}'{ls})"


class NLLLoss(_ClassLoss):
    """-log_probs[i, label_i], for a model ending in LogSoftmax. dL/dlog_probs = -onehot / N.

    log_probs: (batch, classes); target: int labels (batch,). The label's entry is selected, so -inf at
    another class (probability 0) costs nothing, and -inf at the label gives +inf. A NaN anywhere in a
    row makes the loss NaN, as in every loss here.
    """

    @quiet
    def forward(self, log_probs, target):
        xp = devices.namespace_of(log_probs)
        n, c = log_probs.shape
        hit, t = self._one_hot(xp, target, c, log_probs.dtype)
        self._cache = (t,)
        # -log_probs at the label (and at a NaN); elsewhere t: 0, or NaN on the row of a bad label
        return self._reduce(xp.where(hit | xp.isnan(log_probs), -log_probs, t), n)

    @quiet
    def _grad(self):
        (t,) = self._cache
        return -t * self._scale(t.shape[0])


class HingeLoss(_ClassLoss):
    """Multi-class hinge: sum over j != y of max(0, margin - s_y + s_j) / classes (torch's MultiMarginLoss).

    scores: (batch, classes); target: int labels (batch,). s_y is selected, not summed from scores * onehot,
    so infinite scores give the limit: s_y = +inf -> 0, s_y = -inf or s_j = +inf -> +inf, with the (finite)
    subgradient of the margins that are active; s_j equal to s_y counts as a tie (margin) even at infinity.
    """

    def __init__(self, reduction="mean", margin=1.0, check_values=True):
        super().__init__(reduction, check_values)
        self.margin = float(margin)

    @quiet
    def forward(self, scores, target):
        xp = devices.namespace_of(scores)
        n, c = scores.shape
        hit, t = self._one_hot(xp, target, c, scores.dtype)
        correct = xp.sum(xp.where(hit, scores, 0.0), axis=1, keepdims=True)
        gap = xp.where(scores == correct, 0.0, scores - correct)          # s_j - s_y; 0 for ties, inf ones too
        # the label's own entry is 0 (selected, as its gap may be inf - inf); (1 - t) keeps a bad label's NaN row
        margins = xp.where(hit, 0.0, xp.maximum(self.margin + gap, 0.0)) * (1.0 - t)
        self._cache = (margins, t)
        return self._reduce(margins / c, n)

    @quiet
    def _grad(self):
        margins, t = self._cache
        xp = self._xp
        n, c = margins.shape
        active = xp.astype(margins > 0, margins.dtype)
        active = xp.where(xp.isnan(margins), margins, active)        # a NaN score: NaN gradient, not 0
        g = active - t * xp.sum(active, axis=1, keepdims=True)
        return g * (self._scale(n) / c)


__all__ = ["BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "HingeLoss", "HuberLoss", "L1Loss", "Loss",
           "MSELoss", "NLLLoss"]
