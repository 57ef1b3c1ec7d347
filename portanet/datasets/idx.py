"""The IDX format of MNIST and Fashion-MNIST: a 4-byte magic (0, 0, type, ndim), ndim big-endian
uint32 sizes, then the data. Read from raw or gzipped files with every count checked."""
from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from ..errors import DatasetError

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
          0x0E: np.dtype(">f8")}
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C,
          np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def _read_bytes(path) -> bytes:
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror}") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path} is a corrupt or truncated gzip file ({e}): delete it and download or copy "
                               "it again") from e
    return raw


def read_idx(path) -> np.ndarray:
    """An IDX file (raw or .gz) -> a NumPy array of its dtype and shape (native byte order)."""
    raw = _read_bytes(path)
    name = os.fspath(path)
    if len(raw) < 4:
        raise DatasetError(f"{name} is too short to be an IDX file ({len(raw)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _TYPES or ndim == 0:
        raise DatasetError(f"{name} is not an IDX file: its magic number is 0x{raw[:4].hex()}, expected "
                           "0x000008NN (e.g. 0x00000803 for images, 0x00000801 for labels)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{name} is truncated inside its header ({len(raw)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_TYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(raw) - header
    if payload != expected:
        what = "truncated" if payload < expected else "longer than its header says"
        raise DatasetError(f"{name} is {what}: its header promises {' x '.join(map(str, dims))} values "
                           f"({expected} bytes) but {payload} bytes follow")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True) if dtype.byteorder == ">" else arr.copy()


def write_idx(path, array) -> None:
    """Write a NumPy array as an IDX file (gzipped when the name ends in .gz)."""
    a = np.asarray(array)
    code = _CODES.get(a.dtype.newbyteorder("=")) if a.dtype.byteorder in "<>" else _CODES.get(a.dtype)
    if code is None:
        raise TypeError(f"IDX cannot store {a.dtype}")
    data = struct.pack(">HBB", 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) \
        + a.astype(a.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)
