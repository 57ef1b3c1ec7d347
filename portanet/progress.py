"""Progress display for fit: a tqdm bar on a terminal, one line per epoch elsewhere."""
from __future__ import annotations

import sys
import time

BAR_REFRESH = 0.1       # seconds between bar refreshes, i.e. between reads of the device's running sums
QUIET_SYNC = 1.0        # without a bar, the running sums are still checked (for NaN) this often


class Progress:
    def __init__(self, total, epoch, epochs, verbose, stream=None):
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.bar = None
        self.start = time.monotonic()
        self.interval = QUIET_SYNC
        if verbose == 1 and hasattr(self.stream, "isatty") and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", file=self.stream,
                            leave=True, dynamic_ncols=True, mininterval=BAR_REFRESH)
            self.interval = BAR_REFRESH
        self._next = self.start + self.interval
        self._done = 0

    def due(self, now=None) -> bool:
        """True when the running sums should be read now (at most once per interval)."""
        return (now or time.monotonic()) >= self._next

    def update(self, steps_done, postfix: dict | None):
        self._next = time.monotonic() + self.interval
        if self.bar is not None:
            self.bar.update(steps_done - self._done)
            self._done = steps_done
            if postfix:
                self.bar.set_postfix({k: f"{v:.4f}" for k, v in postfix.items()}, refresh=False)

    def close(self, steps_done, logs: dict, epoch, epochs):
        if self.bar is not None:
            self.bar.update(steps_done - self._done)
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k not in ("lr", "seconds")},
                                 refresh=True)
            self.bar.close()
        elif self.verbose:
            parts = " - ".join(f"{k} {v:.4f}" for k, v in logs.items() if k not in ("lr", "seconds"))
            print(f"epoch {epoch + 1}/{epochs} - {parts} - {logs.get('seconds', 0):.1f}s", file=self.stream,
                  flush=True)
