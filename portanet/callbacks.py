"""Callbacks for ``fit``: they see each epoch's logs (host numbers, read once per epoch)."""
from __future__ import annotations

import csv
import math
import os

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
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


def _monitored(cb, logs):
    if cb.monitor not in logs:
        have = ", ".join(sorted(logs))
        hint = " (pass val_loader= to fit)" if cb.monitor.startswith("val_") else ""
        raise ValueError(f"{type(cb).__name__} monitors '{cb.monitor}', which fit does not log{hint}; it logs: {have}")
    return logs[cb.monitor]


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.
    restore_best_weights=True puts the best epoch's weights back when training ends."""

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto", restore_best_weights=False):
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), abs(float(min_delta))
        self.mode = _mode(monitor, mode)
        self.restore_best_weights = restore_best_weights
        self.best = self.best_epoch = self.best_weights = None
        self.wait = 0
        self.stopped_epoch = None

    def on_train_begin(self):
        self.best, self.best_epoch, self.best_weights, self.wait, self.stopped_epoch = None, None, None, 0, None

    def _better(self, value):
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs):
        value = _monitored(self, logs)
        if self._better(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.trainer.model.state_dict()
        else:
            self.wait += 1
            if self.wait > self.patience:
                self.stopped_epoch = epoch
                self.trainer.stop_training = True

    def on_train_end(self):
        if self.restore_best_weights and self.best_weights is not None:
            self.trainer.model.load_state_dict(self.best_weights)
            self.trainer.log(f"EarlyStopping: restored the weights of epoch {self.best_epoch + 1} "
                             f"({self.monitor} = {self.best:.4f})")


class ModelCheckpoint(Callback):
    """Save model, optimizer and loader position after each epoch (``save_best_only``: only when
    ``monitor`` improves). ``path`` may contain ``{epoch}``. Resume with
    ``pn.load(path, model, optimizer, loader=train_loader)`` and call fit again."""

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto"):
        self.path, self.monitor, self.save_best_only = os.fspath(path), monitor, save_best_only
        self.mode = _mode(monitor, mode)
        self.best = None

    def on_epoch_end(self, epoch, logs):
        from .io import save

        if self.save_best_only:
            value = _monitored(self, logs)
            if self.best is not None and not (value < self.best if self.mode == "min" else value > self.best):
                return
            self.best = value
        t = self.trainer
        extra = {"epoch": epoch + 1, "logs": logs}
        if t.train_loader is not None and hasattr(t.train_loader, "state_dict"):
            extra["loader"] = t.train_loader
        save(self.path.format(epoch=epoch + 1), t.model, t.optimizer, **extra)


class TerminateOnNaN(Callback):
    """On a non-finite loss, stop cleanly and keep the last weights known to be good (those of the last
    progress check at which every loss so far was finite) instead of raising."""


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of every epoch: ``schedule(epoch, lr) -> lr``, or step a
    schedule object (StepLR, CosineAnnealingLR, ...) at the end of every epoch."""

    def __init__(self, schedule):
        self.schedule = schedule

    def on_epoch_begin(self, epoch):
        if not hasattr(self.schedule, "step"):
            lr = float(self.schedule(epoch, self.trainer.optimizer.lr))
            if not math.isfinite(lr) or lr < 0:
                raise NonFiniteError(f"the schedule returned lr={lr} for epoch {epoch + 1}")
            self.trainer.optimizer.lr = lr

    def on_epoch_end(self, epoch, logs):
        if hasattr(self.schedule, "step"):
            self.schedule.step()


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
