#!/usr/bin/env python3
"""Fit a 1-D curve with one hidden layer of sigmoids, and of ReLUs: a sum of smooth steps versus a
sum of hinges. Saves a PNG comparing both fits (needs matplotlib: pip install 'portanet[plot]').

    python examples/curve_fit.py --epochs 2000 --plot curve_fit.png
"""

import sys

import numpy as np

import portanet as pn
from _cli import have_matplotlib, parser, setup


def target(x):
    return np.sin(3 * x) + 0.3 * x * x


def main(argv=None):
    p = parser(__doc__, epochs=2000)
    p.add_argument("--hidden", type=int, default=20, help="Units in the hidden layer of each network.")
    p.add_argument("--plot", default="curve_fit.png",
                   help="PNG file to write both fits to; pass --plot '' to skip the plot.")
    args = p.parse_args(argv)
    device = setup(args)                        # a bad --device is the one line printed, before any note
    if args.plot and not have_matplotlib():
        print("note: matplotlib is not installed (pip install 'portanet[plot]'): fitting without writing "
              f"{args.plot}", file=sys.stderr, flush=True)
        args.plot = None
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
        from matplotlib.figure import Figure     # drawn without pyplot: the user's backend stays as it is

        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
        ax.plot(x, y, "k", lw=3, alpha=0.3, label="target")
        for name, f in fits.items():
            ax.plot(x, f, label=f"{name} network")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
