"""The README's code runs as written (the fit example on a small stand-in for Fashion-MNIST)."""
import pathlib
import re

import numpy as np
import pytest

import portanet as pn

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_two_commands_first():
    text = README.read_text()
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1).split("\n")
    assert first[0].startswith("make demo") and first[1].startswith("make test")


def _block(marker):
    """The README's Python block containing ``marker`` (blocks are found by what they do, not by position)."""
    found = [b for b in BLOCKS if marker in b]
    assert len(found) == 1, f"{len(found)} README blocks contain {marker!r}"
    return found[0]


def test_train_by_hand_example_learns_and_train_step_continues_it(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = {}
    exec(compile(_block("for step in range(100)"), "README-hand-loop", "exec"), space)
    assert float(capsys.readouterr().out.strip()) < 0.1
    before = float(space["loss"])
    exec(compile(_block("pn.TrainStep(model, loss_fn, opt)"), "README-train-step", "exec"), space)
    assert float(space["loss"]) < before and space["out"].shape == (512, 2)


def _small_fashion(monkeypatch):
    rng = np.random.default_rng(0)
    small = ((rng.integers(0, 256, (256, 28, 28), dtype=np.uint8), rng.integers(0, 10, 256)),
             (rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64)))
    monkeypatch.setattr(pn.datasets, "load_fashion_mnist", lambda *a, **k: small)


def test_fit_example_runs_and_so_does_keras_form(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    _small_fashion(monkeypatch)
    space = {}
    code = _block("load_fashion_mnist()").replace("epochs=10", "epochs=2")
    exec(compile(code, "README-fit", "exec"), space)
    assert (tmp_path / "ckpt.npz").exists() and (tmp_path / "curves.png").exists()
    exec(compile(_block("validation_split=0.1").replace("epochs=10", "epochs=1"), "README-keras", "exec"), space)
    assert "val_loss" in space["history"] and len(space["history"]) == 1


def test_cnn_example_builds_and_trains():
    rng = np.random.default_rng(1)
    space = {"pn": pn, "x": rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), "y": rng.integers(0, 10, 64)}
    exec(compile(_block("pn.Conv2d(1, 32, 3, padding=1)"), "README-cnn", "exec"), space)
    model, train = space["model"], space["train"]
    hist = pn.fit(model, pn.CrossEntropyLoss(), pn.optim.Adam(model.parameters()), train, epochs=1, verbose=0)
    assert np.isfinite(hist["loss"][0]) and pn.predict(model, space["x"][:4, None]).shape == (4, 10)


def test_residual_block_example_halves_the_size_and_doubles_the_channels():
    space = {"pn": pn}
    exec(compile(_block("shortcut=pn.Sequential("), "README-residual", "exec"), space)
    y = space["block"](np.random.default_rng(2).standard_normal((2, 32, 8, 8)).astype(np.float32))
    assert tuple(y.shape) == (2, 64, 4, 4)

