"""fit / evaluate / predict.

The training step never waits on the device: losses and correct counts are summed on the device, and
read (one small transfer) only when the progress display refreshes and at the end of each epoch.
"""
from __future__ import annotations

import time

from . import inputs
from .devices import device as pn_device
from . import metrics as _metrics
from .backends.quiet import quieted
from .callbacks import Callback, TerminateOnNaN
from .data import DataLoader
from .errors import DeviceMismatchError, NonFiniteError, ShapeError
from .history import History
from .losses import BCELoss, BCEWithLogitsLoss, Loss, _ClassLoss, labels_fix, probabilities_message
from .module import Module
from .optim.optimizer import Optimizer
from .progress import Progress
from .step.capture import CapturedStep, check_mode, graph_for
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
    them into running totals (each loss made a batch total, first non-finite step) happens on the device
    when the buffer is full or read; ``read()`` is the one transfer to the host.

    ``per_sample``: the loss values are means over their batch (reduction "mean"), so each counts times its
    batch size; otherwise they are batch totals already (reduction "sum")."""

    def __init__(self, device, metrics, dtype, capacity, per_sample=True):
        xp = device.xp
        self.device, self.xp, self.metrics, self.dtype = device, xp, metrics, dtype
        self.per_sample = per_sample
        self.capacity = max(1, min(int(capacity or 1024), 1 << 16))
        nat = device.native
        self.losses = xp.zeros((self.capacity,), dtype=dtype, device=nat)
        self.counts = [xp.zeros((self.capacity,), dtype=xp.int64, device=nat) for _ in metrics]
        self.loss_total = xp.zeros((), dtype=dtype, device=nat)
        self.count_totals = [xp.zeros((), dtype=xp.int64, device=nat) for _ in metrics]
        self.first_bad = xp.full((), _BIG, dtype=xp.int64, device=nat)
        self.sizes: list[int] = []       # loss weights since the last fold (host numbers, known without a sync)
        self.totals = [0] * len(metrics)  # predictions each metric has counted (host numbers, from shapes)
        self.folded = 0                  # steps folded so far
        self.count = 0                   # samples seen

    def add(self, loss, output, target, n):
        k = len(self.sizes)
        if k == self.capacity:
            self._fold()
            k = 0
        self.losses[k] = loss
        for i, fn in enumerate(self.metrics.values()):
            if not fn.count_into(output, target, self.counts[i], k):
                self.counts[i][k] = fn(output, target)
            self.totals[i] += fn.total(output)
        self.sizes.append(n if self.per_sample else 1)
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
        logs = {"loss": float(values[0]) / max(self.count, 1)}
        for i, name in enumerate(self.metrics):
            logs[name] = float(values[1 + i]) / max(self.totals[i], 1)
        first_bad = int(values[-1])
        return logs, (None if first_bad >= 2**24 else first_bad)


def _check_setup(model, loss, optimizer, epochs):
    if not isinstance(model, Module):
        raise TypeError(f"fit needs a portanet Module as model, got {inputs.brief(model)}")
    if not isinstance(loss, Loss):
        raise TypeError(f"fit needs a portanet loss (e.g. pn.CrossEntropyLoss()), got {inputs.brief(loss)}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"fit needs a portanet optimizer (e.g. pn.optim.Adam(model.parameters())), "
                        f"got {inputs.brief(optimizer)}")
    if not inputs.is_int(epochs) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {inputs.brief(epochs)}")
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
        if span is None and loss.accepts_probabilities and loader.y.dtype.kind == "f" and loader.y.ndim == 2:
            lo, hi = float(loader.y.min()), float(loader.y.max())     # probability targets: all of them, here
            if lo < 0 or hi > 1:
                raise ValueError(probabilities_message(type(loss).__name__, lo, hi, "loader's targets"))
            return True
        if span is None:               # other targets: checked on the first batch instead
            return False
        classes = output.shape[1]
        if span[0] < 0 or span[1] >= classes:
            raise ValueError(f"{type(loss).__name__}: the loader's labels span [{span[0]}, {span[1]}] but the model "
                             f"has {classes} outputs (labels 0..{classes - 1}): {labels_fix(span[0])}")
        return True
    if isinstance(loss, (BCELoss, BCEWithLogitsLoss)):
        if float(loader.y.min()) < 0 or float(loader.y.max()) > 1:
            raise ValueError(f"{type(loss).__name__} needs targets in [0, 1], but the loader's targets span "
                             f"[{float(loader.y.min()):g}, {float(loader.y.max()):g}]")
        return isinstance(loss, BCEWithLogitsLoss)   # BCELoss also checks its predictions, on the first batch
    return True


_FIT_POSITIONAL = ("epochs", "val_loader", "metrics", "callbacks", "verbose")


def fit(model, loss=None, optimizer=None, train_loader=None, *args, epochs=None, val_loader=None, metrics="auto",
        callbacks=(), verbose=1, y=None, batch_size=None, shuffle=None, drop_last=None, validation_data=None,
        validation_split=None, capture="auto"):
    """Train ``model`` for ``epochs`` more epochs and return a History.

    Two forms:

        fit(model, loss, opt, train_loader, epochs=1, val_loader=None, metrics="auto", callbacks=(), verbose=1)
        fit(model, loss, opt, x, y, epochs=1, batch_size=32, shuffle=True,
            validation_data=(xv, yv) or validation_split=0.2, ...)

    train_loader     a DataLoader on the model's device and dtype, any iterable of (xb, yb) batches, a pair (x, y)
                     or a Dataset; after it, epochs, val_loader, metrics, callbacks and verbose may come by
                     position, in that order
    x, y             host (or device) arrays (n, ...) and (n,) / (n, k); everything after y is by keyword (Keras
                     puts batch_size before epochs, portanet's loader form epochs first: it does not guess)
    batch_size       32 and shuffle True by default (Keras'), when fit builds DataLoader(x, y, batch_size, shuffle,
                     device=model.device, dtype=the model's) from arrays, a pair or a Dataset; a loader keeps its own
    drop_last        False by default: True drops each epoch's last, smaller batch (PyTorch's DataLoader option; a
                     BatchNorm layer cannot train on a last batch of one sample)
    val_loader       a loader, a pair (xv, yv) or a Dataset, evaluated after each epoch (``validation_data`` is
                     the same, by Keras' name); ``validation_split=f`` holds out the last fraction f of x, y
                     before shuffling, as Keras does
    metrics          "auto": the accuracy the loss implies (portanet.metrics), none for a regression; or
                     names ("accuracy", "binary_accuracy", "categorical_accuracy"); () for none. binary_accuracy
                     thresholds where the loss says the outputs are split: logits at 0, probabilities at 0.5
    callbacks        a list of Callbacks (one alone is taken as a list of one)
    verbose          1: a progress bar on a terminal, else a line per epoch; 0: nothing
    capture          "auto": on a CUDA backend (device="gpu", "torch:cuda") record one training step into a CUDA
                     graph after two warm-up steps and replay it for every full batch (portanet/step/capture.py),
                     running eagerly where the step cannot be recorded (CuPy with Dropout, say; verbose says why);
                     elsewhere eagerly. True: record or raise (a ValueError naming the backends that can, on
                     others). False: never record. The results equal the eager ones to float rounding.

    Logged numbers are per sample: "loss" is the epoch's loss summed over its batches as totals (a mean
    reduction's value times its batch size, a sum reduction's as it is) and divided by the number of samples, so
    reduction="mean" gives what the loss would return on the whole epoch's data at once and reduction="sum" that
    sum divided by the sample count; "accuracy" is correct predictions over predictions made (samples, or
    elements for a per-element binary accuracy). Batches of different sizes count by their samples.

    Call it again on the same objects to continue: epochs are numbered from the loader's position (a loader
    built from arrays starts at epoch 0 each call). A non-finite loss raises NonFiniteError naming the epoch
    and step (with TerminateOnNaN, training stops cleanly and the last good weights are kept; that epoch is still
    logged, as Keras logs it: its loss NaN or inf, its validation numbers for the weights kept).
    """
    _check_order(loss)
    data, y, given = _fit_positional(train_loader, args, y, dict(epochs=epochs, val_loader=val_loader,
                                                                 metrics=metrics, callbacks=callbacks,
                                                                 verbose=verbose))
    epochs, val_loader, metrics, callbacks, verbose = (given[k] for k in _FIT_POSITIONAL)
    epochs = 1 if epochs is None else epochs
    if val_loader is not None and validation_data is not None:
        raise TypeError("fit got val_loader= and validation_data=: they are one thing under two names; give one")
    _check_setup(model, loss, optimizer, epochs)
    record = check_mode(capture, model.device)
    train_loader, val_loader = inputs.fit_loaders(model, data, y, batch_size, shuffle, drop_last,
                                                  val_loader if val_loader is not None else validation_data,
                                                  validation_split)
    fns = _metrics.resolve(metrics, loss, model)
    callbacks = _callbacks(callbacks)
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
        runner = CapturedStep(train_step, graph_for(model.device), strict=capture is True) if record else train_step
        try:
            _epochs(trainer, runner, range(start, end), val_loader, fns, callbacks, keep_good)
        finally:
            if record:
                runner.release()
    for cb in callbacks:
        cb.on_train_end()
    return history


def _check_order(loss):
    """Keras' model.fit(x, y) habit, as fit(model, x, y): the data sits where the loss goes."""
    if not isinstance(loss, Loss) and (inputs.is_array(loss) or inputs.is_pair(loss) or inputs.is_targets(loss)
                                       or inputs.kind(loss) in ("loader", "dataset")):
        raise TypeError(f"fit got {inputs.brief(loss)} where the loss goes: portanet's fit takes the loss and the "
                        "optimizer before the data (Keras sets them in compile): pn.fit(model, pn.CrossEntropyLoss(), "
                        "pn.optim.Adam(model.parameters()), x, y, epochs=10)")


def _callbacks(callbacks):
    """fit's callbacks as a list: one callback alone is taken as a list of one (Keras wants a list)."""
    if isinstance(callbacks, Callback):
        return [callbacks]
    if isinstance(callbacks, type) and issubclass(callbacks, Callback):
        callbacks = [callbacks]
    if not hasattr(callbacks, "__iter__") and callbacks is not None:
        raise TypeError(f"callbacks must be a list of portanet Callbacks, got {inputs.brief(callbacks)}")
    callbacks = list(callbacks or ())
    for cb in callbacks:
        if isinstance(cb, type) and issubclass(cb, Callback):
            raise TypeError(f"callbacks got the class {cb.__name__}, not a callback: create one, "
                            f"callbacks=[pn.{cb.__name__}(...)]")
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be portanet Callbacks (pn.EarlyStopping(...), ...), got "
                            f"{inputs.brief(cb)}")
    return callbacks


def _fit_positional(data, args, y, given):
    """Tell fit's positional arguments apart. After an array x, the next one is y (and the rest must be keywords);
    after a loader or an (x, y) pair they are epochs, val_loader, metrics, callbacks, verbose, as fit has always
    taken them. An int is never y, and a loader never takes one."""
    arrays = inputs.is_array(data) or (
        bool(args) and inputs.kind(data) in ("batches", "unknown") and not inputs.is_int(args[0])
        and inputs.is_targets(args[0]))
    if arrays:
        if args:
            if y is not None:
                raise TypeError("fit got y by position and y= as well: give it once")
            y = args[0]
        if len(args) > 1:
            raise TypeError(f"fit(model, loss, opt, x, y, ...) takes the rest by keyword, but got {len(args) - 1} "
                            "more by position: fit(model, loss, opt, x, y, epochs=10, batch_size=32) (Keras' order "
                            "after y is batch_size, epochs; portanet's loader form is epochs first, so it does not "
                            "guess)")
        return data, y, given
    if args and not inputs.is_int(args[0]) and inputs.is_targets(args[0]):
        raise TypeError(f"fit got {inputs.brief(data)} and then {inputs.brief(args[0])}: a loader, Dataset or "
                        "(x, y) pair carries its targets; pass y only after an array x: fit(model, loss, opt, x, y, "
                        "epochs=10)")
    if len(args) > len(_FIT_POSITIONAL):
        raise TypeError(f"fit takes at most {4 + len(_FIT_POSITIONAL)} positional arguments (model, loss, "
                        f"optimizer, train_loader, {', '.join(_FIT_POSITIONAL)}), got {4 + len(args)}")
    defaults = dict(epochs=None, val_loader=None, metrics="auto", callbacks=(), verbose=1)
    for name, value in zip(_FIT_POSITIONAL, args):
        if given[name] is not defaults[name]:
            raise TypeError(f"fit got {name} by position and {name}= as well: give it once")
        given[name] = value
    return data, y, given


def _epochs(trainer, train_step, epochs, val_loader, fns, callbacks, keep_good):
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
        # NumPy's warnings off for the epoch's steps (one context, not one per step): the non-finite loss they would
        # announce is checked below and raised as NonFiniteError, naming the epoch and step
        with quieted():
            for step, (xb, yb) in enumerate(inputs.batches(train_loader, "fit")):
                if first_call:
                    out = model(xb)                     # checks device and shapes once
                    # labels are checked on the host when the loader has them; else on this first batch only
                    loss.check(out, yb, values=not _check_targets_once(loss, train_loader, out))
                    value, out = train_step.finish(out, yb)
                    first_call = False
                else:
                    value, out = train_step(xb, yb)     # zero_grad, forward, loss, backward, optimizer step
                if sums is None:
                    sums = _Sums(model.device, fns, value.dtype, _length(train_loader), _per_sample(loss))
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
        if isinstance(train_step, CapturedStep):
            train_step.release()                # step counts back on the host for the callbacks (checkpoints)
            if train_step.failed is not None and not train_step.told:
                trainer.log(f"capture: this step runs eagerly: {train_step.failed}")
                train_step.told = True
        logs, bad = sums.read()
        nonfinite = nonfinite if nonfinite is not None else bad
        if nonfinite is not None:
            if not keep_good:
                progress.close(step + 1, logs, epoch, end)
                raise NonFiniteError(f"the loss became non-finite at epoch {epoch + 1}, step {nonfinite + 1}: lower "
                                     "the learning rate, check the inputs for NaN/inf, clip gradients "
                                     "(pn.optim.clip_grad_norm), or add TerminateOnNaN() to stop cleanly")
            _restore(model, snapshot)
        # the epoch TerminateOnNaN stopped is still validated, logged and shown to callbacks, as Keras does: its
        # training numbers up to the stop (loss NaN or inf), its validation ones for the weights kept
        if val_loader is not None:
            val = _evaluate(model, val_loader, loss, fns, "validation")
            logs.update({f"val_{k}": v for k, v in val.items()})
        logs["lr"] = optimizer.lr
        logs["seconds"] = time.monotonic() - began
        progress.close(step + 1, logs, epoch, end)
        if nonfinite is not None:
            trainer.log(f"TerminateOnNaN: the loss was not finite at epoch {epoch + 1}, step {nonfinite + 1}; "
                        "stopped and kept the last good weights")
            trainer.stop_training = True
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


def _per_sample(loss):
    """True when the loss's value is a mean over its batch (reduction "mean"), False for batch totals."""
    return getattr(loss, "reduction", "mean") == "mean"


_EVALUATE_POSITIONAL = ("loss", "metrics")


def evaluate(model, loader, *args, loss=None, metrics="auto", batch_size=None, y=None):
    """Loss and metrics over data, in eval mode; one read from the device at the end. Returns a dict
    {"loss": ..., "accuracy": ...} ("loss" only when a loss is given).

        evaluate(model, loader, loss=None, metrics="auto")
        evaluate(model, x, y, loss=None, metrics="auto", batch_size=256)

    loader           a DataLoader on the model's device and dtype, any iterable of (xb, yb), a pair (x, y) or a
                     Dataset; loss and metrics may follow it by position
    x, y             arrays: evaluate builds DataLoader(x, y, batch_size, device=model.device, dtype=the model's);
                     loss and metrics may follow y by position
    metrics          "auto": the accuracy the loss implies, none for a regression; without a loss, from the
                     model's last layer and the targets: none for float targets that are not classes (a
                     regression), per element for a final Sigmoid (portanet.metrics). Numbers are per sample, as fit
                     logs them.
    """
    arrays = inputs.is_array(loader) or (
        bool(args) and inputs.kind(loader) in ("batches", "unknown") and inputs.is_targets(args[0]))
    if arrays and args and inputs.is_targets(args[0]):
        if y is not None:
            raise TypeError("evaluate got y by position and y= as well: give it once")
        y, args = args[0], args[1:]
    elif args and inputs.is_targets(args[0]):
        raise TypeError(f"evaluate got {inputs.brief(loader)} and then {inputs.brief(args[0])}: a loader, "
                        "Dataset or (x, y) pair carries its targets; pass y only after an array x: "
                        "evaluate(model, x, y)")
    if len(args) > len(_EVALUATE_POSITIONAL):
        raise TypeError(f"evaluate takes loss and metrics after the data, then keywords; got {len(args)} more "
                        "positional arguments")
    given = dict(loss=loss, metrics=metrics)
    defaults = dict(loss=None, metrics="auto")
    for name, value in zip(_EVALUATE_POSITIONAL, args):
        if given[name] is not defaults[name]:
            raise TypeError(f"evaluate got {name} by position and {name}= as well: give it once")
        given[name] = value
    loss, metrics = given["loss"], given["metrics"]
    if not isinstance(model, Module):
        raise TypeError(f"evaluate needs a portanet Module as model, got {inputs.brief(model)}")
    if loss is not None and not isinstance(loss, Loss):
        raise TypeError(f"evaluate's loss must be a portanet loss (e.g. pn.CrossEntropyLoss()), got "
                        f"{inputs.brief(loss)}")
    loader = inputs.eval_loader(model, loader, y, batch_size, "evaluate")
    fns = _metrics.resolve(metrics, loss, model)
    if loss is None:
        # no loss to say what the model outputs: its last layer and the targets do (portanet/metrics.py), read on
        # the host where the loader keeps them, else from the first batch
        known = loader.y if isinstance(loader, DataLoader) else None
        if known is not None:
            fns = _metrics.resolve(metrics, None, model, known)
        else:
            def fns(yb):
                return _metrics.resolve(metrics, None, model, model.device.to_host(yb))
    return _evaluate(model, loader, loss, fns, "evaluation")


def _evaluate(model, loader, loss, fns, what):
    was_training = model.training
    model.eval()
    try:
        sums = None
        for step, (xb, yb) in enumerate(inputs.batches(loader, what)):
            out = model(xb) if step == 0 else model.forward(xb)
            if callable(fns):                 # decided from the first batch's targets (evaluate without a loss)
                fns = fns(yb)
            if loss is not None:
                if step == 0:
                    loss.check(out, yb, values=False)
                value = loss.forward(out, yb)
            else:
                value = model.xp.zeros((), dtype=out.dtype, device=model.device.native)
            if sums is None:
                sums = _Sums(model.device, fns, value.dtype, _length(loader), _per_sample(loss))
            sums.add(value, out, yb, xb.shape[0])
    finally:
        model.train(was_training)
    if sums is None:
        raise ValueError(f"the {what} loader yielded no batches")
    logs, _ = sums.read()
    if loss is None:
        logs.pop("loss")
    return logs


def predict(model, x, batch_size=None, device=None):
    """Model outputs for every sample of x, in eval mode, returned as a host NumPy array (one transfer at the end).

    x: an array (n, ...) (host or device; predict builds DataLoader(x, batch_size=256, device=model.device,
    dtype=the model's), converting as DataLoader does), a pair (x, y) (y is ignored), a Dataset, a DataLoader or
    any iterable of batches (xb or (xb, yb)). ``device``, if given, must be the model's."""
    if not isinstance(model, Module):
        raise TypeError(f"predict needs a portanet Module as model, got {inputs.brief(model)}")
    if device is not None and pn_device(device) != model.device:
        raise DeviceMismatchError(f"model is on {model.device} but predict was asked to run on {pn_device(device)}: "
                                  "leave device= out, or move the model with model.to(device)")
    if getattr(x, "ndim", 1) == 0:
        raise ShapeError("predict needs a batch of samples (n, ...), got a scalar")
    k = inputs.kind(x)
    if isinstance(x, list) and inputs.is_targets(x):
        k = "arrays"                     # a list of samples (rows, images); a list of (xb, yb) pairs is batches
    if k in ("loader", "batches"):
        if batch_size is not None:
            raise TypeError("predict's batch_size= applies to arrays; this loader is built already: set it there")
        inputs.check_loader(x, model, "predict")
        loader = x
    else:
        data = x[:1] if inputs.is_pair(x) else x
        loader = inputs.build(model, data, None, 256 if batch_size is None else batch_size, False, "predict")
    was_training = model.training
    model.eval()
    try:
        outs = []
        for i, batch in enumerate(loader):
            xb = batch[0] if isinstance(batch, (tuple, list)) else batch
            outs.append(model(xb) if i == 0 else model.forward(xb))
    finally:
        model.train(was_training)
    if not outs:
        raise ValueError("predict's loader yielded no batches")
    return model.device.to_host(model.xp.concat(outs, axis=0))
