"""fit's progress bar fits the terminal it is drawn on, and no number in it is ever cut."""
import io
import os
import re
import sys

import numpy as np
import pytest

import portanet as pn
from portanet import progress

METRIC = re.compile(r"\b(loss|acc|val_loss|val_acc) (\S+)")
LOGS = {"loss": 0.45771, "accuracy": 0.83125, "val_loss": 0.40119, "val_accuracy": 0.85431, "lr": 0.001,
        "seconds": 5.2}


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as a user's stderr does; its width comes from $COLUMNS."""

    def isatty(self):
        return True


def rendered(text):
    """Every line the terminal showed, one per redraw (tqdm redraws after a carriage return, padding with spaces
    to clear a longer line before it)."""
    return [seg.rstrip() for seg in re.split(r"[\r\n]", text) if seg.strip()]


def screen(text):
    """The lines left on the terminal at the end: each line's last redraw."""
    return [line.split("\r")[-1].rstrip() for line in text.split("\n") if line.strip()]


def numbers_whole(lines):
    found = [(name, value) for line in lines for name, value in METRIC.findall(line)]
    assert all(re.fullmatch(r"\d+\.\d{4}", value) for _, value in found), found
    return {name for name, _ in found}


@pytest.mark.parametrize("columns", [80, 60, 120, 40])
def test_an_epoch_fits_the_terminal_and_shows_every_number_whole(columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(columns))
    term = Terminal()
    p = progress.Progress(469, epoch=9, epochs=10, verbose=1, stream=term)
    p.update(211, {"loss": 0.45771, "accuracy": 0.83125})
    p.close(469, dict(LOGS), epoch=9, epochs=10)
    lines = rendered(term.getvalue())
    assert all(len(line) <= columns - 1 for line in lines), [(len(s), s) for s in lines]
    end = screen(term.getvalue())
    assert end[0].startswith("epoch 10/10 ")
    assert numbers_whole(end) == {"loss", "acc", "val_loss", "val_acc"}      # the epoch's numbers, all of them
    assert not any("lr" in s or "seconds" in s for s in lines)
    if columns >= 80:
        assert len(end) == 1                  # one line per epoch on an ordinary terminal
    running = [s for s in lines if "211/469" in s]
    assert len(running) == 1 and "loss 0.4577" in running[0]


def test_the_width_is_read_again_at_each_refresh(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    term = Terminal()
    p = progress.Progress(100, epoch=0, epochs=1, verbose=1, stream=term)
    p.update(10, {"loss": 1.0, "accuracy": 0.5})
    monkeypatch.setenv("COLUMNS", "50")           # the window was narrowed
    p.update(20, {"loss": 0.9, "accuracy": 0.6})
    last = rendered(term.getvalue())[-1]
    assert "20/100" in last and len(last) <= 49 and numbers_whole([last]) <= {"loss", "acc"}
    p.close(100, {"loss": 0.8, "accuracy": 0.7}, epoch=0, epochs=1)


def test_fit_on_a_terminal_of_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(progress, "BAR_REFRESH", 0.0)           # refresh at every step
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = pn.Sequential(pn.Dense(6, 8), pn.ReLU(), pn.Dense(8, 2))
    pn.fit(model, pn.CrossEntropyLoss(), pn.optim.SGD(model.parameters(), lr=0.1), pn.DataLoader(x, y, batch_size=16),
           epochs=2, val_loader=pn.DataLoader(x, y, batch_size=64), verbose=1)
    text = term.getvalue()
    lines = rendered(text)
    assert all(len(line) <= 79 for line in lines)
    finals = screen(text)
    assert len(finals) == 2 and all(s.startswith(f"epoch {i}/2 ") for i, s in zip((1, 2), finals))
    assert all(numbers_whole([s]) == {"loss", "acc", "val_loss", "val_acc"} for s in finals)
    assert any("%|" in s and "loss" in s and "val" not in s for s in lines)      # metrics while the epoch runs


def test_terminal_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "57")
    assert progress.terminal_columns(Terminal()) == 57
    monkeypatch.delenv("COLUMNS")
    assert progress.terminal_columns(Terminal()) == 80


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_terminal_columns_of_a_real_terminal(monkeypatch):
    import fcntl
    import struct
    import termios

    monkeypatch.setenv("COLUMNS", "57")              # the terminal's own size comes first
    master, slave = os.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 103, 0, 0))
        with os.fdopen(slave, "w", closefd=False) as stream:
            assert progress.terminal_columns(stream) == 103
    finally:
        os.close(master)
        os.close(slave)


def test_a_loader_without_a_length_counts_batches(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    term = Terminal()
    p = progress.Progress(None, epoch=0, epochs=2, verbose=1, stream=term)
    p.update(5, {"loss": 0.5, "accuracy": 0.7})
    p.close(9, dict(LOGS), epoch=0, epochs=2)
    assert all(len(line) <= 59 for line in rendered(term.getvalue()))
    end = screen(term.getvalue())
    assert end[0].startswith("epoch 1/2 9 batches [")
    assert numbers_whole(end) == {"loss", "acc", "val_loss", "val_acc"}
