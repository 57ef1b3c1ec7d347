"""Metrics, computed on the device: they return 0-d arrays to accumulate, never Python numbers."""
from __future__ import annotations

import array_api_compat


def correct(output, target):
    """Number of correct predictions in a batch (0-d int array).   output: (batch, classes);
    target: (batch,) labels or (batch, classes) one-hot/probabilities. One output column counts
    output > 0 (a logit) against target > 0.5."""
    xp = array_api_compat.array_namespace(output)
    if output.ndim == 2 and output.shape[1] == 1:
        pred = output[:, 0] > 0
        truth = (target[:, 0] if target.ndim == 2 else target) > 0.5
        return xp.sum(xp.astype(pred == truth, xp.int64))
    pred = xp.argmax(output, axis=1)
    truth = target if target.ndim == 1 else xp.argmax(target, axis=1)
    return xp.sum(xp.astype(pred == truth, xp.int64))


def accuracy(output, target):
    """Fraction correct as a 0-d float array."""
    xp = array_api_compat.array_namespace(output)
    return xp.astype(correct(output, target), output.dtype) / output.shape[0]


def confusion_matrix(predicted, target, classes):
    """(classes, classes) counts, rows = true class, columns = predicted class (int labels, on the device)."""
    xp = array_api_compat.array_namespace(predicted)
    dev = array_api_compat.device(predicted)
    index = target * classes + predicted
    hits = index[:, None] == xp.arange(classes * classes, device=dev)
    return xp.reshape(xp.sum(xp.astype(hits, xp.int64), axis=0), (classes, classes))


METRICS = {"accuracy": correct}
