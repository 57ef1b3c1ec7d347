#!/usr/bin/env python3
"""Worst gradcheck error (float64) of every layer and loss, over numpy, strict CPU, strict device1 and torch.

    python benchmarks/gradcheck_table.py
"""
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

import portanet as pn  # noqa: E402
from conftest import Ctx  # noqa: E402
from layer_specs import LAYERS  # noqa: E402
from test_layers import _randomize  # noqa: E402
from test_losses import LOSSES, _data  # noqa: E402

SPECS = ("cpu", "strict:CPU_DEVICE", "strict:device1", "torch:cpu")


def main():
    print("| layer or loss | worst relative error |\n|---|---|")
    for name, make, _, shape in LAYERS:
        worst = 0.0
        for spec in SPECS:
            ctx = Ctx(spec, "float64")
            pn.seed(1234)
            layer = make(ctx.device, "float64")
            _randomize(layer, ctx)
            worst = max(worst, max(pn.gradcheck(layer, ctx.randn(*shape, seed=1)).values()))
        print(f"| {name} | {worst:.1e} |")
    for name, make, _, kind in LOSSES:
        worst = 0.0
        for spec in SPECS:
            ctx = Ctx(spec, "float64")
            p, t = _data(kind, np.random.default_rng(4))
            worst = max(worst, pn.gradcheck(make("mean"), (ctx.asarray(p), ctx.asarray(t)))["input"])
        print(f"| {name} (loss) | {worst:.1e} |")


if __name__ == "__main__":
    main()
