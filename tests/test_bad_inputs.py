"""The bad-input battery: every case asserts the exception type and that the message names the
problem and the fix. None may surface as a bare error from inside an array library."""
import traceback

import numpy as np
import pytest
import torch

import portanet as pn
from portanet import backends
from portanet.datasets import read_idx, write_idx

F32 = np.float32
NO_GPU = backends.get("cupy").unavailable() is not None
ONE_HOT = np.eye(3, dtype=np.int64)[[0, 1, 2, 0]]          # integer one-hot rows, (4, 3)


def images(n=4):
    return np.zeros((n, 784), F32)


def trained_dense():
    d = pn.Dense(3, 2)
    d(np.ones((2, 3), F32))
    return d


def ckpt(tmp_path, model=None):
    m = model or pn.Sequential(pn.Dense(4, 8), pn.ReLU(), pn.Dense(8, 3))
    path = tmp_path / "c.npz"
    pn.save(path, m, pn.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    return path


def ce(pred, target):
    return pn.CrossEntropyLoss()(pred, target)


def _model_on(spec):
    model = pn.Sequential(pn.Dense(2, 3), device=spec)
    return model, pn.CrossEntropyLoss(), pn.optim.SGD(model.parameters(), lr=0.1)


def fit_with(loader_kwargs=None, model=None, y=None, **fit_kwargs):
    """fit on zeros (8 samples of 2 features, or one per target of ``y``) in batches of 4."""
    model = model or pn.Sequential(pn.Dense(2, 3))
    y = np.zeros(8, np.int64) if y is None else y
    x = np.zeros((len(y), 2), F32)
    loader = pn.DataLoader(x, y, batch_size=4, **(loader_kwargs or {}))
    pn.fit(model, pn.CrossEntropyLoss(), pn.optim.SGD(model.parameters(), lr=0.1), loader, verbose=0, **fit_kwargs)


def fit_xy(**fit_kwargs):
    model, loss, opt = _model_on("cpu")
    pn.fit(model, loss, opt, np.zeros((8, 2), F32), np.zeros(8, np.int64), verbose=0, **fit_kwargs)


def write_bad_idx(tmp_path, mutate):
    p = tmp_path / "images-idx3-ubyte"
    write_idx(p, np.zeros((5, 28, 28), np.uint8))
    p.write_bytes(mutate(p.read_bytes()))
    return p


CASES = [
    # -- layers: shapes, ranks, dtypes, empty batches ---------------------------------------------------------
    ("wrong feature count", lambda t: pn.Dense(784, 256)(np.zeros((128, 100), F32)), pn.ShapeError,
     r"expects \(batch, 784\).*check the previous layer's output size"),
    ("images into Dense", lambda t: pn.Dense(784, 256)(np.zeros((128, 28, 28), F32)), pn.ShapeError,
     r"shape \(128, 28, 28\).*add Flatten\(\) before it"),
    ("1-D input", lambda t: pn.Dense(3, 2)(np.zeros(3, F32)), pn.ShapeError, r"add a batch axis"),
    ("integer input", lambda t: pn.Dense(784, 10)(np.zeros((2, 784), np.uint8)), TypeError,
     r"got uint8 input.*astype\(float32\) / 255"),
    ("boolean input", lambda t: pn.Dense(3, 2)(np.zeros((2, 3), bool)), TypeError, r"got bool input.*convert first"),
    ("float64 into float32", lambda t: pn.Dense(3, 2)(np.zeros((2, 3))), TypeError,
     r"never upcasts.*dtype='float64'"),
    ("empty batch into Dense", lambda t: pn.Dense(3, 2)(np.zeros((0, 3), F32)), pn.ShapeError,
     r"empty batch.*at least one sample"),
    ("Maxout features", lambda t: pn.Maxout(5, 3, 2)(np.zeros((2, 4), F32)), pn.ShapeError, r"\(batch, 5\)"),
    ("BatchNorm features", lambda t: pn.BatchNorm1d(5)(np.zeros((2, 4), F32)), pn.ShapeError, r"\(batch, 5\)"),
    ("BatchNorm batch of one", lambda t: pn.BatchNorm1d(3)(np.zeros((1, 3), F32)), pn.ShapeError,
     r"at least 2.*drop_last=True.*model.eval\(\)"),
    ("PReLU per-feature", lambda t: pn.PReLU(5)(np.zeros((2, 4), F32)), pn.ShapeError, r"one slope per feature"),
    ("Dense size zero", lambda t: pn.Dense(0, 5), ValueError, r"in_features to be a positive int"),
    ("one image into a Flatten-first MLP", lambda t: pn.Sequential(pn.Flatten(), pn.Dense(784, 10))(
        np.zeros((28, 28), F32)), pn.ShapeError, r"\(28, 28\) holds 784 values, one sample's features: add a batch "
     r"axis \(x\[None\]"),
    ("one flat sample into Flatten", lambda t: pn.Sequential(pn.Flatten(), pn.Dense(784, 10))(np.zeros(784, F32)),
     pn.ShapeError, r"Flatten got input of shape \(784,\), one sample without a batch axis.*add the batch axis with "
     r"x\[None\] or x.reshape\(1, -1\)"),
    ("one channels-first image into Dense", lambda t: pn.Dense(3072, 10)(np.zeros((3, 32, 32), F32)), pn.ShapeError,
     r"it is one sample: add a batch axis \(x\[None\]\) and flatten it"),
    ("a batch of scalars into Dense", lambda t: pn.Dense(1, 4)(np.zeros(5, F32)), pn.ShapeError,
     r"batch of single values: add a feature axis \(x\[:, None\]\)"),
    ("one sample into BatchNorm", lambda t: pn.BatchNorm1d(5)(np.zeros(5, F32)), pn.ShapeError,
     r"\(5,\).*one sample: add a batch axis"),
    ("one sample into PReLU", lambda t: pn.PReLU(5)(np.zeros(5, F32)), pn.ShapeError,
     r"one sample: add a batch axis \(x\[None, :\]\)"),
    ("Sequential of non-modules", lambda t: pn.Sequential(pn.Dense(2, 2), "relu"), TypeError,
     r"takes portanet Modules; item 1 is str"),
    ("Dropout p = 1", lambda t: pn.Dropout(1.0), ValueError, r"must be in \[0, 1\).*p=0 disables"),
    ("Dropout p < 0", lambda t: pn.Dropout(-0.1), ValueError, r"must be in \[0, 1\)"),
    ("float16 data on strict:device1", lambda t: pn.fit(*_model_on("strict:device1"), np.zeros((4, 2), np.float16),
                                                        np.zeros(4, np.int64), verbose=0), TypeError,
     r"cannot place a float16 array on strict:device1: array-api-strict takes bool, int, uint, float32 and float64 "
     r"arrays.*convert it first, x.astype\('float32'\)"),
    ("Keras' (x, y, sample_weight) as validation_data", lambda t: fit_xy(validation_data=(
        np.zeros((4, 2), F32), np.zeros(4, np.int64), np.ones(4))), TypeError,
     r"fit's validation_data got a tuple of 3, Keras' \(x, y, sample_weight\): portanet takes no sample weights.*"
     r"pass \(x, y\)"),
    ("Keras' (x, y, sample_weight) as training data", lambda t: pn.fit(*_model_on("cpu"), (
        np.zeros((4, 2), F32), np.zeros(4, np.int64), np.ones(4)), verbose=0), TypeError,
     r"fit got a tuple of 3, Keras' \(x, y, sample_weight\).*pass \(x, y\)"),
    ("Keras' (x, y, sample_weight) into evaluate", lambda t: pn.evaluate(pn.Dense(2, 3), (
        np.zeros((4, 2), F32), np.zeros(4, np.int64), np.ones(4))), TypeError,
     r"evaluate got a tuple of 3, Keras' \(x, y, sample_weight\).*pass \(x, y\)"),
    # -- convolutional layers and branching models ----------------------------------------------------------
    ("channels-last images into Conv2d", lambda t: pn.Conv2d(3, 16, 3)(np.zeros((8, 32, 32, 3), F32)),
     pn.ShapeError, r"\(8, 32, 32, 3\), with 32 channels on axis 1; the layout expected is \(batch, channels, "
                    r"height, width\).*x.transpose\(0, 3, 1, 2\) \(xp.permute_dims\(x, \(0, 3, 1, 2\)\)\)"),
    ("wrong channel count into Conv2d", lambda t: pn.Conv2d(3, 8, 3)(np.zeros((2, 4, 8, 8), F32)), pn.ShapeError,
     r"4 channels on axis 1; it expects \(batch, 3, height, width\): check in_channels"),
    ("3-D images into Conv2d", lambda t: pn.Conv2d(1, 8, 3)(np.zeros((8, 28, 28), F32)), pn.ShapeError,
     r"\(8, 28, 28\); it expects \(batch, channels, height, width\).*add the channel axis: x\[:, None\]"),
    ("flat rows into Conv2d", lambda t: pn.Conv2d(1, 8, 3)(images()), pn.ShapeError, r"reshaped to images first"),
    ("kernel larger than the padded input", lambda t: pn.Conv2d(1, 2, 5, padding=1)(np.zeros((2, 1, 2, 2), F32)),
     pn.ShapeError, r"images of 2x2.*5x5 kernel with padding \(1, 1\) needs at least 3x3: use a smaller kernel"),
    ("Conv2d stride 0", lambda t: pn.Conv2d(1, 2, 3, stride=0), ValueError,
     r"stride must be a positive int or a pair of them \(height, width\), got 0"),
    ("Conv2d negative padding", lambda t: pn.Conv2d(1, 2, 3, padding=(1, -1)), ValueError,
     r"padding must be an int >= 0 or a pair of them \(height, width\), got \(1, -1\)"),
    ("MaxPool2d ceil_mode", lambda t: pn.MaxPool2d(2, ceil_mode=True), TypeError,
     r"MaxPool2d got 'ceil_mode', which portanet's pooling does not support.*pad the input"),
    ("AvgPool2d count_include_pad", lambda t: pn.AvgPool2d(3, padding=1, count_include_pad=False), TypeError,
     r"AvgPool2d got 'count_include_pad'.*padding counted in averages"),
    ("Residual with no layers", lambda t: pn.Residual(), ValueError,
     r"Residual needs at least one layer.*computes x \+ x; use Identity\(\)"),
    ("Conv2d kernel of size 0", lambda t: pn.Conv2d(1, 2, 0), ValueError, r"kernel_size must be a positive int"),
    ("uint8 images into Conv2d", lambda t: pn.Conv2d(1, 2, 3)(np.zeros((2, 1, 5, 5), np.uint8)), TypeError,
     r"got uint8 input.*astype\(float32\) / 255"),
    ("empty batch into Conv2d", lambda t: pn.Conv2d(1, 2, 3)(np.zeros((0, 1, 5, 5), F32)), pn.ShapeError,
     r"empty batch"),
    ("3-D images into MaxPool2d", lambda t: pn.MaxPool2d(2)(np.zeros((8, 28, 28), F32)), pn.ShapeError,
     r"x\[:, None\]"),
    ("MaxPool2d window larger than the image", lambda t: pn.MaxPool2d(3)(np.zeros((1, 1, 2, 2), F32)),
     pn.ShapeError, r"3x3 kernel with padding \(0, 0\) needs at least 3x3"),
    ("MaxPool2d padding beyond half the kernel", lambda t: pn.MaxPool2d(2, padding=2), ValueError,
     r"at most half the kernel"),
    ("BatchNorm2d on channels-last", lambda t: pn.BatchNorm2d(3)(np.zeros((2, 4, 4, 3), F32)), pn.ShapeError,
     r"expects \(batch, 3, height, width\).*transpose\(0, 3, 1, 2\)"),
    ("BatchNorm2d negative eps", lambda t: pn.BatchNorm2d(3, eps=-1e-5), ValueError,
     r"BatchNorm2d eps must be a finite number >= 0.*got -1e-05"),
    ("BatchNorm1d NaN eps", lambda t: pn.BatchNorm1d(3, eps=float("nan")), ValueError,
     r"BatchNorm1d eps must be a finite number >= 0.*got nan"),
    ("BatchNorm2d eps as a string", lambda t: pn.BatchNorm2d(3, eps="1e-5"), ValueError,
     r"BatchNorm2d eps must be a finite number >= 0.*got '1e-5'"),
    ("Residual branch that changes the shape", lambda t: pn.Residual(pn.Conv2d(4, 8, 1))(np.zeros((2, 4, 5, 5), F32)),
     pn.ShapeError, r"\(2, 4, 5, 5\) into \(2, 8, 5, 5\).*shortcut=Conv2d\(4, 8, 1, stride=<the block's stride>\)"),
    ("Concat branches of different sizes", lambda t: pn.Concat(pn.Conv2d(2, 3, 3), pn.Conv2d(2, 3, 3, padding=1))(
        np.zeros((2, 2, 5, 5), F32)), pn.ShapeError,
     r"agree on every axis but 1.*branch 0: \(2, 3, 3, 3\), branch 1: \(2, 3, 5, 5\).*padding = kernel_size // 2"),
    # -- losses: labels, targets, probabilities ---------------------------------------------------------------
    ("labels out of range", lambda t: ce(np.zeros((3, 10), F32), np.array([1, 10, 2])), ValueError,
     r"labels in \[1, 10\] but the model has 10 classes.*give the last layer more outputs"),
    ("negative labels", lambda t: ce(np.zeros((3, 10), F32), np.array([-1, 0, 2])), ValueError,
     r"labels in \[-1, 2\].*labels 0..9\): negative labels are no class.*keep = y >= 0"),
    ("labels of the wrong shape", lambda t: ce(np.zeros((3, 10), F32), np.zeros((3, 1), np.int64)), pn.ShapeError,
     r"labels of shape \(3,\).*flatten them"),
    ("probability targets of the wrong shape", lambda t: ce(np.zeros((3, 10), F32), np.zeros((3, 9), F32)),
     pn.ShapeError, r"shaped like the scores \(3, 10\)"),
    ("scores without a class axis", lambda t: ce(np.zeros(3, F32), np.zeros(3, np.int64)), pn.ShapeError,
     r"\(batch, classes\).*binary problem: use BCEWithLogitsLoss"),
    ("one sample's scores", lambda t: ce(np.zeros(3, F32), np.zeros((), np.int64)), pn.ShapeError,
     r"without a batch axis: add one \(scores\[None\], y\[None\]\)"),
    ("one-hot labels into CrossEntropyLoss", lambda t: ce(np.zeros((4, 3), F32), ONE_HOT),
     pn.ShapeError, r"got \(4, 3\): they look like one-hot rows.*\(y\.argmax\(1\)\).*as float probabilities"),
    ("one-hot labels into NLLLoss", lambda t: pn.NLLLoss()(np.zeros((4, 3), F32), ONE_HOT),
     pn.ShapeError, r"one-hot rows; pass the class index of each \(y\.argmax\(1\)\)$"),
    ("labels for another batch", lambda t: ce(np.zeros((4, 3), F32), np.zeros(5, np.int64)), pn.ShapeError,
     r"got \(5,\): pass one label per sample \(4 samples in this batch\)"),
    ("float labels into CrossEntropyLoss", lambda t: ce(np.zeros((4, 3), F32), np.zeros(4, F32)), pn.ShapeError,
     r"class labels stored as floats: convert them \(y\.astype\(int64\)\)"),
    ("float labels into NLLLoss", lambda t: pn.NLLLoss()(np.zeros((4, 3), F32), np.zeros(4, F32)), TypeError,
     r"needs integer class labels, got float32 targets: convert labels to integers \(y\.astype\(int64\)\)"),
    ("negative probabilities", lambda t: ce(np.zeros((2, 2), F32), np.full((2, 2), -0.5, F32)), ValueError,
     r"class probabilities in \[0, 1\].*the batch's targets hold a negative one \(min -0\.5\).*sum to 1"),
    ("probabilities above 1", lambda t: ce(np.zeros((2, 2), F32), np.array([[2.0, 0.0], [0.0, 1.0]], F32)),
     ValueError, r"class probabilities in \[0, 1\].*one above 1 \(max 2\).*y / y.sum\(1, keepdims=True\)"),
    ("probabilities above 1 in a later batch of fit", lambda t: fit_with(
        model=pn.Sequential(pn.Dense(2, 2)), y=np.array([[0.5, 0.5]] * 6 + [[0.0, 2.0]] * 2, F32)),
     ValueError, r"class probabilities in \[0, 1\].*the loader's targets hold one above 1 \(max 2\)"),
    ("probabilities of another dtype", lambda t: ce(np.zeros((2, 2), F32), np.zeros((2, 2))), TypeError,
     r"float64 probability targets: convert the targets to float32"),
    ("NLL labels out of range", lambda t: pn.NLLLoss()(np.zeros((2, 3), F32), np.array([0, 3])), ValueError,
     r"labels 0..2"),
    ("BCE on logits", lambda t: pn.BCELoss()(np.array([[2.0]], F32), np.array([[1.0]], F32)), ValueError,
     r"probabilities in \[0, 1\].*add a Sigmoid\(\).*BCEWithLogitsLoss"),
    ("BCE targets outside [0,1]", lambda t: pn.BCELoss()(np.array([[0.5]], F32), np.array([[2.0]], F32)),
     ValueError, r"targets in \[0, 1\]"),
    ("BCEWithLogits targets", lambda t: pn.BCEWithLogitsLoss()(np.zeros((1, 1), F32), np.full((1, 1), -1, F32)),
     ValueError, r"targets in \[0, 1\]"),
    ("MSE shapes", lambda t: pn.MSELoss()(np.zeros((4, 1), F32), np.zeros(4, F32)), pn.ShapeError,
     r"one shape.*y\[:, None\]"),
    ("MSE integer targets", lambda t: pn.MSELoss()(np.zeros((4, 1), F32), np.zeros((4, 1), np.int64)), TypeError,
     r"floating-point targets.*astype"),
    ("loss on an empty batch", lambda t: pn.MSELoss()(np.zeros((0, 1), F32), np.zeros((0, 1), F32)),
     pn.ShapeError, r"empty batch"),
    ("loss on lists", lambda t: pn.MSELoss()([1.0], [1.0]), TypeError, r"model's output array"),
    # -- data ---------------------------------------------------------------------------------------------------
    ("batch_size 0", lambda t: pn.DataLoader(images(), batch_size=0), ValueError, r"positive int, got 0"),
    ("batch_size negative", lambda t: pn.DataLoader(images(), batch_size=-5), ValueError, r"positive int, got -5"),
    ("batch_size float", lambda t: pn.DataLoader(images(), batch_size=2.5), ValueError, r"positive int, got 2.5"),
    ("strings into a DataLoader", lambda t: pn.DataLoader(np.array([["1", "2"]]), np.zeros(1)), TypeError,
     r"x holds strings \(<U1\).*x.astype\(np.float32\).*np.unique\(x, return_inverse=True\)\[1\]"),
    ("string labels into a DataLoader", lambda t: pn.DataLoader(images(2), np.array(["cat", "dog"])), TypeError,
     r"y holds strings.*np.unique\(y, return_inverse=True\)\[1\]"),
    ("objects into a DataLoader", lambda t: pn.DataLoader(np.array([[1, "a"]], dtype=object), np.zeros(1)),
     TypeError, r"x holds Python objects \(object\)"),
    ("ragged samples into a DataLoader", lambda t: pn.DataLoader([[1.0, 2.0], [3.0]], [0, 1]), pn.ShapeError,
     r"could not read x as one array: its samples differ in shape"),
    ("empty dataset", lambda t: pn.DataLoader(images(0), np.zeros(0)), ValueError, r"dataset is empty"),
    ("x and y lengths", lambda t: pn.DataLoader(images(4), np.zeros(3)), pn.ShapeError,
     r"x has 4 samples but y has 3"),
    ("drop_last leaves nothing", lambda t: pn.DataLoader(images(3), batch_size=4, drop_last=True), ValueError,
     r"leaves no batch.*smaller batch_size"),
    ("augmenting flat images", lambda t: pn.RandomShift(1)(np.zeros((2, 784), F32), pn.device("cpu").rng(0)),
     pn.ShapeError, r"Flatten\(\) first"),
    ("flipping channels-last images", lambda t: pn.RandomFlip()(np.zeros((4, 32, 32, 3), F32),
                                                                pn.device("cpu").rng(0)),
     pn.ShapeError, r"\(4, 32, 32, 3\), which look channels-last.*before the DataLoader \(x\.transpose\(0, 3, 1, 2"),
    ("shifting one channels-last image", lambda t: pn.RandomShift(2)(np.zeros((32, 32, 3), F32),
                                                                     pn.device("cpu").rng(0)),
     pn.ShapeError, r"one channels-last image.*x\.transpose\(2, 0, 1\)\[None\]"),
    ("channels-last images through a DataLoader", lambda t: list(pn.DataLoader(
        np.zeros((8, 32, 32, 3), np.uint8), batch_size=4, transform=pn.RandomRotation(10))), pn.ShapeError,
     r"RandomRotation got images of shape \(4, 32, 32, 3\).*x\.transpose\(0, 3, 1, 2\)"),
    ("augmenting uint8 images by hand", lambda t: pn.RandomShift(1)(np.zeros((2, 8, 8), np.uint8),
                                                                    pn.device("cpu").rng(0)),
     TypeError, r"needs float images, got uint8.*x\.astype\(float32\) / 255"),
    # -- devices ------------------------------------------------------------------------------------------------
    ("array from another device", lambda t: pn.Dense(2, 2, device="strict:device1")(
        pn.device("strict").asarray(np.zeros((1, 2)), dtype="float32")), pn.DeviceMismatchError,
     r"is on strict:device1 but got .* on strict:CPU_DEVICE.*asarray"),
    # (another library's array on the same device goes in through DLPack: tests/test_interop.py)
    ("array from another library", lambda t: pn.Dense(2, 2, device="strict")(torch.zeros(1, 2)),
     pn.DeviceMismatchError, r"is on strict:CPU_DEVICE but got a torch.Tensor on torch:cpu"),
    ("labels on another device", lambda t: pn.CrossEntropyLoss()(
        pn.device("strict:device1").asarray(np.zeros((1, 2)), dtype="float32"),
        pn.device("strict").asarray(np.zeros(1, np.int64))), pn.DeviceMismatchError, r"device=model.device"),
    ("model and loader apart", lambda t: fit_with(model=pn.Sequential(pn.Dense(2, 3, device="strict:device1"))),
     pn.DeviceMismatchError, r"model is on strict:device1 but the loader delivers batches on cpu.*device=model"),
    ("unknown device spec", lambda t: pn.device("tpu"), pn.DeviceError, r"unknown device 'tpu': use one of 'cpu'"),
    ("unknown default device", lambda t: pn.set_default_device("gpu0"), pn.DeviceError, r"unknown device 'gpu0'"),
    ("strict device out of range", lambda t: pn.device("strict:device7"), pn.DeviceError,
     r"no device 'device7'; it has 'strict:CPU_DEVICE'"),
    ("optimizer over two devices", lambda t: pn.optim.SGD(
        [pn.Parameter(np.zeros(2, F32)), pn.Parameter(pn.device("strict:device1").asarray(np.zeros(2)))], lr=0.1),
     pn.DeviceMismatchError, r"different devices.*model.to\(device\)"),
    # -- optimizers ---------------------------------------------------------------------------------------------
    ("unknown optimizer option", lambda t: pn.optim.Adam(pn.Dense(2, 2).parameters(), betas2=(0.9, 0.9)),
     TypeError, r"Adam has no option 'betas2' \(did you mean 'betas'\?\)"),
    ("negative learning rate", lambda t: pn.optim.SGD(pn.Dense(2, 2).parameters(), lr=-0.1), ValueError,
     r"lr must be a finite non-negative number, got -0.1"),
    ("learning rate NaN", lambda t: pn.optim.SGD(pn.Dense(2, 2).parameters(), lr=float("nan")), ValueError,
     r"SGD lr must be a finite non-negative number, got nan"),
    ("weight decay infinite", lambda t: pn.optim.AdamW(pn.Dense(2, 2).parameters(), weight_decay=float("inf")),
     ValueError, r"AdamW weight_decay must be a finite non-negative number, got inf"),
    ("betas as one number", lambda t: pn.optim.Adam(pn.Dense(2, 2).parameters(), betas=0.9), ValueError,
     r"betas must be a pair \(beta1, beta2\) of numbers in \[0, 1\), e.g. \(0.9, 0.999\), got 0.9"),
    ("betas out of range", lambda t: pn.optim.Adam(pn.Dense(2, 2).parameters(), betas=(0.9, 1.0)), ValueError,
     r"betas must be two numbers in \[0, 1\)"),
    ("nesterov without momentum", lambda t: pn.optim.SGD(pn.Dense(2, 2).parameters(), lr=0.1, nesterov=True),
     ValueError, r"needs momentum > 0"),
    ("optimizer of an empty list", lambda t: pn.optim.SGD([], lr=0.1), ValueError, r"pass model.parameters\(\)"),
    ("step with no gradients", lambda t: pn.optim.SGD(pn.Dense(2, 2).parameters(), lr=0.1).step(),
     pn.NotFittedError, r"found no gradient on any.*model.backward.*another model"),
    ("backward before forward (layer)", lambda t: pn.Dense(3, 2).backward(np.zeros((1, 2), F32)), pn.NotFittedError,
     r"before forward\(\).*model\(x\)"),
    ("backward before forward (activation)", lambda t: pn.ReLU().backward(np.zeros((1, 2), F32)),
     pn.NotFittedError, r"before forward"),
    ("loss backward before forward", lambda t: pn.CrossEntropyLoss().backward(), pn.NotFittedError,
     r"call loss\(pred, target\) first"),
    # -- training -----------------------------------------------------------------------------------------------
    ("labels beyond the model's outputs", lambda t: fit_with(y=np.array([0, 1, 2, 5, 0, 1])), ValueError,
     r"labels span \[0, 5\] but the model has 3 outputs"),
    ("negative epochs", lambda t: fit_with(epochs=-1), ValueError, r"epochs must be a non-negative int"),
    ("fit without a loss object", lambda t: pn.fit(pn.Dense(2, 2), "mse", None, None), TypeError,
     r"portanet loss \(e.g. pn.CrossEntropyLoss\(\)\)"),
    ("unknown metric", lambda t: fit_with(metrics=("f1",)), ValueError, r"unknown metric 'f1'"),
    ("accuracy of a regression", lambda t: pn.evaluate(pn.Dense(2, 1), images(4)[:, :2], np.zeros((4, 1), F32),
                                                       pn.MSELoss(), metrics=("accuracy",)), ValueError,
     r"with MSELoss: a regression's outputs are not classes.*'categorical_accuracy'"),
    ("fit(x, y) with positional epochs", lambda t: pn.fit(pn.Dense(2, 3), pn.CrossEntropyLoss(), pn.optim.SGD(
        pn.Dense(2, 3).parameters(), lr=0.1), np.zeros((4, 2), F32), np.zeros(4, np.int64), 5), TypeError,
     r"takes the rest by keyword.*epochs=10, batch_size=32"),
    ("fit on x without y", lambda t: pn.fit(pn.Dense(2, 3), pn.CrossEntropyLoss(), pn.optim.SGD(
        pn.Dense(2, 3).parameters(), lr=0.1), np.zeros((4, 2), F32)), TypeError,
     r"without targets.*pn.DataLoader\(x, y, batch_size=32, shuffle=True, device=model.device\)"),
    ("loader in another dtype", lambda t: pn.evaluate(pn.Dense(2, 3, dtype="float64"), pn.DataLoader(
        np.zeros((4, 2)), np.zeros(4, np.int64))), TypeError,
     r"model computes in float64 but the loader delivers float32 batches.*dtype='float64'"),
    ("loss value as the gradient", lambda t: _backward_of_loss_value(), pn.ShapeError,
     r"0-d array, the loss's value.*model.backward\(loss_fn.backward\(\)\)"),
    ("loss_value.backward()", lambda t: pn.MSELoss()(np.zeros((2, 1), F32), np.ones((2, 1), F32)).backward(),
     TypeError, r"no autograd graph.*model.backward\(loss_fn.backward\(\)\)"),
    ("a callback class, not a callback", lambda t: fit_with(callbacks=[pn.EarlyStopping]), TypeError,
     r"callbacks got the class EarlyStopping, not a callback: create one, callbacks=\[pn.EarlyStopping\(...\)\]"),
    ("fit in Keras' order", lambda t: pn.fit(pn.Dense(2, 3), np.zeros((4, 2), F32), np.zeros(4, np.int64), epochs=1),
     TypeError, r"fit got a numpy.ndarray of shape \(4, 2\) where the loss goes.*pn.fit\(model, "
                r"pn.CrossEntropyLoss\(\), pn.optim.Adam\(model.parameters\(\)\), x, y, epochs=10\)"),
    ("EarlyStopping on a name of no direction", lambda t: pn.EarlyStopping("lr"), ValueError,
     r"cannot tell whether 'lr' should go down or up: pass mode='min' or mode='max'"),
    ("a Dataset with y", lambda t: pn.DataLoader(pn.ArrayDataset(images()), np.zeros(4)), TypeError,
     r"the dataset holds its targets; drop y"),
    ("seed negative", lambda t: pn.seed(-1), ValueError, r"non-negative int"),
    ("gradcheck in float32", lambda t: pn.gradcheck(pn.Dense(2, 2), np.zeros((1, 2), F32)), TypeError,
     r"needs float64.*dtype='float64'"),
    ("gradcheck on NaN", lambda t: pn.gradcheck(pn.Dense(2, 2, dtype="float64"), np.full((1, 2), np.nan)),
     pn.NonFiniteError, r"non-finite values in the input"),
    # -- checkpoints --------------------------------------------------------------------------------------------
    ("checkpoint of another architecture", lambda t: pn.load(ckpt(t), pn.Sequential(pn.Dense(4, 9), pn.ReLU(),
                                                                                       pn.Dense(9, 3))),
     pn.CheckpointError, r"'0.weight' has shape \(4, 8\) in the saved state but \(4, 9\)"),
    ("truncated checkpoint", lambda t: pn.load(_truncate(ckpt(t)), pn.Sequential(pn.Dense(4, 8), pn.ReLU(),
                                                                                 pn.Dense(8, 3))),
     pn.CheckpointError, r"truncated or corrupt.*earlier checkpoint"),
    ("optimizer of another type", lambda t: _load_into_adam(ckpt(t)), pn.CheckpointError,
     r"for SGD, not Adam: create an SGD"),
    ("a plain npz", lambda t: pn.load(_plain_npz(t), pn.Dense(2, 2)), pn.CheckpointError,
     r"not a portanet checkpoint.*load_state_dict"),
    ("missing checkpoint", lambda t: pn.load(t / "nope.npz", pn.Dense(2, 2)), FileNotFoundError,
     r"no checkpoint at"),
    # -- dataset files -------------------------------------------------------------------------------------------
    ("corrupt gz", lambda t: read_idx(_corrupt_gz(t)), pn.DatasetError, r"corrupt or truncated gzip.*delete it"),
    ("wrong IDX magic", lambda t: read_idx(write_bad_idx(t, lambda b: b"\x12\x34" + b[2:])), pn.DatasetError,
     r"not an IDX file: its magic number is 0x12340803"),
    ("IDX header counts disagree", lambda t: read_idx(write_bad_idx(t, lambda b: b[:4] + (9).to_bytes(4, "big")
                                                                   + b[8:])), pn.DatasetError,
     r"header promises 9 x 28 x 28 values"),
    ("truncated IDX", lambda t: read_idx(write_bad_idx(t, lambda b: b[:-100])), pn.DatasetError, r"is truncated"),
]


def _backward_of_loss_value():
    model = pn.Sequential(pn.Dense(2, 3))
    loss_fn = pn.CrossEntropyLoss()
    model.backward(loss_fn(model(np.zeros((2, 2), F32)), np.zeros(2, np.int64)))


def _truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _load_into_adam(path):
    m = pn.Sequential(pn.Dense(4, 8), pn.ReLU(), pn.Dense(8, 3))
    pn.load(path, m, pn.optim.Adam(m.parameters()))


def _plain_npz(tmp_path):
    np.savez(tmp_path / "plain.npz", w=np.zeros(3))
    return tmp_path / "plain.npz"


def _corrupt_gz(tmp_path):
    p = tmp_path / "x-idx3-ubyte.gz"
    write_idx(p, np.zeros((50, 28, 28), np.uint8))
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw[:-8]))
    return p


if not NO_GPU:  # pragma: no cover - only where CUDA works
    CASES = [c for c in CASES if c[0] != "gpu without cuda"]
else:
    CASES.append(("torch cuda without cuda", lambda t: pn.device("torch:cuda:0"), pn.DeviceUnavailableError,
                  r"use device='torch:cpu'"))
    CASES.append(("gpu without cuda", lambda t: pn.device("gpu"), pn.DeviceUnavailableError,
                  r"device='gpu' needs CuPy and a CUDA device.*(pip install 'portanet\[gpu\]'|reports:)"))
    CASES.append(("gpu:1 without cuda", lambda t: pn.Dense(2, 2, device="gpu:1"), pn.DeviceUnavailableError,
                  r"device='cpu'"))

LIBRARY_MODULES = ("numpy", "array_api_strict", "torch", "cupy", "array_api_compat")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, tmp_path):
    name, action, exc, pattern = case
    with pytest.raises(exc, match=pattern) as info:
        action(tmp_path)
    # raised by portanet (or Python's own file handling), not from deep inside an array library
    frames = traceback.extract_tb(info.value.__traceback__)
    raiser = frames[-1].filename
    assert not any(f"/{lib}/" in raiser for lib in LIBRARY_MODULES), f"{name}: raised inside {raiser}"


def test_battery_is_large_enough():
    assert len(CASES) >= 40
