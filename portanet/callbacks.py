"""Callbacks for ``fit``: they see each epoch's logs (host numbers, read once per epoch)."""
from __future__ import annotations

import csv
import inspect
import math
import os

from ._numbers import is_int, is_real
from .errors import NonFiniteError


class Callback:
    """Hooks: on_train_begin(), on_epoch_begin(epoch), on_epoch_end(epoch, logs), on_train_end().
    ``self.trainer`` gives model, optimizer, loss, train_loader and ``stop_training``."""

    trainer = None

    def set_trainer(self, trainer):
        self.trainer = trainer

    def on_train_begin(self):
        pass

    def on_epoch_begin(self, epoch):
        pass

    def on_epoch_end(self, epoch, logs):
        pass

    def on_train_end(self):
        pass


def _mode(monitor, mode):
    """'min' or 'max'. "auto" reads the name (Keras): losses go down, accuracies go up; anything else must say."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    if "acc" in monitor:
        return "max"
    if monitor.endswith("loss"):
        return "min"
    raise ValueError(f"mode='auto' cannot tell whether '{monitor}' should go down or up: pass mode='min' or "
                     "mode='max'")


def _monitored(cb, logs):
    if cb.monitor not in logs:
        have = ", ".join(sorted(logs))
        hint = " (pass val_loader= to fit)" if cb.monitor.startswith("val_") else ""
        raise ValueError(f"{type(cb).__name__} monitors '{cb.monitor}', which fit does not log{hint}; it logs: {have}")
    return logs[cb.monitor]


def _worst(mode):
    return math.inf if mode == "min" else -math.inf


class EarlyStopping(Callback):
    """Stop when ``monitor`` has stopped improving, as Keras' EarlyStopping (and Lightning's) do.

    An epoch improves when its value beats the best so far by more than ``min_delta`` (mode "min":
    value < best - min_delta; "max": value > best + min_delta; NaN never improves). ``patience`` is the number of
    epochs without improvement to wait: training stops at the end of the patience-th such epoch in a row, so a
    value that never improves runs 1 + patience epochs (the first sets the best; patience 0 stops at the first
    epoch without improvement, as patience 1 does). Each fit starts afresh.

    mode              "min", "max" or "auto" (max for names with "acc", min for names ending in "loss")
    baseline          a value to beat: the wait restarts only on an epoch that beats both the best so far and the
                      baseline, so training also stops after ``patience`` epochs (and at least two) that do not
                      reach it (Keras)
    start_from_epoch  epochs of this fit not monitored at its start (a warm-up; Keras)
    restore_best_weights  True: put the best epoch's weights back when training ends, whether it stopped
                      early or ran out of epochs (Keras 3); with fit's verbose it says so, and only when the best
                      epoch is not the last one run (the weights are that epoch's already)

    After fit: ``best``, ``best_epoch`` and ``stopped_epoch`` (None when it did not stop training).
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto", restore_best_weights=False,
                 baseline=None, start_from_epoch=0):
        if not is_int(patience) or patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience!r}")
        if not is_int(start_from_epoch) or start_from_epoch < 0:
            raise ValueError(f"start_from_epoch must be an int >= 0, got {start_from_epoch!r}")
        if not is_real(min_delta) or min_delta != min_delta:
            raise ValueError(f"min_delta must be a number, got {min_delta!r}")
        patience, start_from_epoch = int(patience), int(start_from_epoch)
        self.monitor, self.patience, self.min_delta = monitor, patience, abs(float(min_delta))
        self.mode = _mode(monitor, mode)
        self.baseline = None if baseline is None else float(baseline)
        self.start_from_epoch = start_from_epoch
        self.restore_best_weights = restore_best_weights
        self.on_train_begin()

    def on_train_begin(self):
        self.best, self.best_epoch, self.best_weights, self.stopped_epoch = _worst(self.mode), None, None, None
        self.wait, self._seen, self._last = 0, 0, None

    def _improves(self, value, reference):
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def on_epoch_end(self, epoch, logs):
        value = _monitored(self, logs)
        self._seen, self._last = self._seen + 1, epoch
        if self._seen <= self.start_from_epoch:
            return
        self.wait += 1
        if self._improves(value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_weights = self.trainer.model.state_dict()
            if self.baseline is None or self._improves(value, self.baseline):
                self.wait = 0
                return
        # Keras: never on the first monitored epoch (a baseline not reached there needs one more)
        if self.wait >= self.patience and self._seen > self.start_from_epoch + 1:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self):
        if self.restore_best_weights and self.best_weights is not None and self.best_epoch != self._last:
            self.trainer.model.load_state_dict(self.best_weights)
            self.trainer.log(f"EarlyStopping: restored the weights from the end of the best epoch, "
                             f"{self.best_epoch + 1} ({self.monitor} = {self.best:.4f}; the last epoch run was "
                             f"{self._last + 1})")


class ModelCheckpoint(Callback):
    """Save model, optimizer and loader position after each epoch. ``path`` may name the epoch and any logged value,
    formatted as Keras fills it (``"ckpt-{epoch:02d}-{val_loss:.2f}.npz"``).
    Resume with ``pn.load(path, model, optimizer, loader=train_loader)`` and call fit again.

    save_best_only           save only when ``monitor`` beats the best value saved so far (strictly, no
                             min_delta; NaN never does), as Keras' ModelCheckpoint; the best carries over to
                             later fit calls with the same callback
    mode                     "min", "max" or "auto" (as EarlyStopping)
    initial_value_threshold  the value the first save must beat (Keras); default: any finite value
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto", initial_value_threshold=None):
        self.path, self.monitor, self.save_best_only = os.fspath(path), monitor, save_best_only
        # the monitor's direction matters only to save_best_only (saving every epoch monitors nothing)
        self.mode = _mode(monitor, mode) if save_best_only else _mode("loss", mode)
        self.best = _worst(self.mode) if initial_value_threshold is None else float(initial_value_threshold)

    def on_epoch_end(self, epoch, logs):
        from .io import save

        if self.save_best_only:
            value = _monitored(self, logs)
            if not (value < self.best if self.mode == "min" else value > self.best):
                return
            self.best = value
        t = self.trainer
        extra = {"epoch": epoch + 1, "logs": logs}
        if t.train_loader is not None and hasattr(t.train_loader, "state_dict"):
            extra["loader"] = t.train_loader
        try:
            path = self.path.format(**logs, epoch=epoch + 1)
        except KeyError as e:
            have = ", ".join(["epoch", *sorted(logs)])
            raise ValueError(f"ModelCheckpoint's path {self.path!r} names {{{e.args[0]}}}, which fit does not log; "
                             f"it can name: {have}") from None
        save(path, t.model, t.optimizer, **extra)


class TerminateOnNaN(Callback):
    """On a non-finite loss, stop cleanly and keep the last weights known to be good (those of the last
    progress check at which every loss so far was finite) instead of raising. As in Keras, the epoch it stops is
    still logged: the History and every callback's on_epoch_end get its numbers (its loss NaN or inf, its validation
    numbers for the weights kept)."""


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of every epoch: ``schedule(epoch, lr) -> lr``, or ``schedule(epoch) -> lr``
    (Keras takes both), or step a schedule object (StepLR, CosineAnnealingLR, ...) at the end of every epoch."""

    def __init__(self, schedule):
        if not hasattr(schedule, "step") and not callable(schedule):
            raise TypeError(f"LearningRateScheduler takes a function schedule(epoch, lr) -> lr or a schedule object "
                            f"(pn.optim.StepLR(opt, 10)), got {type(schedule).__name__}: for a constant rate, set "
                            "it on the optimizer (lr=...)")
        self.schedule = schedule
        self._takes_lr = hasattr(schedule, "step") or _positional(schedule) != 1

    def on_epoch_begin(self, epoch):
        if not hasattr(self.schedule, "step"):
            lr = self.schedule(epoch, self.trainer.optimizer.lr) if self._takes_lr else self.schedule(epoch)
            if not is_real(lr) and not (hasattr(lr, "__float__") and getattr(lr, "ndim", 0) == 0):
                raise TypeError(f"the schedule returned {lr!r} for epoch {epoch + 1}; it must return the learning "
                                "rate, a number")
            lr = float(lr)
            if not math.isfinite(lr) or lr < 0:
                raise NonFiniteError(f"the schedule returned lr={lr} for epoch {epoch + 1}")
            self.trainer.optimizer.lr = lr

    def on_epoch_end(self, epoch, logs):
        if hasattr(self.schedule, "step"):
            self.schedule.step()


def _positional(fn) -> int:
    """How many positional arguments ``fn`` takes (2 where it takes any number, or where Python cannot tell)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


class CSVLogger(Callback):
    """Append one row per epoch (epoch and every log) to a CSV file."""

    def __init__(self, path, append=False):
        self.path, self.append = os.fspath(path), append
        self._keys = None

    def on_train_begin(self):
        if not self.append and os.path.exists(self.path):
            os.unlink(self.path)

    def on_epoch_end(self, epoch, logs):
        new = not os.path.exists(self.path)
        keys = self._keys or sorted(logs)
        self._keys = keys
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["epoch", *keys])
            w.writerow([epoch + 1, *(logs.get(k, "") for k in keys)])
