"""What fit, evaluate and predict accept as data, turned into loaders on the model's device and dtype.

    a DataLoader                     used as it is (it must deliver on the model's device, in its dtype)
    arrays x, y  or  a pair (x, y)   a DataLoader is built: DataLoader(x, y, batch_size, shuffle, device=model.device,
                                     dtype=the model's)
    a Dataset (ArrayDataset, or anything with __len__ and __getitem__ that is not a list, tuple or array)
                                     likewise, DataLoader(dataset, ...)
    any other iterable of (xb, yb)   used as it is; its first batch is checked
"""
from __future__ import annotations

from ._numbers import is_int, is_real
from ._words import a as _a
from .data import DataLoader
from .errors import DeviceMismatchError, ShapeError

LOADER_LINE = "pn.DataLoader(x, y, batch_size=32, shuffle=True, device=model.device)"


def is_array(a) -> bool:
    """An array of some library (NumPy, CuPy, torch, array-api-strict) with at least one axis."""
    if not (hasattr(a, "__array_namespace__") or hasattr(a, "__array__")):
        return False
    return getattr(a, "ndim", 0) >= 1 and hasattr(a, "dtype")


def is_targets(a) -> bool:
    """Something that can be y: an array or a list/tuple of numbers or rows."""
    return is_array(a) or (isinstance(a, (list, tuple)) and len(a) > 0 and not isinstance(a[0], (tuple, str)))


def is_pair(a) -> bool:
    """(x, y) or (x,) given where a loader goes: a tuple whose first item is an array (a list of arrays may be
    a list of batches)."""
    return isinstance(a, tuple) and len(a) in (1, 2) and is_array(a[0]) and \
        (len(a) == 1 or a[1] is None or is_targets(a[1]))


def refuse_weights(data, what):
    """Keras' (x, y, sample_weight) where data goes: a TypeError naming (x, y), not an error about its batches."""
    if isinstance(data, tuple) and len(data) == 3 and is_array(data[0]) and (data[1] is None or is_targets(data[1])):
        raise TypeError(f"{what} got a tuple of 3, Keras' (x, y, sample_weight): portanet takes no sample weights "
                        "(every sample counts alike); pass (x, y)")


def is_dataset(a) -> bool:
    return (hasattr(a, "__getitem__") and hasattr(a, "__len__") and not isinstance(a, (list, tuple, str, dict))
            and not is_array(a) and not isinstance(a, DataLoader))


def kind(data, y=None) -> str:
    """'loader', 'arrays', 'dataset', 'batches' (another iterable) or 'unknown'. A list given with y is x's rows."""
    if isinstance(data, DataLoader):
        return "loader"
    if is_array(data) or is_pair(data) or (y is not None and is_targets(data)):
        return "arrays"
    if is_dataset(data):
        return "dataset"
    if hasattr(data, "__iter__") and not isinstance(data, (str, bytes, dict)) and not is_int(data):
        return "batches"
    return "unknown"


def brief(a) -> str:
    """A short description for messages: never the array itself."""
    if is_array(a) or hasattr(a, "shape"):
        return f"{_a(type(a).__module__.split('.')[0] + '.' + type(a).__name__)} of shape {tuple(a.shape)}"
    if isinstance(a, (list, tuple)):
        return f"a {type(a).__name__} of {len(a)} items"
    text = repr(a)
    return f"{type(a).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def model_dtype(model) -> str:
    """The name of the float dtype the model computes in: its parameters' (the first float one), else float32."""
    return model.device.dtype_name(model._param_dtype())


def check_loader(loader, model, what):
    """A DataLoader must deliver batches where the model is, in the dtype it computes in."""
    if not isinstance(loader, DataLoader):
        return
    if loader.device != model.device:
        raise DeviceMismatchError(f"model is on {model.device} but the loader delivers batches on {loader.device} "
                                  f"({what} data): pass device=model.device to the DataLoader")
    want = model_dtype(model)
    have = loader.device.dtype_name(loader.dtype)
    if model.parameters() and have != want:
        raise TypeError(f"model computes in {want} but the loader delivers {have} batches ({what} data): pass "
                        f"dtype='{want}' to the DataLoader (portanet never converts silently)")


def _xy(data, y, what):
    """(x, y) from arrays given as data (+ y) or as a pair."""
    if is_pair(data):
        if y is not None:
            raise TypeError(f"{what} got (x, y) as one pair and y again: give the pair alone, or x and y")
        return data[0], (data[1] if len(data) == 2 else None)
    return data, y


def build(model, data, y, batch_size, shuffle, what, drop_last=False):
    """A DataLoader over arrays x, y (or a pair as data) or a Dataset, on the model's device and dtype."""
    if not is_int(batch_size) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {brief(batch_size)}")
    if kind(data, y) == "dataset":
        if y is not None:
            raise TypeError(f"{what} got {_a(type(data).__name__)} and y: a Dataset yields its own targets; drop y")
        x = data
    else:
        x, y = _xy(data, y, what)
    return DataLoader(x, y, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, device=model.device,
                      dtype=model_dtype(model))


def fit_loaders(model, data, y, batch_size, shuffle, drop_last, validation, validation_split):
    """fit's (train_loader, val_loader) from what it was given (module docstring)."""
    refuse_weights(data, "fit")
    refuse_weights(validation, "fit's validation_data")
    k = kind(data, y)
    if k in ("loader", "batches"):
        given = [name for name, v in (("batch_size", batch_size), ("shuffle", shuffle), ("drop_last", drop_last),
                                      ("validation_split", validation_split)) if v is not None]
        if y is not None:
            raise TypeError(f"fit got a loader and y ({brief(y)}): a loader yields (xb, yb) itself; pass y only "
                            "with arrays: fit(model, loss, opt, x, y, epochs=10, batch_size=32)")
        if given:
            raise TypeError(f"fit's {given[0]}= applies when fit builds the loader from arrays; this one is built "
                            f"already: set it on the loader ({LOADER_LINE}), or pass arrays")
        check_loader(data, model, "training")
        train = data
    elif k in ("arrays", "dataset"):
        if k == "arrays":
            x, y = _xy(data, y, "fit")
            if y is None:
                raise TypeError(f"fit got x ({brief(x)}) without targets: fit(model, loss, opt, x, y, epochs=10, "
                                f"batch_size=32), or a loader: {LOADER_LINE}")
            if validation_split is not None:
                if validation is not None:
                    raise TypeError("fit got validation_split= and validation data: give one")
                (x, y), validation = split_last(x, y, validation_split)
            data = x
        elif validation_split is not None:
            raise TypeError("validation_split= needs arrays x, y: split a Dataset yourself")
        train = build(model, data, y, 32 if batch_size is None else batch_size,
                      True if shuffle is None else bool(shuffle), "fit", bool(drop_last))
    else:
        raise TypeError(f"fit needs training data and got {brief(data)}: pass arrays, fit(model, loss, opt, x, y, "
                        f"epochs=10, batch_size=32), or a loader, {LOADER_LINE}")
    val = None
    if validation is not None:
        built = kind(validation) in ("arrays", "dataset")    # fit's batch_size serves them; a loader keeps its own
        val = eval_loader(model, validation, None, batch_size if built else None, "validation")
    return train, val


def eval_loader(model, data, y, batch_size, what):
    """A loader for evaluate/predict or fit's validation data: a DataLoader or iterable as it is, arrays or a
    Dataset through a DataLoader (``batch_size``, default 256; never shuffled)."""
    refuse_weights(data, what)
    k = kind(data, y)
    if k in ("loader", "batches"):
        if y is not None:
            raise TypeError(f"{what} got a loader and y ({brief(y)}): a loader yields (xb, yb) itself; pass y only "
                            "with arrays x, y")
        if batch_size is not None:
            raise TypeError(f"{what}'s batch_size= applies to arrays; this loader is built already: set it there")
        check_loader(data, model, what)
        return data
    if k == "arrays":
        x, y = _xy(data, y, what)
        if y is None:
            raise TypeError(f"{what} got x ({brief(x)}) without targets: pass evaluate(model, x, y), (x, y), or a "
                            f"loader: {LOADER_LINE}")
        data = x
    if k in ("arrays", "dataset"):
        return build(model, data, y, 256 if batch_size is None else batch_size, False, what)
    raise TypeError(f"{what} needs data and got {brief(data)}: pass arrays (x, y) or a loader, {LOADER_LINE}")


def split_last(x, y, fraction):
    """Keras' validation_split: the last ``fraction`` of the samples (before any shuffling) are held out."""
    if not is_real(fraction) or not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_split must be a fraction in (0, 1), got {brief(fraction)}")
    n = len(x)
    if len(y) != n:
        raise ShapeError(f"x has {n} samples but y has {len(y)}: they must match one to one")
    cut = n - int(n * fraction)
    if cut in (0, n):
        raise ValueError(f"validation_split={fraction} of {n} samples leaves an empty split")
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def batches(loader, what):
    """The loader itself when it is a DataLoader; any other iterable through a check that its first batch is
    (xb, yb)."""
    if isinstance(loader, DataLoader):
        return loader
    return _checked(loader, what)


def _checked(loader, what):
    first = True
    for batch in loader:
        if first:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise TypeError(f"{what} needs (xb, yb) batches from its loader, but it yielded {brief(batch)}: "
                                f"pass arrays x, y, or a loader: {LOADER_LINE}")
            first = False
        yield batch
