"""Each example runs for one quick epoch on small data and exits 0."""
import os
import subprocess
import sys
import pathlib

import numpy as np
import pytest

from portanet.datasets import write_idx

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    d = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for stem, n in (("train", 300), ("t10k", 100)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
        x[np.arange(n), y * 2 + 3, 5:20] = 255           # a learnable mark per class
        write_idx(d / f"{stem}-images-idx3-ubyte.gz", x)
        write_idx(d / f"{stem}-labels-idx1-ubyte.gz", y)
    return d


def run(*args, timeout=240):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
                       cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_mnist_mlp_and_resume(tiny_mnist, tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    out = run(ROOT / "examples/mnist_mlp.py", "--data-dir", tiny_mnist, "--epochs", "1", "--checkpoint", ckpt,
              "--verbose", "0", "--batch-size", "64")
    last = out.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ") and last.endswith("%") and float(last[15:-1]) > 30
    out = run(ROOT / "examples/mnist_mlp.py", "--data-dir", tiny_mnist, "--epochs", "2", "--checkpoint", ckpt,
              "--verbose", "0", "--batch-size", "64")
    assert "resumed from" in out and "after epoch 1; 1 to go" in out
    r = subprocess.run([sys.executable, ROOT / "examples/mnist_mlp.py", "--data-dir", tiny_mnist, "--epochs", "3",
                        "--checkpoint", ckpt, "--optimizer", "sgd"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "optimizer state is for Adam, not SGD" in r.stderr and "Traceback" not in r.stderr


def test_mnist_classic(tiny_mnist):
    out = run(ROOT / "examples/mnist_classic.py", "--data-dir", tiny_mnist, "--epochs", "1", "--verbose", "0")
    assert out.strip().splitlines()[-1].startswith("test accuracy: ")


def test_mnist_cnn(tiny_mnist):
    out = run(ROOT / "examples/mnist_cnn.py", "--data-dir", tiny_mnist, "--epochs", "2", "--lr", "3e-3", "--verbose",
              "0", "--batch-size", "50")
    last = out.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ") and float(last[15:-1]) > 30


def test_iris_neuron():
    out = run(ROOT / "examples/iris_neuron.py", "--epochs", "30")
    assert "single neuron" in out and "4-8-3 network" in out


def test_logic_gates():
    out = run(ROOT / "examples/logic_gates.py", "--epochs", "2000")
    assert "cannot represent XOR" in out and "XOR learned: True" in out


def test_curve_fit(tmp_path):
    out = run(ROOT / "examples/curve_fit.py", "--epochs", "20", "--plot", tmp_path / "fit.png")
    assert "sigmoid" in out and "relu" in out


@pytest.mark.parametrize("script", ["mnist_mlp.py", "mnist_classic.py", "mnist_cnn.py", "iris_neuron.py",
                                    "logic_gates.py", "curve_fit.py"])
def test_help(script):
    assert "--device" in run(ROOT / "examples" / script, "--help")


@pytest.mark.parametrize("script", ["mnist_mlp.py", "mnist_classic.py", "mnist_cnn.py", "iris_neuron.py",
                                    "logic_gates.py", "curve_fit.py"])
def test_unknown_device_is_one_clear_line(script):
    r = subprocess.run([sys.executable, ROOT / "examples" / script, "--device", "tpu"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("error: unknown device 'tpu'") and "Traceback" not in r.stderr
