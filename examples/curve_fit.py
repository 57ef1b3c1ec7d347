#!/usr/bin/env python3
"""Fit a 1-D curve with one hidden layer of sigmoids, and of ReLUs: a sum of smooth steps versus a
sum of hinges. Saves a PNG comparing both fits.

    python examples/curve_fit.py --epochs 2000 --plot curve_fit.png
"""

import numpy as np

import portanet as pn
from _cli import parser, setup


def target(x):
    return np.sin(3 * x) + 0.3 * x * x


def main(argv=None):
    p = parser(__doc__, epochs=2000)
    p.add_argument("--hidden", type=int, default=20)
    p.add_argument("--plot", default="curve_fit.png")
    args = p.parse_args(argv)
    device = setup(args)
    x = np.linspace(-2, 2, 200, dtype=np.float32)[:, None]
    y = target(x).astype(np.float32)
    fits = {}
    for name, act in (("sigmoid", pn.Sigmoid), ("relu", pn.ReLU)):
        net = pn.Sequential(pn.Dense(1, args.hidden, init="he_normal"), act(), pn.Dense(args.hidden, 1), device=device)
        opt = pn.optim.Adam(net.parameters(), lr=0.01)
        loader = pn.DataLoader(x, y, batch_size=50, shuffle=True, seed=args.seed, device=device)
        hist = pn.fit(net, pn.MSELoss(), opt, loader, epochs=args.epochs, metrics=(), verbose=0)
        fits[name] = pn.predict(net, x, device=device)
        print(f"{name:7s} hidden={args.hidden}: final MSE {hist['loss'][-1]:.5f}")
    if args.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed (pip install 'portanet[plot]'): no plot written")
            return
        plt.figure(figsize=(6, 4))
        plt.plot(x, y, "k", lw=3, alpha=0.3, label="target")
        for name, f in fits.items():
            plt.plot(x, f, label=f"{name} network")
        plt.legend()
        plt.tight_layout()
        plt.savefig(args.plot, dpi=100)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
