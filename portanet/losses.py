"""Losses. ``loss(pred, target)`` returns a 0-d array on the device; ``loss.backward()``
returns dL/dpred for the last call. reduction: "mean" (default) or "sum".

    MSELoss, L1Loss (MAE), HuberLoss          regression, pred and target of one shape
    BCELoss                                   probabilities in [0, 1] vs targets in [0, 1]
    BCEWithLogitsLoss                         logits vs targets in [0, 1], stable for any logit
    CrossEntropyLoss                          logits (batch, classes) vs int labels (batch,) or
                                              probabilities (batch, classes); fused gradient p - t
    NLLLoss                                   log-probabilities vs int labels
    HingeLoss                                 multi-class hinge (Weston-Watkins / torch MultiMarginLoss)
"""
from __future__ import annotations

import array_api_compat

from . import devices
from .backends import loss_value
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
        total = self._xp.sum(per_element)
        return total / count if self.reduction == "mean" else total

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

    def forward(self, pred, target):
        diff = pred - target
        self._cache = (diff,)
        return self._reduce(diff * diff, _numel(diff))

    def _check_shapes(self, pred, target):
        super()._check_shapes(pred, target)
        _require_float_target(self, pred, target)

    def _grad(self):
        (diff,) = self._cache
        return diff * (2.0 * self._scale(_numel(diff)))


class L1Loss(MSELoss):
    """mean|pred - target| (MAE). dL/dpred = sign(pred - target) / N (0 where they are equal)."""

    def forward(self, pred, target):
        xp = devices.namespace_of(pred)
        diff = pred - target
        self._cache = (diff,)
        return self._reduce(xp.abs(diff), _numel(diff))

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

    def forward(self, pred, target):
        xp = devices.namespace_of(pred)
        diff = pred - target
        a = xp.abs(diff)
        self._cache = (diff,)
        per = xp.where(a <= self.delta, 0.5 * diff * diff, self.delta * (a - 0.5 * self.delta))
        return self._reduce(per, _numel(diff))

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

    def forward(self, pred, target):
        xp = devices.namespace_of(pred)
        log_p = xp.maximum(xp.log(pred), -100.0)
        log_q = xp.maximum(xp.log(1.0 - pred), -100.0)
        self._cache = (pred, target)
        return self._reduce(-(target * log_p + (1.0 - target) * log_q), _numel(pred))

    def _grad(self):
        pred, target = self._cache
        xp = self._xp
        eps = 1e-12
        denom = xp.maximum(pred * (1.0 - pred), eps)
        return (pred - target) / denom * self._scale(_numel(pred))


class BCEWithLogitsLoss(MSELoss):
    """Binary cross-entropy on logits z: max(z, 0) - z t + log(1 + exp(-|z|)). dL/dz = sigmoid(z) - t."""

    def _check_values(self, pred, target):
        xp = devices.namespace_of(pred)
        if bool(xp.any((target < 0) | (target > 1))):
            raise ValueError("BCEWithLogitsLoss needs targets in [0, 1], got values outside that range")

    def forward(self, z, target):
        xp = devices.namespace_of(z)
        e = xp.exp(-xp.abs(z))
        self._cache = (z, target, e)
        per = xp.maximum(z, 0.0) - z * target + xp.log1p(e)
        return self._reduce(per, _numel(z))

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
            raise ShapeError(f"{name} needs scores of shape (batch, classes), got {tuple(pred.shape)}")
        if pred.shape[0] == 0:
            raise ShapeError(f"{name} got an empty batch (shape {tuple(pred.shape)}): batches need at least one sample")
        if xp.isdtype(target.dtype, "integral"):
            if tuple(target.shape) != (pred.shape[0],):
                raise ShapeError(f"{name} needs integer labels of shape ({pred.shape[0]},) for scores of shape "
                                 f"{tuple(pred.shape)}, got {tuple(target.shape)}"
                                 + (": flatten them (y.reshape(-1))" if target.ndim == 2 else ""))
        elif self.accepts_probabilities and xp.isdtype(target.dtype, "real floating"):
            if tuple(target.shape) != tuple(pred.shape):
                raise ShapeError(f"{name} with probability targets needs them shaped like the scores "
                                 f"{tuple(pred.shape)}, got {tuple(target.shape)}")
            if target.dtype != pred.dtype:
                raise TypeError(f"{name} got {pred.dtype} scores but {target.dtype} targets: convert the targets")
        else:
            kinds = "integer class labels" + (" or class probabilities" if self.accepts_probabilities else "")
            raise TypeError(f"{name} needs {kinds}, got {target.dtype} targets")

    def _check_values(self, pred, target):
        xp = devices.namespace_of(pred)
        c = pred.shape[1]
        if xp.isdtype(target.dtype, "integral"):
            if bool(xp.any((target < 0) | (target >= c))):
                lo, hi = int(xp.min(target)), int(xp.max(target))
                raise ValueError(f"{type(self).__name__} got labels in [{lo}, {hi}] but the model has {c} classes "
                                 f"(labels 0..{c - 1}): check the labels, or give the last layer more outputs")
        elif bool(xp.any(target < 0)):
            raise ValueError(f"{type(self).__name__} needs non-negative class probabilities as targets")

    def _one_hot(self, xp, labels, c, dtype):
        """(batch,) int -> (batch, c) float; a label outside 0..c-1 gives a row of NaN, so a bad label
        that slipped past the checks poisons the loss instead of silently counting as zero."""
        classes = xp.arange(c, device=array_api_compat.device(labels))
        hit = labels[:, None] == classes
        onehot = xp.astype(hit, dtype)
        valid = xp.any(hit, axis=1, keepdims=True)
        return xp.where(valid, onehot, float("nan"))


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

    target: int labels (batch,) or class probabilities (batch, classes). label_smoothing e
    mixes the target with the uniform distribution: t' = (1 - e) t + e / classes.
    """

    accepts_probabilities = True

    def __init__(self, reduction="mean", label_smoothing=0.0, check_values=True):
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        super().__init__(reduction, check_values)
        self.label_smoothing = float(label_smoothing)

    def forward(self, z, target):
        xp = devices.namespace_of(z)
        n, c = z.shape
        labels = target.ndim == 1     # check() has made 1-d targets int labels and 2-d ones probabilities
        if labels and not self.label_smoothing:     # the kernel takes int64 labels only
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
        shifted = z - xp.max(z, axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = xp.sum(e, axis=1, keepdims=True)
        log_s = xp.log(s)
        if labels:
            t = xp.astype(target[:, None] == _class_index(xp, c, target), z.dtype)
        else:
            t = target
        if self.label_smoothing:
            t = (1.0 - self.label_smoothing) * t + self.label_smoothing / c
        if labels:
            # rows of t sum to 1, so -sum t (shifted - log s) = sum(log s) - sum(t * shifted): two small ops fewer.
            # (Labels outside 0..c-1 are caught by __call__'s checks, or once on the host by fit.)
            total = xp.sum(log_s) - xp.sum(t * shifted)
        else:
            total = xp.sum(t * (log_s - shifted))
        self._cache = (e, s, t, labels)
        return total / n if self.reduction == "mean" else total

    def _grad(self):
        e, s, t, labels = self._cache
        if labels == "fused":
            return e
        n = e.shape[0]
        p = e / s
        if labels:  # each row of t sums to 1, so d/dz of -sum t log softmax(z) is exactly p - t
            return (p - t) * self._scale(n)
        return (p * self._xp.sum(t, axis=1, keepdims=True) - t) * self._scale(n)

    def __repr__(self):
        ls = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return f"CrossEntropyLoss(reduction='{self.reduction}'{ls})"


class NLLLoss(_ClassLoss):
    """-log_probs[i, label_i], for a model ending in LogSoftmax. dL/dlog_probs = -onehot / N."""

    def forward(self, log_probs, target):
        xp = devices.namespace_of(log_probs)
        n, c = log_probs.shape
        t = self._one_hot(xp, target, c, log_probs.dtype)
        self._cache = (t,)
        return self._reduce(-(t * log_probs), n)

    def _grad(self):
        (t,) = self._cache
        return -t * self._scale(t.shape[0])


class HingeLoss(_ClassLoss):
    """Multi-class hinge: sum over j != y of max(0, margin - s_y + s_j) / classes (torch's MultiMarginLoss)."""

    def __init__(self, reduction="mean", margin=1.0, check_values=True):
        super().__init__(reduction, check_values)
        self.margin = float(margin)

    def forward(self, scores, target):
        xp = devices.namespace_of(scores)
        n, c = scores.shape
        t = self._one_hot(xp, target, c, scores.dtype)
        correct = xp.sum(scores * t, axis=1, keepdims=True)
        margins = xp.maximum(self.margin - correct + scores, 0.0) * (1.0 - t)
        self._cache = (margins, t)
        return self._reduce(margins / c, n)

    def _grad(self):
        margins, t = self._cache
        xp = self._xp
        n, c = margins.shape
        active = xp.astype(margins > 0, margins.dtype)
        g = active - t * xp.sum(active, axis=1, keepdims=True)
        return g * (self._scale(n) / c)


__all__ = ["BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "HingeLoss", "HuberLoss", "L1Loss", "Loss",
           "MSELoss", "NLLLoss"]
