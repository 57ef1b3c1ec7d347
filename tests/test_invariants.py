"""ARCHITECTURE.md invariant 1: compute code under portanet/ names no array library.

Only host-side I/O (datasets/, io.py, data.py) may import NumPy; backends/ is where libraries live."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "portanet"
HOST_IO = {"io.py", "data.py"}
LIBRARIES = {"numpy", "cupy", "torch", "jax", "array_api_strict"}


def _imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_compute_modules_import_no_array_library():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "datasets" or rel.name in HOST_IO:
            continue
        bad = LIBRARIES.intersection(_imports(path))
        if bad:
            offenders.append(f"{rel}: {', '.join(sorted(bad))}")
    assert not offenders, "compute modules import an array library:\n" + "\n".join(offenders)


def test_the_check_catches_an_offender(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("import numpy as np\nfrom torch import nn\n")
    assert set(_imports(f)) == {"numpy", "torch"}
