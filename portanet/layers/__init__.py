"""Layers, one family per file."""
from .activations import ELU, GELU, Identity, LeakyReLU, PReLU, ReLU, Sigmoid, Tanh
from .containers import Concat, Residual
from .conv import Conv2d
from .dense import Dense, Linear
from .dropout import Dropout, Dropout2d
from .maxout import Maxout
from .normalization import BatchNorm1d, BatchNorm2d
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .reshape import Flatten
from .softmax import LogSoftmax, Softmax

__all__ = ["AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Concat", "Conv2d", "Dense", "Dropout", "Dropout2d", "ELU",
           "Flatten", "GELU", "GlobalAvgPool2d", "Identity", "LeakyReLU", "Linear", "LogSoftmax", "MaxPool2d",
           "Maxout", "PReLU", "ReLU", "Residual", "Sigmoid", "Softmax", "Tanh"]
