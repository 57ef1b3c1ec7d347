"""Progress display for fit: a tqdm bar on a terminal, one line per epoch elsewhere.

The bar's line always fits the terminal it is drawn on (its width read at every refresh): metrics are written
short (``loss 0.4577  acc 0.8312``) and the bar shrinks, down to MIN_BAR columns, to make room for them. While an
epoch runs, metrics that do not fit are left out; at its end, where the validation numbers join, the finished bar
gives way first, and whatever still does not fit goes on a line of its own instead of being cut.
"""
from __future__ import annotations

import io
import os
import sys
import time

BAR_REFRESH = 0.1       # seconds between bar refreshes, i.e. between reads of the device's running sums
QUIET_SYNC = 1.0        # without a bar, the running sums are still checked (for NaN) this often
MIN_BAR = 10            # columns of bar worth drawing; below that the epoch's last line drops it
SHORT = {"accuracy": "acc", "val_accuracy": "val_acc"}
NOT_SHOWN = ("lr", "seconds")

# the line's formats, in order of preference: the first that fits and shows every metric, else the one that shows
# the most (one that does not fit even without metrics comes last)
RUNNING = ("{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]",
           "{desc} {n_fmt}/{total_fmt} [{elapsed}<{remaining}]",
           "{desc} {n_fmt}/{total_fmt}")
DONE = ("{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}]",
        "{desc} [{elapsed}]")                # the count would be the total: nothing lost
NO_TOTAL = ("{desc} {n_fmt} batches [{elapsed}]",)


def terminal_columns(stream) -> int:
    """Columns of the terminal ``stream`` writes to; else $COLUMNS; else 80."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    env = os.environ.get("COLUMNS", "")
    return int(env) if env.isdigit() and int(env) > 0 else 80


def metric_items(logs) -> list[str]:
    """{'loss': 0.45771, 'val_accuracy': 0.8} -> ['loss 0.4577', 'val_acc 0.8000'] in the logs' order."""
    return [f"{SHORT.get(k, k)} {v:.4f}" for k, v in logs.items() if k not in NOT_SHOWN]


class Progress:
    def __init__(self, total, epoch, epochs, verbose, stream=None):
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.bar = None
        self.total = total
        self.start = time.monotonic()
        self.interval = QUIET_SYNC
        if verbose == 1 and hasattr(self.stream, "isatty") and self.stream.isatty():
            from tqdm import tqdm

            width = terminal_columns(self.stream) - 1        # the last column would wrap on some terminals
            self.bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", file=self.stream,
                            leave=True, ncols=width, mininterval=0, miniters=1,  # drawn at each update(): when due()
                            bar_format=(RUNNING if total else NO_TOTAL)[0])
            self.interval = BAR_REFRESH
        self._next = self.start + self.interval
        self._done = 0

    def due(self, now=None) -> bool:
        """True when the running sums should be read now (at most once per interval)."""
        return (now or time.monotonic()) >= self._next

    def update(self, steps_done, postfix: dict | None):
        self._next = time.monotonic() + self.interval
        if self.bar is not None:
            if postfix:
                # what does not fit while the epoch runs waits for its end
                self._layout(RUNNING if self.total else NO_TOTAL, metric_items(postfix))
            self.bar.update(steps_done - self._done)
            self._done = steps_done

    def close(self, steps_done, logs: dict, epoch, epochs):
        if self.bar is not None:
            rest = self._layout(DONE if self.total else NO_TOTAL, metric_items(logs))
            self.bar.update(steps_done - self._done)
            self._done = steps_done
            self.bar.close()
            width = self.bar.ncols
            line = "  "
            for item in rest:      # one or more lines of their own rather than numbers cut at the edge
                if len(line) > 2 and len(line) + 2 + len(item) > width:
                    print(line.rstrip(), file=self.stream)
                    line = "  "
                line += item + "  "
            if rest:
                print(line.rstrip(), file=self.stream, flush=True)
        elif self.verbose:
            parts = " - ".join(f"{k} {v:.4f}" for k, v in logs.items() if k not in NOT_SHOWN)
            print(f"epoch {epoch + 1}/{epochs} - {parts} - {logs.get('seconds', 0):.1f}s", file=self.stream,
                  flush=True)

    def _layout(self, formats, items):
        """Set the bar's format to the first of ``formats`` that, followed by ``items``, fits the terminal's width
        (read now: the window may have been resized) with at least MIN_BAR columns of bar where it has one; else to
        the one that fits, with the most items. Returns the items left out."""
        width = terminal_columns(self.stream) - 1
        self.bar.ncols = width
        best = None
        for fmt in formats:
            fixed = len(self.bar.format_meter(**{**self.bar.format_dict, "ncols": None,
                                                 "bar_format": fmt.replace("{bar}", "")}))
            room = width - fixed - (MIN_BAR if "{bar}" in fmt else 0)
            shown = 0
            for item in items:
                if len(item) + 2 > room:
                    break
                shown += 1
                room -= len(item) + 2
            score = (room >= 0, shown)
            if best is None or score > best[0]:
                best = (score, fmt)
            if score == (True, len(items)):
                break
        (_, shown), fmt = best
        text = "".join("  " + s for s in items[:shown]).replace("{", "{{").replace("}", "}}")
        self.bar.bar_format = fmt + text
        return items[shown:]
