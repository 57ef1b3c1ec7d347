"""What fit returns: per-epoch numbers, and a plot of them."""
from __future__ import annotations


class History:
    """``history.history["loss"][i]`` is epoch ``history.epoch[i]``'s mean training loss; likewise
    accuracy, val_loss, val_accuracy, lr and seconds."""

    def __init__(self):
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, [None] * (len(self.epoch) - 1)).append(v)
        for k, values in self.history.items():
            if len(values) < len(self.epoch):
                values.append(None)

    def __getitem__(self, key):
        return self.history[key]

    def __len__(self):
        return len(self.epoch)

    def plot(self, path):
        """Save a PNG with the loss curves (left) and accuracy curves (right). Needs matplotlib
        (pip install 'portanet[plot]')."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError("History.plot needs matplotlib: pip install 'portanet[plot]'") from e
        epochs = [e + 1 for e in self.epoch]
        panels = [("loss", ("loss", "val_loss")), ("accuracy", ("accuracy", "val_accuracy"))]
        panels = [(t, [k for k in keys if k in self.history]) for t, keys in panels]
        panels = [p for p in panels if p[1]]
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
        for ax, (title, keys) in zip(axes[0], panels):
            for k in keys:
                ax.plot(epochs, self.history[k], marker="o", label=k)
            ax.set_xlabel("epoch")
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
