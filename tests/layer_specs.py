"""Every layer, with the PyTorch function that computes the same thing from the same parameters.

Each spec: (name, make(device, dtype) -> layer, torch_fn(x, *params) -> y, input shape).
Parameters are passed to torch_fn in named_parameters() order, as portanet stores them.
"""
import torch
import torch.nn.functional as F

import portanet as pn


def _maxout(x, w, b, out=3, pieces=2):
    z = x @ w + b
    return z.view(x.shape[0], out, pieces).max(dim=-1).values


def _bn_train(x, w, b):
    return F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)


def _concat(x, w0, b0, w1, b1):
    return torch.cat([F.conv2d(x, w0, b0), torch.relu(F.conv2d(x, w1, b1, padding=1))], dim=1)


IMAGES = (2, 2, 5, 4)          # (batch, channels, height, width): small enough for finite differences on strict


LAYERS = [
    ("Dense", lambda d, dt: pn.Dense(5, 4, device=d, dtype=dt), lambda x, w, b: x @ w + b, (6, 5)),
    ("Dense-nobias", lambda d, dt: pn.Dense(5, 4, bias=False, device=d, dtype=dt), lambda x, w: x @ w, (6, 5)),
    ("Identity", lambda d, dt: pn.Identity(device=d), lambda x: x * 1, (6, 5)),
    ("Sigmoid", lambda d, dt: pn.Sigmoid(device=d), torch.sigmoid, (6, 5)),
    ("Tanh", lambda d, dt: pn.Tanh(device=d), torch.tanh, (6, 5)),
    ("ReLU", lambda d, dt: pn.ReLU(device=d), torch.relu, (6, 5)),
    ("LeakyReLU", lambda d, dt: pn.LeakyReLU(0.1, device=d), lambda x: F.leaky_relu(x, 0.1), (6, 5)),
    ("ELU", lambda d, dt: pn.ELU(0.7, device=d), lambda x: F.elu(x, 0.7), (6, 5)),
    ("GELU", lambda d, dt: pn.GELU(device=d), F.gelu, (6, 5)),
    ("GELU-tanh", lambda d, dt: pn.GELU("tanh", device=d), lambda x: F.gelu(x, approximate="tanh"), (6, 5)),
    ("PReLU", lambda d, dt: pn.PReLU(device=d, dtype=dt), lambda x, a: F.prelu(x, a), (6, 5)),
    ("PReLU-per-feature", lambda d, dt: pn.PReLU(5, init=0.1, device=d, dtype=dt), lambda x, a: F.prelu(x, a), (6, 5)),
    ("Softmax", lambda d, dt: pn.Softmax(device=d), lambda x: torch.softmax(x, -1), (6, 5)),
    ("LogSoftmax", lambda d, dt: pn.LogSoftmax(device=d), lambda x: torch.log_softmax(x, -1), (6, 5)),
    ("Maxout", lambda d, dt: pn.Maxout(5, 3, pieces=2, device=d, dtype=dt), _maxout, (6, 5)),
    ("Flatten", lambda d, dt: pn.Flatten(device=d), lambda x: x.reshape(x.shape[0], -1), (3, 2, 4)),
    ("BatchNorm1d", lambda d, dt: pn.BatchNorm1d(5, device=d, dtype=dt), _bn_train, (6, 5)),
    ("Dropout-eval", lambda d, dt: pn.Dropout(0.4, device=d).eval(), lambda x: x * 1, (6, 5)),
    ("Conv2d", lambda d, dt: pn.Conv2d(2, 3, 3, padding=1, device=d, dtype=dt),
     lambda x, w, b: F.conv2d(x, w, b, padding=1), IMAGES),
    ("Conv2d-strided-nobias", lambda d, dt: pn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), bias=False,
                                                      device=d, dtype=dt),
     lambda x, w: F.conv2d(x, w, stride=(2, 1), padding=(1, 0)), IMAGES),
    ("MaxPool2d", lambda d, dt: pn.MaxPool2d(2, device=d), lambda x: F.max_pool2d(x, 2), IMAGES),
    ("MaxPool2d-overlapping-padded", lambda d, dt: pn.MaxPool2d(3, stride=2, padding=1, device=d),
     lambda x: F.max_pool2d(x, 3, stride=2, padding=1), IMAGES),
    ("AvgPool2d", lambda d, dt: pn.AvgPool2d(3, stride=2, padding=1, device=d),
     lambda x: F.avg_pool2d(x, 3, stride=2, padding=1), IMAGES),
    ("GlobalAvgPool2d", lambda d, dt: pn.GlobalAvgPool2d(device=d), lambda x: x.mean(dim=(2, 3)), IMAGES),
    ("BatchNorm2d", lambda d, dt: pn.BatchNorm2d(2, device=d, dtype=dt), _bn_train, IMAGES),
    ("Dropout2d-eval", lambda d, dt: pn.Dropout2d(0.4, device=d).eval(), lambda x: x * 1, IMAGES),
    ("Residual", lambda d, dt: pn.Residual(pn.Conv2d(2, 2, 3, padding=1, device=d, dtype=dt), pn.Tanh(device=d)),
     lambda x, w, b: x + torch.tanh(F.conv2d(x, w, b, padding=1)), IMAGES),
    ("Concat", lambda d, dt: pn.Concat(pn.Conv2d(2, 3, 1, device=d, dtype=dt),
                                       pn.Sequential(pn.Conv2d(2, 2, 3, padding=1, device=d, dtype=dt),
                                                     pn.ReLU(device=d))),
     _concat, IMAGES),
]
