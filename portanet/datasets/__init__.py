"""Datasets: MNIST, Fashion-MNIST (IDX, cached, verified downloads) and Iris (shipped)."""
from .idx import read_idx, write_idx
from .iris import load_iris
from .mnist import FASHION_CLASSES, load_fashion_mnist, load_mnist

__all__ = ["load_mnist", "load_fashion_mnist", "load_iris", "read_idx", "write_idx", "FASHION_CLASSES"]
