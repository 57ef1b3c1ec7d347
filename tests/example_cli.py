"""The examples' argument parsers, read in-process (examples/*.py build theirs inside main)."""
import argparse
import importlib.util
import pathlib
import sys
from unittest import mock

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def load(script):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))        # they import their shared _cli.py as a sibling
    spec = importlib.util.spec_from_file_location(f"example_{script[:-3]}", EXAMPLES / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Stop(Exception):
    pass


def parser_of(script) -> argparse.ArgumentParser:
    """The ArgumentParser ``script`` builds, caught at its parse_args (nothing runs)."""
    module = load(script)
    caught = []

    def catch(self, args=None, namespace=None):
        caught.append(self)
        raise _Stop

    with mock.patch.object(argparse.ArgumentParser, "parse_args", catch):
        try:
            module.main([])
        except _Stop:
            pass
    return caught[0]
