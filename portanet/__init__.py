"""portanet: layers, losses and optimizers written once against the Python Array API standard.

    import portanet as pn
    model = pn.Sequential(pn.Dense(784, 100), pn.Sigmoid(), pn.Dense(100, 10), device="cpu")
"""
from . import callbacks, datasets, init, interop, layers, losses, metrics, optim, step, transforms
from .callbacks import (Callback, CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint,
                        TerminateOnNaN)
from .data import ArrayDataset, DataLoader, one_hot, train_val_split
from .devices import Device, default_device, device, device_of, set_default_device
from .errors import (CheckpointError, DatasetError, DeviceError, DeviceMismatchError, DeviceUnavailableError,
                     NonFiniteError, NotFittedError, ShapeError)
from .gradcheck import GradcheckError, gradcheck
from .layers import (ELU, GELU, AvgPool2d, BatchNorm1d, BatchNorm2d, Concat, Conv2d, Dense, Dropout, Dropout2d, Flatten,
                     GlobalAvgPool2d, Identity, LeakyReLU, Linear, LogSoftmax, Maxout, MaxPool2d, PReLU, ReLU,
                     Residual, Sigmoid, Softmax, Tanh)
from .losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HingeLoss, HuberLoss, L1Loss, Loss, MSELoss,
                     NLLLoss)
from .module import Module, Parameter, Sequential
from .history import History
from .interop import load_torch_state_dict, torch_state_dict
from .io import load, save
from .random import seed
from .step.train_step import TrainStep
from .train import evaluate, fit, predict
from .transforms import Compose, GaussianNoise, RandomFlip, RandomRotation, RandomShift

__version__ = "0.1.0"

__all__ = [
    # devices and seeding
    "Device", "device", "device_of", "default_device", "set_default_device", "seed",
    # modules and layers
    "Module", "Parameter", "Sequential", "Dense", "Linear", "Flatten", "Identity", "Sigmoid", "Tanh", "ReLU",
    "LeakyReLU", "PReLU", "ELU", "GELU", "Softmax", "LogSoftmax", "Maxout", "Dropout", "BatchNorm1d",
    "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "BatchNorm2d", "Dropout2d", "Residual", "Concat",
    # losses
    "Loss", "MSELoss", "L1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss",
    "HingeLoss",
    # data and training
    "ArrayDataset", "DataLoader", "one_hot", "train_val_split", "Compose", "GaussianNoise", "RandomFlip",
    "RandomRotation", "RandomShift", "fit", "evaluate", "predict", "TrainStep", "History", "save", "load",
    "Callback", "CSVLogger", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint", "TerminateOnNaN",
    # PyTorch interop
    "load_torch_state_dict", "torch_state_dict",
    # checks and errors
    "gradcheck", "GradcheckError", "CheckpointError", "DatasetError", "DeviceError", "DeviceMismatchError",
    "DeviceUnavailableError", "NonFiniteError", "NotFittedError", "ShapeError",
    # submodules
    "callbacks", "datasets", "init", "interop", "layers", "losses", "metrics", "optim", "step", "transforms",
]
