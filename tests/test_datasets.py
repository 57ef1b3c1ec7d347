"""IDX reading on files the tests write, the search path, the offline error, and Iris."""
import os

import numpy as np
import pytest

import portanet as pn
from portanet.datasets import mnist, read_idx, write_idx


def _write_set(d, n_train=12, n_test=5, gz=True):
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    data = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(d / f"{stem}-images-idx3-ubyte{ext}", imgs)
        write_idx(d / f"{stem}-labels-idx1-ubyte{ext}", labels)
        data[stem] = (imgs, labels)
    return data


@pytest.mark.parametrize("gz", [True, False])
def test_reads_a_small_set_from_root(tmp_path, gz):
    data = _write_set(tmp_path, gz=gz)
    (x, y), (xt, yt) = pn.datasets.load_mnist(root=tmp_path, download=False)
    np.testing.assert_array_equal(x, data["train"][0])
    assert y.dtype == np.int64 and x.dtype == np.uint8 and x.shape == (12, 28, 28) and xt.shape == (5, 28, 28)
    np.testing.assert_array_equal(yt, data["t10k"][1])


def test_search_path_uses_portanet_data(tmp_path, monkeypatch):
    (tmp_path / "fashion-mnist").mkdir()
    _write_set(tmp_path / "fashion-mnist", n_train=3)
    monkeypatch.setenv("PORTANET_DATA", str(tmp_path))
    (x, _), _ = pn.datasets.load_fashion_mnist(download=False)
    assert len(x) == 3


@pytest.mark.parametrize("name,mutate,gz,message", [
    ("invalid type code", lambda raw: b"\x00\x00\x07\x03" + b"\x00" * 16, False, "magic number is 0x00000703"),
    ("not IDX at all", lambda raw: b"PK\x03\x04" + b"\x00" * 16, False, "not an IDX file"),
    ("truncated payload", lambda raw: raw[:-10], False, r"truncated: its header promises 4 x 28 x 28"),
    ("overlong payload", lambda raw: raw + b"\x00", False, "longer than its header says"),
    ("truncated header", lambda raw: raw[:7], False, "truncated inside its header"),
    ("truncated gzip", lambda raw: raw[: len(raw) // 2], True, "corrupt or truncated gzip"),
])
def test_bad_idx_files(tmp_path, name, mutate, gz, message):
    p = tmp_path / ("x-idx3-ubyte.gz" if gz else "x-idx3-ubyte")
    write_idx(p, np.zeros((4, 28, 28), np.uint8))
    p.write_bytes(mutate(p.read_bytes()))
    with pytest.raises(pn.DatasetError, match=message):
        read_idx(p)


def test_image_and_label_counts_must_agree(tmp_path):
    _write_set(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(11, np.uint8))
    with pytest.raises(pn.DatasetError, match="holds 12 images but .* holds 11 labels"):
        pn.datasets.load_mnist(root=tmp_path, download=False)


def test_offline_error_names_files_dirs_and_alternative(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PORTANET_DATA", raising=False)
    with pytest.raises(pn.DatasetError) as e:
        pn.datasets.load_mnist(root=tmp_path, download=False)
    msg = str(e.value)
    for stem in mnist.FILES:
        assert stem in msg
    assert str(tmp_path) in msg and "dataset-fashion-mnist" in msg


def test_download_verifies_sha256_and_deletes_a_bad_file(tmp_path, monkeypatch):
    """A 'mirror' on the local filesystem serves a file whose checksum is wrong."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _write_set(mirror)
    good = {f"{s}.gz": mnist.sha256(mirror / f"{s}.gz") for s in mnist.FILES}
    bad = dict(good, **{"t10k-labels-idx1-ubyte.gz": "0" * 64})
    monkeypatch.setitem(mnist.SOURCES, "mnist", {"mirrors": (mirror.as_uri() + "/",), "sha256": bad, "system": ()})
    target = tmp_path / "dl"
    with pytest.raises(pn.DatasetError, match="SHA-256 .* was deleted"):
        mnist.download("mnist", target)
    assert not (target / "t10k-labels-idx1-ubyte.gz").exists()
    assert not [f for f in os.listdir(target) if f.endswith(".part")]
    monkeypatch.setitem(mnist.SOURCES, "mnist", {"mirrors": (mirror.as_uri() + "/",), "sha256": good, "system": ()})
    (x, _), _ = pn.datasets.load_mnist(root=target)
    assert x.shape == (12, 28, 28)


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_is_found():
    (x, y), (xt, yt) = pn.datasets.load_fashion_mnist(download=False)
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert np.bincount(y).tolist() == [6000] * 10


def test_iris_ships_with_the_package():
    x, y = pn.datasets.load_iris()
    assert x.shape == (150, 4) and np.bincount(y).tolist() == [50, 50, 50]
    np.testing.assert_allclose(x[0], [5.1, 3.5, 1.4, 0.2])
