"""MNIST and Fashion-MNIST: 28x28 uint8 images and int64 labels from IDX files.

Looked for, in order: ``root``, $PORTANET_DATA/<name>, $PORTANET_DATA, ~/.cache/portanet/<name>, and for
Fashion-MNIST Debian's /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist).
Missing files are downloaded into ``root`` (or the cache) when the network allows, and kept only when
their SHA-256 matches the published one.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
import urllib.error
import urllib.request

import numpy as np

from ..errors import DatasetError
from .idx import read_idx

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

SOURCES = {
    "mnist": {
        "mirrors": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        "sha256": {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        "system": (),
    },
    "fashion-mnist": {
        "mirrors": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        "sha256": {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
        "system": ("/usr/share/datasets/fashion-mnist",),
    },
}

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "portanet"


def search_dirs(name, root=None):
    dirs = []
    if root is not None:
        dirs.append(pathlib.Path(root))
    env = os.environ.get("PORTANET_DATA")
    if env:
        dirs += [pathlib.Path(env) / name, pathlib.Path(env)]
    dirs.append(cache_dir() / name)
    dirs += [pathlib.Path(p) for p in SOURCES[name]["system"]]
    return dirs


def _find(directory: pathlib.Path, stem: str):
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def locate(name, root=None):
    """The first searched directory holding all four files, as {stem: path}; else None."""
    for d in search_dirs(name, root):
        found = {stem: _find(d, stem) for stem in FILES}
        if all(found.values()):
            return found
    return None


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(name, target: pathlib.Path, timeout=30.0):
    """Fetch the four .gz files into ``target``, verifying SHA-256. A file whose checksum differs is
    deleted and reported; a network failure leaves nothing behind. Returns {stem: path}."""
    src = SOURCES[name]
    target.mkdir(parents=True, exist_ok=True)
    out = {}
    for stem in FILES:
        fname = f"{stem}.gz"
        dest = target / fname
        if dest.is_file() and sha256(dest) == src["sha256"][fname]:
            out[stem] = dest
            continue
        errors = []
        for mirror in src["mirrors"]:
            fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{fname}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f, urllib.request.urlopen(mirror + fname, timeout=timeout) as r:
                    for chunk in iter(lambda: r.read(1 << 20), b""):
                        f.write(chunk)
                digest = sha256(tmp)
                if digest != src["sha256"][fname]:
                    os.unlink(tmp)
                    raise DatasetError(f"{mirror + fname} has SHA-256 {digest}, expected {src['sha256'][fname]}: "
                                       "the download was deleted (corrupt transfer or a changed mirror)")
                os.replace(tmp, dest)
                out[stem] = dest
                break
            except DatasetError as e:
                errors.append(str(e))
            except (OSError, urllib.error.URLError, TimeoutError) as e:
                errors.append(f"{mirror + fname}: {getattr(e, 'reason', e)}")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        if stem not in out:
            raise DatasetError(f"could not download {fname}: " + "; ".join(errors))
    return out


def _load_split(images_path, labels_path):
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(f"{images_path} should hold uint8 images (n, height, width), found {images.dtype} "
                           f"{images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(f"{labels_path} should hold uint8 labels (n,), found {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels: "
                           "the two files of a split must come from the same set")
    return images, labels.astype(np.int64)


def _load(name, root, download_ok):
    found = locate(name, root)
    reason = "downloading was not allowed (download=False)"
    if found is None and download_ok:
        target = pathlib.Path(root) if root is not None else cache_dir() / name
        try:
            found = download(name, target)
        except DatasetError as e:
            reason = str(e)
    if found is None:
        dirs = "\n  ".join(str(d) for d in search_dirs(name, root))
        alt = ("install Debian's copy with `apt-get install dataset-fashion-mnist`" if name == "fashion-mnist" else
               "use Fashion-MNIST, which Debian packages for offline use (`apt-get install dataset-fashion-mnist`, "
               "then load_fashion_mnist())")
        raise DatasetError(f"{name} not found. It needs {', '.join(f + '[.gz]' for f in FILES)} in one of:\n  {dirs}\n"
                           f"Download failed: {reason}.\nOffline, copy the four files into one of those directories "
                           f"(or point PORTANET_DATA at them), or {alt}.")
    train = _load_split(found[FILES[0]], found[FILES[1]])
    test = _load_split(found[FILES[2]], found[FILES[3]])
    return train, test


def load_mnist(root=None, download=True):
    """((x_train, y_train), (x_test, y_test)): uint8 (n, 28, 28) images, int64 labels."""
    return _load("mnist", root, download)


def load_fashion_mnist(root=None, download=True):
    """Fashion-MNIST, same format as MNIST; labels name FASHION_CLASSES."""
    return _load("fashion-mnist", root, download)
