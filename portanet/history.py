"""What fit returns: per-epoch numbers by metric name, and a plot of them."""
from __future__ import annotations


class History:
    """The numbers ``fit`` logged, one list per metric, read like Keras' ``History.history`` dict.

    ``history["loss"][i]`` is the mean training loss of epoch ``history.epoch[i]`` (0-based, counted from the
    loader's position, so a second ``fit`` call goes on from where the first stopped); likewise ``accuracy``,
    ``val_loss`` and ``val_accuracy`` (with a ``val_loader``), ``lr`` (the learning rate the epoch ended with)
    and ``seconds`` (its wall time). A metric that an epoch did not log holds None there.

    Dict-like over metric names: ``keys()`` / ``iter(history)`` give them in the order first logged, ``items()``,
    ``values()``, ``get()``, ``"val_loss" in history``, and ``dict(history)`` or ``pandas.DataFrame(history)``
    copies it out. ``len(history)`` is the number of epochs logged (as it has always been; the metrics are
    ``len(history.keys())``). ``history.history`` is the underlying dict (Keras' name for it).
    """

    def __init__(self):
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def append(self, epoch, logs):
        """Record ``logs`` ({metric: float}) as epoch ``epoch``'s numbers."""
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, [None] * (len(self.epoch) - 1)).append(v)
        for k, values in self.history.items():
            if len(values) < len(self.epoch):
                values.append(None)

    def __getitem__(self, key):
        try:
            return self.history[key]
        except KeyError:
            logged = ", ".join(map(repr, self.history)) or "nothing yet (no epoch has run)"
            hint = " (val_* metrics need fit(..., val_loader=...))" if str(key).startswith("val_") else ""
            raise KeyError(f"{key!r} was not logged{hint}; this History has {logged}") from None

    def __iter__(self):
        return iter(self.history)

    def keys(self):
        return self.history.keys()

    def items(self):
        return self.history.items()

    def values(self):
        return self.history.values()

    def get(self, key, default=None):
        return self.history.get(key, default)

    def __len__(self):
        return len(self.epoch)

    def __contains__(self, key):
        return key in self.history

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, metrics={list(self.history)})"

    def plot(self, path=None, dpi=100):
        """Draw the loss curves (left) and the accuracy curves (right) against the epoch (1-based).

        path   a file to save the figure to, its format taken from the extension (.png, .pdf, .svg): drawn on a
               ``matplotlib.figure.Figure`` without pyplot, so no backend is chosen or switched. Returns path.
        None   show the figure with pyplot in the backend the user has (inline in a notebook, a window on a
               desktop). Returns the Figure.

        Needs matplotlib (pip install 'portanet[plot]'): ImportError saying so otherwise; ValueError when no
        epoch has been logged."""
        try:
            from matplotlib.figure import Figure
        except ImportError as e:
            raise ImportError("History.plot needs matplotlib, which is not installed: "
                              "pip install 'portanet[plot]'") from e
        panels = [("loss", ("loss", "val_loss")), ("accuracy", ("accuracy", "val_accuracy"))]
        panels = [(title, [k for k in keys if k in self.history]) for title, keys in panels]
        panels = [p for p in panels if p[1]]
        if not self.epoch or not panels:
            raise ValueError(f"nothing to plot: {self!r} has no loss or accuracy logged; run fit for an epoch first")
        size = (5 * len(panels), 3.6)
        if path is None:
            import matplotlib.pyplot as plt

            fig = plt.figure(figsize=size)
        else:
            fig = Figure(figsize=size)
        self._draw(fig, panels)
        if path is None:
            plt.show()
            return fig
        fig.savefig(path, dpi=dpi)
        return path

    def _draw(self, fig, panels):
        epochs = [e + 1 for e in self.epoch]
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (title, keys) in zip(axes, panels):
            for k in keys:
                ax.plot(epochs, self.history[k], marker="o", label=k)
            ax.set_xlabel("epoch")
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
