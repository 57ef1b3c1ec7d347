"""Each example runs for one quick epoch on small data and exits 0; each says what it needs and what it does."""
import argparse
import importlib.util
import os
import re
import subprocess
import sys
import pathlib

import numpy as np
import pytest

from example_cli import SCRIPTS, parser_of
from portanet.datasets import write_idx

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _write_set(d, seed, mark):
    """The four IDX files of a 300 / 100 image stand-in for MNIST's files in ``d``: faint noise, on which
    ``mark(x, y)`` draws each image's class."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for stem, n in (("train", 300), ("t10k", 100)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
        mark(x, y)
        write_idx(d / f"{stem}-images-idx3-ubyte.gz", x)
        write_idx(d / f"{stem}-labels-idx1-ubyte.gz", y)
    return d


def write_images(d, seed=0):
    """A stand-in for MNIST: a bright row segment per class."""
    def mark(x, y):
        x[np.arange(len(y)), y * 2 + 3, 5:20] = 255
    return _write_set(d, seed, mark)


def write_squares(d, seed=0):
    """A stand-in for Fashion-MNIST, learnable through the augmentation of fashion_resnet.py and its global pooling:
    each image holds a centred bright square whose size gives the class (shifts and mirrors keep it; write_images'
    marks tell the class by their row only)."""
    def mark(x, y):
        for i, half in enumerate(2 + y.astype(int)):
            x[i, 14 - half:14 + half, 14 - half:14 + half] = 255
    return _write_set(d, seed, mark)


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="module")
def tiny_fashion(tmp_path_factory):
    return write_squares(tmp_path_factory.mktemp("fashion"))


@pytest.fixture
def offline(tmp_path):
    """An environment where MNIST is nowhere and cannot be downloaded (every request goes to a closed port), and
    $PORTANET_DATA holds a small Fashion-MNIST."""
    data = tmp_path / "data"
    write_images(data / "fashion-mnist", seed=1)
    dead = "http://127.0.0.1:9"
    return {"PORTANET_DATA": str(data), "XDG_CACHE_HOME": str(tmp_path / "cache"), "http_proxy": dead,
            "https_proxy": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "no_proxy": "", "NO_PROXY": ""}


@pytest.fixture
def no_matplotlib(tmp_path):
    """PYTHONPATH that makes `import matplotlib` fail, as where it is not installed."""
    fake = tmp_path / "fake" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named matplotlib (test stand-in)')\n")
    return {"PYTHONPATH": str(fake.parent)}


def run(*args, timeout=240, env=None, ok=True):
    env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    r = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
                       cwd=ROOT)
    if ok:
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout
    return r


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


def test_fashion_resnet_and_resume(tiny_fashion, tmp_path):
    ckpt = tmp_path / "resnet.npz"
    args = ("--data-dir", tiny_fashion, "--checkpoint", ckpt, "--verbose", "0", "--batch-size", "50")
    out = run(ROOT / "examples/fashion_resnet.py", "--epochs", "1", *args)
    assert "300 training / 100 test images on cpu; sgd lr=0.1 (cosine over 1 epochs)" in out
    out = run(ROOT / "examples/fashion_resnet.py", "--epochs", "3", *args)      # the schedule resumes with the rest
    assert "resumed from" in out and "after epoch 1; 2 to go" in out
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"test accuracy: \d+\.\d\d%", last) and float(last[15:-1]) > 50


def test_iris_neuron():
    out = run(ROOT / "examples/iris_neuron.py", "--epochs", "30")
    assert "single neuron" in out and "4-8-3 network" in out


def test_logic_gates():
    out = run(ROOT / "examples/logic_gates.py", "--epochs", "2000")
    assert "cannot represent XOR" in out and "XOR learned: True" in out


def test_curve_fit(tmp_path):
    out = run(ROOT / "examples/curve_fit.py", "--epochs", "20", "--plot", tmp_path / "fit.png")
    mse = dict(re.findall(r"^(sigmoid|relu) +hidden=20: final MSE (\d+\.\d+)$", out, re.M))
    assert set(mse) == {"sigmoid", "relu"} and all(0 < float(v) < 10 for v in mse.values()), out
    if importlib.util.find_spec("matplotlib"):       # without it: test_curve_fit_without_matplotlib_fits...
        assert f"plot written to {tmp_path / 'fit.png'}" in out
        assert (tmp_path / "fit.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("script", ["mnist_mlp.py", "mnist_classic.py"])
def test_without_mnist_the_mnist_scripts_train_on_fashion_mnist_and_say_so(script, offline):
    r = run(ROOT / "examples" / script, "--epochs", "1", "--verbose", "0", env=offline, ok=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.startswith("note: MNIST was not found and could not be downloaded: training on Fashion-MNIST "
                               "instead (--dataset mnist says where MNIST was looked for; --dataset fashion-mnist "
                               "skips the search)")
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("test accuracy: ")
    if script == "mnist_mlp.py":
        assert lines[0].startswith("fashion-mnist: 300 training / 100 test images on cpu")


@pytest.mark.parametrize("script", ["mnist_mlp.py", "mnist_classic.py"])
def test_asking_for_mnist_offline_names_the_option_that_works(script, offline):
    r = run(ROOT / "examples" / script, "--dataset", "mnist", "--epochs", "1", env=offline, ok=False)
    assert r.returncode == 1 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: mnist not found.")
    assert r.stderr.rstrip().endswith("With this script, --dataset fashion-mnist trains on Fashion-MNIST instead.")


def test_a_plot_without_matplotlib_stops_before_training(tiny_mnist, no_matplotlib):
    r = run(ROOT / "examples/mnist_mlp.py", "--data-dir", tiny_mnist, "--plot", "curves.png", env=no_matplotlib,
            ok=False)
    assert r.returncode == 1 and r.stdout == ""           # nothing trained, nothing printed
    assert r.stderr == ("error: --plot needs matplotlib, which is not installed: pip install 'portanet[plot]' "
                        "(or run without --plot)\n")


def test_curve_fit_without_matplotlib_fits_and_says_why_there_is_no_plot(tmp_path, no_matplotlib):
    r = run(ROOT / "examples/curve_fit.py", "--epochs", "5", "--plot", tmp_path / "fit.png", env=no_matplotlib,
            ok=False)
    assert r.returncode == 0 and "sigmoid" in r.stdout and "plot written" not in r.stdout
    assert r.stderr.startswith("note: matplotlib is not installed (pip install 'portanet[plot]')")
    assert not (tmp_path / "fit.png").exists()


def test_mnist_mlp_writes_its_plot(tiny_mnist, tmp_path):
    pytest.importorskip("matplotlib")
    out = run(ROOT / "examples/mnist_mlp.py", "--data-dir", tiny_mnist, "--epochs", "1", "--verbose", "0",
              "--plot", tmp_path / "curves.png")
    assert f"curves written to {tmp_path / 'curves.png'}" in out
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_is_whole_sentences_with_defaults(script):
    p = parser_of(script)
    doc = (ROOT / "examples" / script).read_text().split('"""')[1].strip()
    assert p.description == doc                       # the whole docstring, not its first line cut mid-sentence
    assert isinstance(p.formatter_class, type) and issubclass(p.formatter_class, argparse.HelpFormatter)
    formatter = p._get_formatter()
    for action in p._actions:
        if action.dest == "help":
            continue
        text = action.help or ""
        assert text[:1].isupper() or text[:1].isdigit(), (action.dest, text)
        assert text.rstrip().endswith("."), (action.dest, text)
        shown = formatter._get_help_string(action)
        if action.default is not None and action.default is not False:
            assert "%(default)s" in shown, action.dest      # every default is printed
    usage = run(ROOT / "examples" / script, "--help")
    assert " ".join(doc.split()) in " ".join(usage.split()) and "(default: cpu)" in usage


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_device_is_one_clear_line(script):
    r = subprocess.run([sys.executable, ROOT / "examples" / script, "--device", "tpu"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("error: unknown device 'tpu'") and "Traceback" not in r.stderr


@pytest.mark.parametrize("script", ["mnist_mlp.py", "mnist_cnn.py", "fashion_resnet.py", "mnist_classic.py"])
@pytest.mark.parametrize("value", ["0", "-5", "ten"])
def test_limit_takes_a_positive_count(script, value, capsys):
    """--limit 0 trained on all 60000 images and --limit -5 on all but the last five: argparse refuses both."""
    p = parser_of(script)
    with pytest.raises(SystemExit):
        p.parse_args(["--limit", value])
    assert f"argument --limit: must be a positive whole number, got {value}" in capsys.readouterr().err
    assert p.parse_args(["--limit", "300"]).limit == 300


@pytest.mark.parametrize("script", ["mnist_mlp.py", "mnist_cnn.py", "fashion_resnet.py", "mnist_classic.py"])
def test_batch_size_takes_a_positive_count(script, capsys):
    """--batch-size 0 ended in the DataLoader's traceback after the data had loaded: argparse refuses it."""
    p = parser_of(script)
    with pytest.raises(SystemExit):
        p.parse_args(["--batch-size", "0"])
    assert "argument --batch-size: must be a positive whole number, got 0" in capsys.readouterr().err
    assert p.parse_args(["--batch-size", "64"]).batch_size == 64
