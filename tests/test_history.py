"""History: a Mapping of metric name -> per-epoch list, and plots that leave the user's matplotlib backend alone."""
import sys

import numpy as np
import pytest

import portanet as pn


def trained(epochs=3, val=True):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = pn.Sequential(pn.Dense(4, 8), pn.ReLU(), pn.Dense(8, 2))
    return pn.fit(model, pn.CrossEntropyLoss(), pn.optim.SGD(model.parameters(), lr=0.1),
                  pn.DataLoader(x, y, batch_size=32, seed=0), epochs=epochs,
                  val_loader=pn.DataLoader(x, y, batch_size=64) if val else None, verbose=0)


def test_history_reads_as_a_dict_of_metric_lists():
    h = trained()
    names = ["loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    assert list(h) == list(h.keys()) == names
    assert dict(h) == h.history and dict(h.items()) == h.history
    assert len(h) == 3 and len(h.keys()) == 6 and h.epoch == [0, 1, 2]
    assert "val_loss" in h and "val_precision" not in h and h.get("val_precision") is None
    assert all(len(v) == 3 and all(isinstance(e, float) for e in v) for v in h.values())
    assert h["loss"][-1] < h["loss"][0]
    assert repr(h) == f"History(epochs=3, metrics={names})"


def test_an_empty_history_and_missing_metrics():
    h = pn.History()
    assert len(h) == 0 and not h and dict(h) == {}
    with pytest.raises(KeyError, match="'loss' was not logged; this History has nothing yet"):
        h["loss"]
    with pytest.raises(KeyError, match=r"val_\* metrics need fit\(\.\.\., val_loader=\.\.\.\)\); this History has "
                                       r"'loss', 'accuracy'"):
        trained(epochs=1, val=False)["val_loss"]


def test_epochs_that_log_different_metrics_are_padded_with_none():
    h = pn.History()
    h.append(0, {"loss": 1.0})
    h.append(1, {"loss": 0.5, "val_loss": 0.7})
    h.append(2, {"val_loss": 0.6})
    assert dict(h) == {"loss": [1.0, 0.5, None], "val_loss": [None, 0.7, 0.6]}


def test_plot_to_a_file_touches_no_backend(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    h = trained()

    def refuse(*a, **k):
        raise AssertionError("History.plot switched the matplotlib backend")

    monkeypatch.setattr(matplotlib, "use", refuse)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)      # importing pyplot now fails
    backend = matplotlib.rcParams._get_backend_or_none()
    assert h.plot(tmp_path / "h.png") == tmp_path / "h.png"
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert h.plot(tmp_path / "h.svg").read_text().lstrip().startswith("<?xml")
    assert matplotlib.rcParams._get_backend_or_none() == backend


def test_plot_without_a_path_shows_the_figure(monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(True))
    h = trained()
    fig = h.plot()
    try:
        assert shown == [True]
        loss_ax, acc_ax = fig.axes
        assert [line.get_label() for line in loss_ax.lines] == ["loss", "val_loss"]
        np.testing.assert_array_equal(loss_ax.lines[0].get_xdata(), [1, 2, 3])
        np.testing.assert_array_equal(loss_ax.lines[1].get_ydata(), h["val_loss"])
        np.testing.assert_array_equal(acc_ax.lines[0].get_ydata(), h["accuracy"])
    finally:
        plt.close(fig)


def test_plot_explains_what_it_needs(monkeypatch):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="nothing to plot.*run fit for an epoch first"):
        pn.History().plot("x.png")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"History.plot needs matplotlib.*pip install 'portanet\[plot\]'"):
        trained(epochs=1).plot("x.png")
