"""Optimizers, learning-rate schedules and gradient clipping."""
from .adam import Adam, AdamW
from .clip import clip_grad_norm, clip_grad_norm_
from .optimizer import Optimizer
from .rmsprop import Adagrad, RMSprop
from .schedules import CosineAnnealingLR, LinearWarmup, LRScheduler, StepLR
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Optimizer", "LRScheduler", "StepLR",
           "CosineAnnealingLR", "LinearWarmup", "clip_grad_norm", "clip_grad_norm_"]
