"""Metrics, computed on the device: they return 0-d arrays to accumulate, never Python numbers.

``fit`` and ``evaluate`` read what the model outputs from the loss in use, and count accuracy to match:

    CrossEntropyLoss, NLLLoss, HingeLoss   scores: argmax against the label (or the target's argmax), per sample
    BCELoss                                probabilities: p > 0.5 against t > 0.5, per element
    BCEWithLogitsLoss                      logits: z > 0 against t > 0.5, per element
    MSELoss, L1Loss, HuberLoss             a regression: no accuracy (asking for one is an error)

Per element: a multi-label (batch, k) output counts batch * k predictions, as Keras' ``binary_accuracy`` does
(its mean over the last axis, then over the batch).

The named metrics. "accuracy" is the rule above. "categorical_accuracy" is the argmax whatever the loss.
"binary_accuracy" counts per element at the threshold that matches the outputs, so nobody has to pass one:
0 for logits (BCEWithLogitsLoss, and CrossEntropyLoss's scores), 0.5 for probabilities (BCELoss) and for a
regression's outputs, which estimate 0/1 targets (MSE on 0/1 targets, Keras' default threshold); without a loss,
0.5 when the model ends in Sigmoid or Softmax, else 0. Keras' own
``binary_accuracy`` always thresholds at 0.5, so with a ``from_logits`` loss Keras users pass threshold=0: here the
loss says so.

Without a loss (``evaluate(model, x, y)``, ``evaluate(model, loader)``), the model's last layer and the targets
decide. The targets come from the loader's host arrays where it has them, else from the first batch.

    targets                                        accuracy
    floats that are not 0/1 (nor rows of class     none: a regression (metrics="auto" logs no accuracy; asking
      probabilities summing to 1)                    for "accuracy" is an error)
    the model ends in Sigmoid, 2-D targets         probabilities: > 0.5 per element, any width (multi-label)
    the model ends in Softmax or LogSoftmax        argmax
    0/1 rows that are not one-hot (multi-label)    logits: > 0 per element
    anything else (labels, one-hot rows, one       the output's shape: (batch, k > 1) argmax; one column a
      column of 0/1)                                 threshold, at 0.5 when the model ends in Sigmoid, else at 0

Rows are read top to bottom; the first that applies decides.
"""
from __future__ import annotations

import math

import array_api_compat

from . import devices


def argmax_correct(output, target):
    """Correct argmax predictions in a batch (0-d int64).   output: (batch, classes) scores; target: (batch,)
    labels or (batch, classes) one-hot/probabilities (its argmax is the class)."""
    xp = devices.namespace_of(output)
    pred = xp.argmax(output, axis=1)
    truth = target if target.ndim == 1 else xp.argmax(target, axis=1)
    return xp.sum(xp.astype(pred == truth, xp.int64))


def threshold_correct(output, target, threshold):
    """Correct binary predictions in a batch, counted per element (0-d int64): output > threshold against
    target > 0.5 (float targets) or target > 0 (0/1 labels). A (batch,) target goes with a (batch, 1) output."""
    xp = devices.namespace_of(output)
    if target.ndim + 1 == output.ndim and output.shape[-1] == 1:
        target = target[..., None]
    truth = target > 0.5 if xp.isdtype(target.dtype, "real floating") else target > 0
    return xp.sum(xp.astype((output > threshold) == truth, xp.int64))


def correct(output, target, threshold=0.0):
    """Number of correct predictions in a batch (0-d int array), by the output's shape: (batch, classes > 1)
    argmax; one column ``output > threshold`` against target > 0.5 (threshold 0 for logits, 0.5 for
    probabilities)."""
    if output.ndim == 2 and output.shape[1] > 1:
        return argmax_correct(output, target)
    return threshold_correct(output, target, threshold)


def accuracy(output, target, threshold=0.0):
    """Fraction correct as a 0-d float array (see ``correct``; one column counts every element)."""
    xp = devices.namespace_of(output)
    n = output.shape[0] if output.ndim == 2 and output.shape[1] > 1 else math.prod(output.shape)
    return xp.astype(correct(output, target, threshold), output.dtype) / n


def confusion_matrix(predicted, target, classes):
    """(classes, classes) counts, rows = true class, columns = predicted class (int labels, on the device)."""
    xp = array_api_compat.array_namespace(predicted)
    dev = array_api_compat.device(predicted)
    index = target * classes + predicted
    hits = index[:, None] == xp.arange(classes * classes, device=dev)
    return xp.reshape(xp.sum(xp.astype(hits, xp.int64), axis=0), (classes, classes))


class Accuracy:
    """One accuracy rule, as ``fit`` and ``evaluate`` count it: ``self(output, target)`` is the number correct in
    a batch (0-d int64 on the device), ``self.total(output)`` how many predictions that is (a host int).

    rule: "argmax" (per sample), "probabilities" (threshold 0.5, per element), "logits" (threshold 0, per
    element), or "shape" (no loss to say: argmax for (batch, k > 1), else ``threshold``)."""

    def __init__(self, rule, threshold=0.0):
        self.rule = rule
        self.threshold = 0.5 if rule == "probabilities" else 0.0 if rule == "logits" else float(threshold)

    def _argmax(self, output):
        return self.rule == "argmax" or (self.rule == "shape" and output.ndim == 2 and output.shape[1] > 1)

    def __call__(self, output, target):
        if self._argmax(output):
            return argmax_correct(output, target)
        return threshold_correct(output, target, self.threshold)

    def total(self, output) -> int:
        return output.shape[0] if self._argmax(output) else math.prod(output.shape)

    def count_into(self, output, target, counts, k) -> bool:
        """counts[k] = self(output, target) in one launch of the backend's kernel where it has one (CuPy's
        count_correct: argmax against int labels; the five calls above otherwise). False: the caller does it."""
        if not self._argmax(output) or target.ndim != 1:
            return False
        kernel = devices.kernel_for(output, "count_correct")
        if kernel is None:
            return False
        try:
            kernel(output, target, counts, k)
        except (TypeError, ValueError, BufferError):
            return False
        return True

    def __repr__(self):
        return f"Accuracy({self.rule!r})"


NAMES = ("accuracy", "binary_accuracy", "categorical_accuracy")


def _loss_outputs(loss):
    """What the loss says the model outputs: "scores", "probabilities", "logits", "regression", or None
    (no loss, or one portanet does not know)."""
    from .losses import BCELoss, BCEWithLogitsLoss, HuberLoss, L1Loss, MSELoss, _ClassLoss

    if loss is None:
        return None
    # BCE losses derive from MSELoss (they share its shape checks): ask for them first
    if isinstance(loss, BCEWithLogitsLoss):
        return "logits"
    if isinstance(loss, BCELoss):
        return "probabilities"
    if isinstance(loss, _ClassLoss):
        return "scores"
    if isinstance(loss, (MSELoss, L1Loss, HuberLoss)):
        return "regression"
    return None


def _last_layer(model):
    last = model
    while hasattr(last, "layers") and len(last.layers):
        last = last.layers[-1]
    return last


def _ends_in_sigmoid(model):
    from .layers.activations import Sigmoid

    return model is not None and isinstance(_last_layer(model), Sigmoid)


def _ends_in_softmax(model, log=True):
    from .layers.softmax import LogSoftmax, Softmax

    return model is not None and isinstance(_last_layer(model), (Softmax, LogSoftmax) if log else Softmax)


def targets_kind(targets) -> str | None:
    """What targets (host arrays, or any library's) say about the problem: "labels" (integers or booleans),
    "binary" (floats, all 0 or 1, one-hot rows or one column), "multilabel" (0/1 rows that are not one-hot),
    "probabilities" (rows in [0, 1] summing to 1), "continuous" (any other floats: a regression), or None (no
    targets to look at)."""
    if targets is None:
        return None
    t = targets
    xp = array_api_compat.array_namespace(t)
    if xp.isdtype(t.dtype, ("integral", "bool")):
        return "labels"
    if not xp.isdtype(t.dtype, "real floating") or math.prod(t.shape) == 0:
        return None
    if bool(xp.all((t == 0) | (t == 1))):
        if t.ndim == 2 and t.shape[1] > 1 and not bool(xp.all(xp.sum(t, axis=1) == 1)):
            return "multilabel"
        return "binary"
    if t.ndim == 2 and t.shape[1] > 1 and float(xp.min(t)) >= 0 and float(xp.max(t)) <= 1 and \
            bool(xp.all(xp.abs(xp.sum(t, axis=1) - 1.0) <= 1e-3)):
        return "probabilities"
    return "continuous"


def _without_loss(model, targets):
    """The accuracy rule when no loss says what the model outputs (module docstring): "regression" (none),
    "probabilities", "logits", "argmax", or "shape" with its threshold."""
    kind = targets_kind(targets)
    if kind == "continuous":
        return "regression"
    sigmoid = _ends_in_sigmoid(model)
    two_d = targets is not None and getattr(targets, "ndim", 0) == 2
    if sigmoid and two_d:
        return "probabilities"
    if _ends_in_softmax(model):
        return "argmax"
    if kind == "multilabel":
        return "logits"
    return "shape"


def resolve(metrics, loss=None, model=None, targets=None):
    """``{name: Accuracy}`` for fit/evaluate's ``metrics``: "auto" (an accuracy where the loss, or without one the
    model and targets, say there are classes: none for a regression or a loss portanet does not know), None or ()
    for none, or names from ``NAMES``, counted as the module docstring says. ``targets``: host targets (a NumPy
    array, or a sample of them) for deciding without a loss; None where unknown (then the output's shape decides).

    Raises ValueError for an unknown name, and for "accuracy" of a regression (its loss, or float targets that are
    not classes when there is no loss)."""
    if metrics is None:
        return {}
    outputs = _loss_outputs(loss)
    if loss is None and model is not None:
        outputs = _without_loss(model, targets)
    if isinstance(metrics, str):
        if metrics == "auto":
            if outputs == "regression" or (outputs is None and loss is not None):
                return {}
            metrics = ("accuracy",)
        else:
            metrics = (metrics,)
    out = {}
    for name in metrics:
        if not isinstance(name, str) or name not in NAMES:
            raise ValueError(f"unknown metric {name!r}: portanet has {', '.join(NAMES)} (or metrics='auto')")
        if name == "binary_accuracy":
            if loss is not None or model is None:
                logits = outputs in ("logits", "scores")
            else:     # no loss: probabilities where the model squashes its outputs, else logits
                logits = not (_ends_in_sigmoid(model) or _ends_in_softmax(model, log=False))
            out[name] = Accuracy("logits" if logits else "probabilities")
        elif name == "categorical_accuracy":
            out[name] = Accuracy("argmax")
        elif outputs == "regression" and loss is None:
            raise ValueError("metrics=('accuracy',) without a loss, on float targets that are not classes (not 0/1, "
                             "nor rows of probabilities): that is a regression, and accuracy has no meaning there; "
                             "drop it, or give class labels as integers (y.astype(int64))")
        elif outputs == "regression":
            raise ValueError(f"metrics=('accuracy',) with {type(loss).__name__}: a regression's outputs are not "
                             "classes, so accuracy has no meaning; drop it (metrics='auto' logs none for a "
                             "regression), or, for a classifier trained with MSE on one-hot targets, ask for "
                             "'categorical_accuracy'")
        elif outputs in ("scores", "argmax"):
            out[name] = Accuracy("argmax")
        elif outputs in ("probabilities", "logits"):
            out[name] = Accuracy(outputs)
        else:
            out[name] = Accuracy("shape", 0.5 if _ends_in_sigmoid(model) else 0.0)
    return out


METRICS = {name: resolve((name,))[name] for name in NAMES}
