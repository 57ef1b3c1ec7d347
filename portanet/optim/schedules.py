"""Learning-rate schedules. Each attaches to its optimizer (so saving the optimizer saves the
schedule's position) and sets every group's lr from a closed form of ``last_epoch``.
Call ``step()`` once per epoch (or per batch, for warmup by steps)."""
from __future__ import annotations

import math

from .._numbers import is_int, is_real


class LRScheduler:
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_epoch = 0
        optimizer._schedulers.append(self)
        self._apply()

    def factor(self, epoch: int, base: float) -> float:
        raise NotImplementedError

    def _apply(self):
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = self.factor(self.last_epoch, base)

    def step(self):
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, sd):
        self.last_epoch = int(sd["last_epoch"])
        self.base_lrs = [float(v) for v in sd["base_lrs"]]
        self._apply()


class StepLR(LRScheduler):
    """lr = base * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if not is_int(step_size) or step_size <= 0:
            raise ValueError(f"StepLR step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def factor(self, epoch, base):
        return base * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base - eta_min) (1 + cos(pi epoch / T_max)) / 2."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        if not is_int(T_max) or T_max <= 0:
            raise ValueError(f"CosineAnnealingLR T_max must be a positive int, got {T_max!r}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer)

    def factor(self, epoch, base):
        return self.eta_min + (base - self.eta_min) * (1.0 + math.cos(math.pi * epoch / self.T_max)) / 2.0


class LinearWarmup(LRScheduler):
    """lr rises linearly from start_factor * base to base over ``warmup`` steps, then stays
    (PyTorch's LinearLR with end_factor=1)."""

    def __init__(self, optimizer, warmup, start_factor=0.1):
        if not is_int(warmup) or warmup <= 0:
            raise ValueError(f"LinearWarmup warmup must be a positive int, got {warmup!r}")
        if not is_real(start_factor) or not 0.0 < start_factor <= 1.0:
            raise ValueError(f"LinearWarmup start_factor must be in (0, 1], got {start_factor}")
        self.warmup, self.start_factor = int(warmup), float(start_factor)
        super().__init__(optimizer)

    def factor(self, epoch, base):
        frac = min(epoch, self.warmup) / self.warmup
        return base * (self.start_factor + (1.0 - self.start_factor) * frac)
