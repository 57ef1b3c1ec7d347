"""portanet: layers, losses and optimizers written once against the Python Array API standard.

    import portanet as pn
    model = pn.Sequential(pn.Dense(784, 100), pn.Sigmoid(), pn.Dense(100, 10), device="cpu")
"""
from . import callbacks, datasets, init, layers, losses, metrics, optim, transforms
from .callbacks import (Callback, CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint,
                        TerminateOnNaN)
from .data import ArrayDataset, DataLoader, one_hot, train_val_split
from .devices import Device, default_device, device, device_of, set_default_device
from .errors import (CheckpointError, DatasetError, DeviceError, DeviceMismatchError, DeviceUnavailableError,
                     NonFiniteError, NotFittedError, ShapeError)
from .gradcheck import GradcheckError, gradcheck
from .layers import (ELU, GELU, BatchNorm1d, Dense, Dropout, Flatten, Identity, LeakyReLU, Linear, LogSoftmax,
                     Maxout, PReLU, ReLU, Sigmoid, Softmax, Tanh)
from .losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HingeLoss, HuberLoss, L1Loss, Loss, MSELoss,
                     NLLLoss)
from .module import Module, Parameter, Sequential
from .history import History
from .io import load, save
from .random import seed
from .train import evaluate, fit, predict
from .transforms import Compose, GaussianNoise, RandomFlip, RandomRotation, RandomShift

__version__ = "0.1.0"
