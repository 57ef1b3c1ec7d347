"""Layers, one family per file."""
from .activations import ELU, GELU, Identity, LeakyReLU, PReLU, ReLU, Sigmoid, Tanh
from .dense import Dense, Linear
from .dropout import Dropout
from .maxout import Maxout
from .normalization import BatchNorm1d
from .reshape import Flatten
from .softmax import LogSoftmax, Softmax

__all__ = ["BatchNorm1d", "Dense", "Dropout", "ELU", "Flatten", "GELU", "Identity", "LeakyReLU", "Linear",
           "LogSoftmax", "Maxout", "PReLU", "ReLU", "Sigmoid", "Softmax", "Tanh"]
