"""Device-aware mini-batches. Host-side: this file may use NumPy, because host data is NumPy.

``DataLoader(x, y, batch_size, shuffle, device=...)`` yields ``(xb, yb)`` already on the device,
in the model's dtype. uint8 images travel as uint8 and are converted (and scaled by 1/255) on
the device, batch by batch: the same rule for arrays, ArrayDataset and any Dataset (DataLoader's docstring).
"""
from __future__ import annotations

import math

import numpy as np

from . import devices
from . import random as _random
from ._numbers import is_int
from ._words import a as _a
from .backends.kernels import REFUSALS
from .errors import ShapeError


class ArrayDataset:
    """A Dataset over host arrays: ``ds[i] -> (x[i], y[i])``."""

    def __init__(self, x, y=None):
        self.x, self.y = np.asarray(x), (None if y is None else np.asarray(y))
        if self.y is not None and len(self.x) != len(self.y):
            raise ShapeError(f"x has {len(self.x)} samples but y has {len(self.y)}: they must match one to one")

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return (self.x[i], self.y[i]) if self.y is not None else self.x[i]


class DataLoader:
    """Mini-batches on a device.

    x, y           host arrays (x: (n, ...), y: (n,) labels or (n, k) targets), or a Dataset (``__len__``,
                   ``__getitem__`` returning host arrays x_i or pairs (x_i, y_i)) as x with y=None; an ArrayDataset
                   is read as its two arrays, and so is a tuple (x, y) given as x (fit's pair; a list stays a
                   Dataset of samples). Another library's arrays in CPU memory (torch CPU tensors) are used
                   in place through DLPack (a tensor that requires grad as ``t.detach()``: its values); GPU arrays
                   are read back to the host once
    batch_size     samples per batch; the last batch is smaller unless drop_last
    shuffle        a fresh permutation each epoch, drawn on the host from (seed, epoch): the same seed
                   gives the same batches on every backend, and resuming at epoch e needs only e
    device         where batches are delivered (a spec or Device; default: the default device)
    dtype          float dtype of xb (and of yb when y is floating); integer y stays int64
    scale          multiplier applied on the device after conversion; default (None): 1/255 when the samples x
                   are uint8, else 1
    transform      augmentation run on the device per batch (portanet.transforms), e.g.
                   Compose(RandomShift(2), RandomRotation(10)); give it to training loaders only
    placement      "device": upload the dataset once and gather batches there (no per-batch copy);
                   "stream": copy each batch (on CuPy through pinned buffers, asynchronously, one batch
                   ahead); "auto": "device" when the data take under a quarter of the device's free
                   memory (always on CPU backends)

    One conversion rule for every path (arrays, ArrayDataset, a Dataset, "device" or "stream" placement, the
    loader predict and evaluate build): xb arrives in ``dtype``, and uint8 samples are scaled by 1/255 into
    [0, 1] (torchvision's ToTensor does the same); samples of any other dtype (int, bool, float) are converted
    without scaling. A Dataset's sample dtype is read from its first item.
    """

    def __init__(self, x, y=None, batch_size=32, shuffle=False, drop_last=False, seed=None, device=None,
                 transform=None, placement="auto", dtype="float32", scale=None):
        if not is_int(batch_size) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        batch_size = int(batch_size)
        if placement not in ("auto", "device", "stream"):
            raise ValueError(f"placement must be 'auto', 'device' or 'stream', got {placement!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable (x, rng) -> x, got {type(transform).__name__}")
        self.device = devices.device(device)
        self.dtype = self.device.dtype(dtype)
        self.batch_size, self.shuffle, self.drop_last = batch_size, bool(shuffle), bool(drop_last)
        self.transform = transform
        self.seed = _random.next_seed() if seed is None else int(seed)
        self.epoch = 0
        self._dataset = None
        sample_dtype = None
        if isinstance(x, tuple) and len(x) == 2 and y is None and _is_array(x[0]) and \
                (x[1] is None or _is_array(x[1]) or isinstance(x[1], list)):
            x, y = x                             # a pair (x, y), as fit, evaluate and predict read one
        if isinstance(x, ArrayDataset):          # its arrays, with every fast path arrays have
            if y is not None:
                raise TypeError("DataLoader got an ArrayDataset and y: the dataset holds its targets; drop y")
            x, y = x.x, x.y
        # a list with y is x's rows; alone it may be samples (x_i, y_i), so it is read as a Dataset
        if not _is_array(x) and hasattr(x, "__getitem__") and hasattr(x, "__len__") and \
                not (isinstance(x, (list, tuple)) and y is not None):
            if y is not None:
                raise TypeError(f"DataLoader got {_a(type(x).__name__)} (a Dataset) and y: a Dataset yields its own "
                                "targets as (x_i, y_i); drop y")
            self._dataset = x
            self._n = len(x)
            self.x = self.y = None
            placement = "stream"
            if self._n:
                first = x[0]
                sample_dtype = _numeric(np.asarray(first[0] if isinstance(first, tuple) else first),
                                        "Dataset sample x").dtype
        else:
            self.x, self.y = self._host(x, "x"), (None if y is None else self._host(y, "y"))
            self._n = len(self.x)
            if self.y is not None and len(self.y) != self._n:
                raise ShapeError(f"x has {self._n} samples but y has {len(self.y)}: they must match one to one")
            sample_dtype = self.x.dtype
        if self._n == 0:
            raise ValueError("the dataset is empty: a DataLoader needs at least one sample")
        if self.drop_last and self._n < batch_size:
            raise ValueError(f"drop_last=True with {self._n} samples and batch_size={batch_size} leaves no batch: "
                             "use a smaller batch_size or drop_last=False")
        if scale is None:
            scale = 1.0 / 255.0 if sample_dtype == np.uint8 else 1.0
        self.scale = float(scale)
        self.placement = self._choose(placement)
        self._x_dev = self._y_dev = None
        if self.placement == "device":
            self._x_dev = self.device.asarray(self.x)
            self._y_dev = None if self.y is None else self.device.asarray(self._label_host(self.y))

    # -- setup ----------------------------------------------------------------------------
    def _host(self, a, name):
        if isinstance(a, np.ndarray):
            return _numeric(a, name)
        if getattr(a, "requires_grad", False):
            a = a.detach()            # a torch tensor in a graph: its values are the data (no autograd here)
        shared = _cpu_view(a)
        if shared is not None:
            return shared
        if hasattr(a, "__array_namespace__") and not isinstance(a, (list, tuple)):
            dev = devices.device_of(a)
            return dev.to_host(a)
        try:
            a = np.asarray(a)
        except ValueError as e:       # ragged rows
            raise ShapeError(f"DataLoader could not read {name} as one array: its samples differ in shape; give "
                             "every sample the same shape (pad or crop them)") from e
        return _numeric(a, name)

    def _label_host(self, y):
        if y.dtype.kind in "iub":
            return y.astype(np.int64, copy=False)
        if y.dtype.kind == "f":
            return y
        raise TypeError(f"y must hold integer labels or float targets, got {y.dtype}")

    def _choose(self, placement):
        if placement != "auto":
            return placement
        free = self.device.free_memory()
        if free is None:
            return "device"
        nbytes = self.x.nbytes + (0 if self.y is None else self.y.nbytes)
        return "device" if nbytes < free / 4 else "stream"

    # -- iteration ------------------------------------------------------------------------
    def __len__(self):
        return self._n // self.batch_size if self.drop_last else math.ceil(self._n / self.batch_size)

    @property
    def num_samples(self) -> int:
        return self._n

    def set_epoch(self, epoch: int):
        """Make the next iteration draw epoch ``epoch``'s permutation (for resuming)."""
        self.epoch = int(epoch)

    def state_dict(self):
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, sd):
        self.epoch, self.seed = int(sd["epoch"]), int(sd["seed"])

    def _order(self, epoch):
        if not self.shuffle:
            return None
        return np.random.default_rng([self.seed, epoch]).permutation(self._n)

    def label_range(self):
        """(min, max) of integer labels, read on the host (for checking them once, not per step)."""
        if self.y is None or self.y.dtype.kind not in "iub" or self.y.ndim != 1:
            return None
        return int(self.y.min()), int(self.y.max())

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        order = self._order(epoch)
        rng = self.device.rng(_mix(self.seed, epoch)) if self.transform is not None else None
        bs, n = self.batch_size, len(self)
        spans = [(i * bs, min((i + 1) * bs, self._n)) for i in range(n)]
        if self.placement == "device":
            yield from self._device_batches(order, spans, rng)
        else:
            yield from self._streamed_batches(order, spans, rng)

    def _finish(self, xb, yb, rng, converted=False):
        """(xb, yb) as the model takes them: xb in the loader's dtype and scale (unless ``converted`` already),
        float targets in that dtype, then the transform."""
        xp = self.device.xp
        if not converted:
            xb = self._convert(xb)
        if yb is not None and yb.dtype != self.dtype and self.device.is_float(yb.dtype):
            yb = xp.astype(yb, self.dtype)
        if rng is not None:
            xb = self.transform(xb, rng)
        return xb, yb

    def _convert(self, xb):
        xp = self.device.xp
        if xb.dtype != self.dtype:
            scale_u8 = self.device.kernel("scale_u8") if self.scale != 1.0 else None
            if scale_u8 is not None and xb.dtype == np.uint8:
                out = xp.empty(xb.shape, dtype=self.dtype)
                try:   # convert and scale in one pass, the same bits (backends/kernels.py)
                    scale_u8(xb, self.scale, out)
                    return out
                except REFUSALS:
                    pass
            xb = xp.astype(xb, self.dtype)
            if self.scale != 1.0:
                xb *= self.scale
            return xb
        return xb * self.scale if self.scale != 1.0 else xb

    def _device_batches(self, order, spans, rng):
        xp = self.device.xp
        X, Y = self._x_dev, self._y_dev
        idx = None if order is None else self.device.asarray(order)
        take = self.device.kernel("take_scale_u8") if idx is not None and self.x.dtype == np.uint8 else None
        for s, e in spans:
            if idx is None:
                xb, yb, converted = X[s:e, ...], (None if Y is None else Y[s:e, ...]), False
            else:
                ib = idx[s:e]
                yb = None if Y is None else xp.take(Y, ib, axis=0)
                xb = None if take is None else self._take_converted(take, X, ib)
                converted = xb is not None
                if not converted:
                    take = None          # refused once: the same arrays come every batch
                    xb = xp.take(X, ib, axis=0)
            yield self._finish(xb, yb, rng, converted)

    def _take_converted(self, take, X, ib):
        """X[ib] in the loader's dtype and scale, gathered, converted and scaled in one pass by the backend's
        kernel (the same bits as xp.take and _convert; backends/kernels.py), or None where it refuses."""
        out = self.device.xp.empty((ib.shape[0],) + tuple(X.shape[1:]), dtype=self.dtype)
        try:
            take(X, ib, self.scale, out)
        except REFUSALS:
            return None
        return out

    def _host_batch(self, order, s, e):
        ids = np.arange(s, e) if order is None else order[s:e]
        if self._dataset is not None:
            items = [self._dataset[int(i)] for i in ids]
            if isinstance(items[0], tuple):
                return _stack([a for a, _ in items], "x"), self._label_host(_stack([b for _, b in items], "y"))
            return _stack(items, "x"), None
        xb = self.x[s:e] if order is None else np.take(self.x, ids, axis=0)
        yb = None if self.y is None else self._label_host(self.y[s:e] if order is None else np.take(self.y, ids, axis=0))
        return xb, yb

    def _streamed_batches(self, order, spans, rng):
        streamer = self.device.backend.streamer(self.device.native)

        def submit(k):
            xb, yb = self._host_batch(order, *spans[k])
            return streamer.submit(xb), (None if yb is None else streamer.submit(yb))

        pending = submit(0) if spans else None
        for k in range(len(spans)):
            current = pending
            if k + 1 < len(spans):
                pending = submit(k + 1)          # the next batch's copy overlaps this batch's compute
            xh, yh = current
            xb = streamer.collect(xh)
            yb = None if yh is None else streamer.collect(yh)
            yield self._finish(xb, yb, rng)

    def __repr__(self):
        return (f"DataLoader({self._n} samples, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"device={self.device}, placement={self.placement!r})")


def _stack(samples, name):
    """One batch from a Dataset's samples, or a ShapeError naming the shapes that differ (NumPy's own says only
    that they do)."""
    arrays = [np.asarray(a) for a in samples]
    try:
        return np.stack(arrays)
    except ValueError as e:
        shapes = sorted({a.shape for a in arrays})
        raise ShapeError(f"the Dataset's samples differ in shape ({name}: {', '.join(map(str, shapes[:3]))}"
                         f"{' ...' if len(shapes) > 3 else ''}): give every sample the same shape (pad or crop them), "
                         "or, for arrays x and y, pass them as DataLoader(x, y)") from e


def _numeric(a, name):
    """``a`` when it holds numbers (bool, int, uint, float); strings, objects, complex numbers and dates are refused
    by name, before NumPy converts them (or fails to) on some later batch."""
    if a.dtype.kind in "biuf":
        return a
    kinds = {"U": "strings", "S": "bytes", "O": "Python objects", "c": "complex numbers", "M": "dates",
             "m": "time spans"}
    found = kinds.get(a.dtype.kind, f"{a.dtype} values")
    v = name.split()[-1]
    fix = (f"parse numbers first ({v}.astype(np.float32)), or encode categories as integers "
           f"(np.unique({v}, return_inverse=True)[1])" if a.dtype.kind in "USO" else "convert them to real numbers")
    raise TypeError(f"DataLoader's {name} holds {found} ({a.dtype}); it takes numbers (bool, int or float "
                    f"arrays): {fix}")


def _cpu_view(a):
    """An array of another library in CPU memory (a torch CPU tensor, a JAX CPU array) as a NumPy array sharing
    its memory through DLPack, or None (no DLPack, not in CPU memory, or refused: a tensor that requires grad)."""
    if not hasattr(a, "__dlpack_device__") or devices.is_simulated(a):
        return None
    try:
        kind, _ = a.__dlpack_device__()
        return np.from_dlpack(a) if int(kind) == DLPACK_CPU else None
    except (BufferError, RuntimeError, TypeError, ValueError, AttributeError):
        return None


DLPACK_CPU = 1          # DLDeviceType kDLCPU


def _is_array(a) -> bool:
    """An array of some library (NumPy, CuPy, torch, array-api-strict, anything with DLPack), as opposed to a
    Dataset object."""
    return isinstance(a, np.ndarray) or hasattr(a, "__array_namespace__") or hasattr(a, "__dlpack__") or (
        hasattr(a, "__array__") and hasattr(a, "shape") and hasattr(a, "dtype"))


def _mix(seed, epoch):
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**63)


def train_val_split(x, y=None, val_fraction=0.1, seed=None):
    """Shuffle once (seeded) and split off ``val_fraction`` of the samples, on the host.
    Returns (x_train, y_train), (x_val, y_val) (or x_train, x_val without y)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    x = np.asarray(x)
    n = len(x)
    if y is not None and len(y) != n:
        raise ShapeError(f"x has {n} samples but y has {len(y)}: they must match one to one")
    n_val = int(round(n * val_fraction))
    if n_val == 0 or n_val == n:
        raise ValueError(f"val_fraction={val_fraction} of {n} samples leaves an empty split")
    order = np.random.default_rng(_random.next_seed() if seed is None else seed).permutation(n)
    tr, va = order[n_val:], order[:n_val]
    if y is None:
        return x[tr], x[va]
    y = np.asarray(y)
    return (x[tr], y[tr]), (x[va], y[va])


def one_hot(labels, classes, dtype="float32"):
    """(n,) integer labels -> (n, classes) one-hot, on the labels' own device (host for NumPy)."""
    import array_api_compat

    xp = array_api_compat.array_namespace(labels)
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(f"one_hot needs integer labels, got {labels.dtype}")
    dev = array_api_compat.device(labels)
    dt = getattr(xp, dtype) if isinstance(dtype, str) else dtype
    return xp.astype(labels[:, None] == xp.arange(classes, device=dev), dt)
