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


def test_train_by_hand_example_learns(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[0], "README-block-1", "exec"), {})
    assert float(capsys.readouterr().out.strip()) < 0.1


def test_fit_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    small = ((rng.integers(0, 256, (256, 28, 28), dtype=np.uint8), rng.integers(0, 10, 256)),
             (rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64)))
    monkeypatch.setattr(pn.datasets, "load_fashion_mnist", lambda *a, **k: small)
    code = BLOCKS[1].replace("epochs=10", "epochs=2")
    exec(compile(code, "README-block-2", "exec"), {})
    assert (tmp_path / "ckpt.npz").exists() and (tmp_path / "curves.png").exists()
