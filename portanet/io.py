"""Checkpoints: one .npz of plain arrays plus a JSON header. No pickle, atomic writes, device-neutral.

Host-side: this file may use NumPy. ``save`` never moves the model; ``load`` checks everything before
it writes anything, and loads onto whatever device the model is on now.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from ._numbers import is_int, is_real
from .errors import CheckpointError

FORMAT = "portanet-checkpoint"
VERSION = 1
_PREFIXES = ("model/", "optim/", "rng/")


def _plain(value):
    """NumPy's scalars (and 0-d arrays) as the Python numbers JSON takes: np.int64(3) is a number like 3."""
    if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0 and value.dtype.kind in "biuf":
        return value.item()
    if is_int(value):
        return int(value)
    if is_real(value):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def save(path, model, optimizer=None, **extra):
    """Write model (parameters, buffers, dropout RNG states), optimizer (slots, steps, options, schedules)
    and ``extra`` to ``path`` atomically: a temporary file in the same directory is written, flushed,
    fsynced and renamed over ``path``, so ``path`` always holds the previous or the new checkpoint.

    extra: objects with ``state_dict()`` (a DataLoader, to resume its shuffling) are saved by name;
    anything else must be JSON-serialisable (epoch numbers, metrics) and comes back from ``load``.
    """
    path = os.fspath(path)
    arrays = {}
    header = {"format": FORMAT, "version": VERSION, "rng_backends": {}, "objects": {}, "meta": {}}
    for k, v in model.state_dict().items():
        arrays[f"model/{k}"] = np.ascontiguousarray(v)
    for name, gen in model.named_generators():
        arrays[f"rng/{name}"] = gen.get_state()
        header["rng_backends"][name] = gen.backend_name
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars = {}
        for i, slots in sd["state"].items():
            for slot, v in slots.items():
                if isinstance(v, np.ndarray):
                    arrays[f"optim/{i}/{slot}"] = np.ascontiguousarray(v)
                else:
                    scalars.setdefault(str(i), {})[slot] = v
        header["optimizer"] = {"type": sd["type"], "groups": sd["groups"], "schedulers": sd["schedulers"],
                               "scalars": scalars}
    for name, value in extra.items():
        if hasattr(value, "state_dict"):
            header["objects"][name] = value.state_dict()
        else:
            header["meta"][name] = value
    try:
        text = json.dumps(header, allow_nan=True, default=_plain)
    except TypeError as e:
        raise TypeError(f"save() keeps extra values as JSON: {e}. Pass numbers, strings, lists or dicts") from e
    arrays["__header__"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
    return path


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read(path) -> tuple[dict, dict]:
    """(header, arrays) of a checkpoint, validated; nothing is unpickled, ever."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise CheckpointError(f"{path} contains a pickled object array; portanet never unpickles (it could run "
                                  "code). Re-save it with pn.save from the original model") from e
        raise CheckpointError(f"{path} is not a readable checkpoint: {e}") from e
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); it was not written by a "
                              "completed pn.save. Use an earlier checkpoint") from e
    if "__header__" not in arrays:
        raise CheckpointError(f"{path} is an .npz but not a portanet checkpoint (no __header__): "
                              "load plain arrays with numpy.load and model.load_state_dict")
    try:
        header = json.loads(arrays.pop("__header__").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} has a corrupt header: {e}") from e
    if header.get("format") != FORMAT or header.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} is format {header.get('format')} v{header.get('version')}; this portanet "
                              f"reads {FORMAT} up to v{VERSION}")
    for key, a in arrays.items():
        if not key.startswith(_PREFIXES):
            raise CheckpointError(f"{path} holds an unexpected entry '{key}': refusing to load it")
        if a.dtype.kind not in "fiub":
            raise CheckpointError(f"{path}: entry '{key}' has dtype {a.dtype}; checkpoints hold numeric arrays only")
    return header, arrays


def load(path, model, optimizer=None, **objects):
    """Restore a checkpoint into ``model`` (on its current device), ``optimizer`` and named objects
    (e.g. ``loader=train_loader``). Returns the JSON values given to ``save`` (e.g. {"epoch": 3}).
    Everything is validated before anything is written."""
    header, arrays = read(path)
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    opt_state = None
    if optimizer is not None:
        saved = header.get("optimizer")
        if saved is None:
            raise CheckpointError(f"{path} holds no optimizer state; call load(path, model) without the optimizer")
        state = {}
        for k, v in arrays.items():
            if k.startswith("optim/"):
                _, i, slot = k.split("/", 2)
                state.setdefault(i, {})[slot] = v
        for i, slots in saved["scalars"].items():
            state.setdefault(i, {}).update(slots)
        opt_state = {"type": saved["type"], "groups": saved["groups"], "state": state,
                     "schedulers": saved["schedulers"]}
    for name in objects:
        if name not in header["objects"]:
            raise CheckpointError(f"{path} holds no state for '{name}' (it has: "
                                  f"{', '.join(header['objects']) or 'none'})")
    # validate-then-write: load_state_dict checks every key and shape before touching the model
    backup = model.state_dict()
    model.load_state_dict(model_state)
    if opt_state is not None:
        try:
            optimizer.load_state_dict(opt_state)
        except Exception:
            model.load_state_dict(backup)
            raise
    gens = dict(model.named_generators())
    for name, backend in header["rng_backends"].items():
        if name in gens and gens[name].backend_name == backend:
            gens[name].set_state(arrays[f"rng/{name}"])
    for name, obj in objects.items():
        obj.load_state_dict(header["objects"][name])
    return header["meta"]
