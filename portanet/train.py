"""fit / evaluate / predict.

The training step never waits on the device: losses and correct counts are summed on the device, and
read (one small transfer) only when the progress display refreshes and at the end of each epoch.
"""
from __future__ import annotations

import time

from .callbacks import Callback, TerminateOnNaN
from .data import DataLoader
from .errors import DeviceMismatchError, NonFiniteError, ShapeError
from .history import History
from .losses import BCELoss, BCEWithLogitsLoss, Loss, _ClassLoss
from .metrics import METRICS
from .module import Module
from .optim.optimizer import Optimizer
from .progress import Progress
from .step.train_step import TrainStep

_BIG = 2**62


class Trainer:
    """What callbacks see: model, loss, optimizer, train_loader, history, stop_training, log()."""

    def __init__(self, model, loss, optimizer, train_loader, history, verbose):
        self.model, self.loss, self.optimizer, self.train_loader = model, loss, optimizer, train_loader
        self.history, self.verbose, self.stop_training = history, verbose, False

    def log(self, message):
        if self.verbose:
            print(message, flush=True)


class _Sums:
    """Per-step losses (and metric counts) written into device buffers: one setitem per step. Folding
    them into running totals (sum weighted by batch size, first non-finite step) happens on the device
    when the buffer is full or read; ``read()`` is the one transfer to the host."""

    def __init__(self, device, metrics, dtype, capacity):
        xp = device.xp
        self.device, self.xp, self.metrics, self.dtype = device, xp, metrics, dtype
        self.capacity = max(1, min(int(capacity or 1024), 1 << 16))
        nat = device.native
        self.losses = xp.zeros((self.capacity,), dtype=dtype, device=nat)
        self.counts = [xp.zeros((self.capacity,), dtype=xp.int64, device=nat) for _ in metrics]
        self.loss_total = xp.zeros((), dtype=dtype, device=nat)
        self.count_totals = [xp.zeros((), dtype=xp.int64, device=nat) for _ in metrics]
        self.first_bad = xp.full((), _BIG, dtype=xp.int64, device=nat)
        self.sizes: list[int] = []       # batch sizes since the last fold (host numbers, known without a sync)
        self.folded = 0                  # steps folded so far
        self.count = 0                   # samples seen

    def add(self, loss, output, target, n):
        k = len(self.sizes)
        if k == self.capacity:
            self._fold()
            k = 0
        self.losses[k] = loss
        for i, fn in enumerate(self.metrics.values()):
            self.counts[i][k] = fn(output, target)
        self.sizes.append(n)
        self.count += n

    def _fold(self):
        k = len(self.sizes)
        if k == 0:
            return
        xp, nat = self.xp, self.device.native
        ls = self.losses[:k]
        bad = ~xp.isfinite(ls)
        weights = xp.asarray(self.sizes, dtype=self.dtype, device=nat)
        self.loss_total = self.loss_total + xp.sum(ls * weights)
        first = xp.argmax(xp.astype(bad, xp.int64)) + self.folded
        self.first_bad = xp.minimum(self.first_bad, xp.where(xp.any(bad), first, _BIG))
        for i in range(len(self.counts)):
            self.count_totals[i] = self.count_totals[i] + xp.sum(self.counts[i][:k])
        self.folded += k
        self.sizes = []

    def read(self):
        self._fold()
        xp = self.xp
        # one stacked transfer; counts and the step index are exact in float32 below 2**24
        values = self.device.to_host(xp.stack([self.loss_total,
                                               *[xp.astype(c, self.dtype) for c in self.count_totals],
                                               xp.astype(xp.minimum(self.first_bad, 2**24), self.dtype)]))
        n = max(self.count, 1)
        logs = {"loss": float(values[0]) / n}
        for i, name in enumerate(self.metrics):
            logs[name] = float(values[1 + i]) / n
        first_bad = int(values[-1])
        return logs, (None if first_bad >= 2**24 else first_bad)


def _metric_fns(metrics):
    out = {}
    for m in metrics or ():
        if m not in METRICS:
            raise ValueError(f"unknown metric '{m}': portanet has {', '.join(METRICS)}")
        out[m] = METRICS[m]
    return out


def _check_setup(model, loss, optimizer, loader, epochs):
    if not isinstance(model, Module):
        raise TypeError(f"fit needs a portanet Module as model, got {type(model).__name__}")
    if not isinstance(loss, Loss):
        raise TypeError(f"fit needs a portanet loss (e.g. pn.CrossEntropyLoss()), got {type(loss).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"fit needs a portanet optimizer (e.g. pn.optim.Adam(model.parameters())), "
                        f"got {type(optimizer).__name__}")
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if isinstance(loader, DataLoader) and loader.device != model.device:
        raise DeviceMismatchError(f"model is on {model.device} but the loader delivers batches on {loader.device}: "
                                  f"pass device=model.device to the DataLoader")
    if optimizer.device != model.device:
        raise DeviceMismatchError(f"optimizer holds parameters on {optimizer.device} but the model is on "
                                  f"{model.device}: create the optimizer after model.to(device)")


def _check_targets_once(loss, loader, output) -> bool:
    """Check the loader's targets once, on the host (where they live), against the model's outputs.
    Returns True when that covers the loss's data-dependent checks, so no batch needs them."""
    if not isinstance(loader, DataLoader) or loader.y is None:
        return False
    if isinstance(loss, _ClassLoss):
        span = loader.label_range()
        if span is None:               # probability targets: checked on the first batch instead
            return False
        classes = output.shape[1]
        if span[0] < 0 or span[1] >= classes:
            raise ValueError(f"{type(loss).__name__}: the loader's labels span [{span[0]}, {span[1]}] but the model "
                             f"has {classes} outputs (labels 0..{classes - 1}): check the labels, or give the last "
                             "layer more outputs")
        return True
    if isinstance(loss, (BCELoss, BCEWithLogitsLoss)):
        if float(loader.y.min()) < 0 or float(loader.y.max()) > 1:
            raise ValueError(f"{type(loss).__name__} needs targets in [0, 1], but the loader's targets span "
                             f"[{float(loader.y.min()):g}, {float(loader.y.max()):g}]")
        return isinstance(loss, BCEWithLogitsLoss)   # BCELoss also checks its predictions, on the first batch
    return True


def fit(model, loss, optimizer, train_loader, epochs=1, val_loader=None, metrics=("accuracy",), callbacks=(),
        verbose=1):
    """Train ``model`` for ``epochs`` more epochs and return a History.

    Call it again on the same objects to continue: epochs are numbered from the loader's position.
    A non-finite loss raises NonFiniteError naming the epoch and step (with TerminateOnNaN, training
    stops cleanly and the last good weights are kept).
    """
    _check_setup(model, loss, optimizer, train_loader, epochs)
    fns = _metric_fns(metrics)
    callbacks = list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be portanet Callbacks, got {type(cb).__name__}")
    history = History()
    trainer = Trainer(model, loss, optimizer, train_loader, history, verbose)
    for cb in callbacks:
        cb.set_trainer(trainer)
    keep_good = any(isinstance(cb, TerminateOnNaN) for cb in callbacks)
    start = train_loader.epoch if isinstance(train_loader, DataLoader) else 0
    end = start + epochs
    for cb in callbacks:
        cb.on_train_begin()
    # the step as the backend runs it fastest (portanet/step/): nothing reads a gradient between its backward and
    # its update, so on host backends SGD momentum takes weight gradients straight into its buffers
    with TrainStep(model, loss, optimizer) as train_step:
        _epochs(trainer, train_step, range(start, end), val_loader, metrics, fns, callbacks, keep_good)
    for cb in callbacks:
        cb.on_train_end()
    return history


def _epochs(trainer, train_step, epochs, val_loader, metrics, fns, callbacks, keep_good):
    """fit's loop over ``epochs`` (a range of epoch numbers)."""
    model, loss, optimizer, train_loader = trainer.model, trainer.loss, trainer.optimizer, trainer.train_loader
    history, verbose, end = trainer.history, trainer.verbose, epochs.stop
    first_call = True
    for epoch in epochs:
        if isinstance(train_loader, DataLoader):
            train_loader.set_epoch(epoch)
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        model.train()
        began = time.monotonic()
        sums = None
        progress = Progress(len(train_loader) if hasattr(train_loader, "__len__") else None, epoch, end, verbose)
        snapshot = _snapshot(model) if keep_good else None
        step = -1
        nonfinite = None
        for step, (xb, yb) in enumerate(train_loader):
            if first_call:
                out = model(xb)                     # checks device and shapes once
                # labels are checked on the host when the loader has them; else on this first batch only
                loss.check(out, yb, values=not _check_targets_once(loss, train_loader, out))
                value, out = train_step.finish(out, yb)
                first_call = False
            else:
                value, out = train_step(xb, yb)     # zero_grad, forward, loss, backward, optimizer step
            if sums is None:
                sums = _Sums(model.device, fns, value.dtype, _length(train_loader))
            sums.add(value, out, yb, xb.shape[0])
            if progress.due():
                logs, bad = sums.read()
                if bad is not None:
                    nonfinite = bad
                    break
                if keep_good:
                    snapshot = _snapshot(model)
                progress.update(step + 1, logs)
        if sums is None:
            raise ValueError("the training loader yielded no batches")
        logs, bad = sums.read()
        nonfinite = nonfinite if nonfinite is not None else bad
        if nonfinite is not None:
            progress.close(step + 1, logs, epoch, end)
            if keep_good:
                _restore(model, snapshot)
                trainer.log(f"TerminateOnNaN: the loss was not finite at epoch {epoch + 1}, step {nonfinite + 1}; "
                            "stopped and kept the last good weights")
                break
            raise NonFiniteError(f"the loss became non-finite at epoch {epoch + 1}, step {nonfinite + 1}: lower the "
                                 "learning rate, check the inputs for NaN/inf, clip gradients "
                                 "(pn.optim.clip_grad_norm), or add TerminateOnNaN() to stop cleanly")
        if val_loader is not None:
            val = evaluate(model, val_loader, loss, metrics)
            logs.update({f"val_{k}": v for k, v in val.items()})
        logs["lr"] = optimizer.lr
        logs["seconds"] = time.monotonic() - began
        progress.close(step + 1, logs, epoch, end)
        history.append(epoch, logs)
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        if trainer.stop_training:
            break


def _length(loader):
    try:
        return len(loader)
    except TypeError:
        return None


def _snapshot(model):
    xp = model.xp
    return [xp.asarray(p.data, copy=True) for p in model.parameters()]


def _restore(model, snapshot):
    for p, saved in zip(model.parameters(), snapshot):
        p.data[...] = saved               # in place: the parameter keeps its storage (the optimizer's flat buffer)
        p.grad = None


def evaluate(model, loader, loss=None, metrics=("accuracy",)):
    """Mean loss and metrics over a loader, in eval mode; one read from the device at the end."""
    fns = _metric_fns(metrics)
    if isinstance(loader, DataLoader) and loader.device != model.device:
        raise DeviceMismatchError(f"model is on {model.device} but the loader delivers batches on {loader.device}: "
                                  f"pass device=model.device to the DataLoader")
    was_training = model.training
    model.eval()
    try:
        sums = None
        for step, (xb, yb) in enumerate(loader):
            out = model(xb) if step == 0 else model.forward(xb)
            if loss is not None:
                if step == 0:
                    loss.check(out, yb, values=False)
                value = loss.forward(out, yb)
            else:
                value = model.xp.zeros((), dtype=out.dtype, device=model.device.native)
            if sums is None:
                sums = _Sums(model.device, fns, value.dtype, _length(loader))
            sums.add(value, out, yb, xb.shape[0])
    finally:
        model.train(was_training)
    if sums is None:
        raise ValueError("the evaluation loader yielded no batches")
    logs, _ = sums.read()
    if loss is None:
        logs.pop("loss")
    return logs


def predict(model, x, batch_size=256, device=None):
    """Model outputs for every sample of x (a host array or a DataLoader), in eval mode, returned as
    a host NumPy array (one transfer at the end)."""
    dev = model.device if device is None else device
    if isinstance(x, DataLoader):
        loader = x
    else:
        if getattr(x, "ndim", 1) == 0:
            raise ShapeError("predict needs a batch of samples (n, ...), got a scalar")
        loader = DataLoader(x, batch_size=batch_size, shuffle=False, device=dev)
    if loader.device != model.device:
        raise DeviceMismatchError(f"model is on {model.device} but predict was asked to run on {loader.device}")
    was_training = model.training
    model.eval()
    try:
        outs = []
        for i, batch in enumerate(loader):
            xb = batch[0] if isinstance(batch, tuple) else batch
            outs.append(model(xb) if i == 0 else model.forward(xb))
    finally:
        model.train(was_training)
    return model.device.to_host(model.xp.concat(outs, axis=0))
