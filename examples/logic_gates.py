#!/usr/bin/env python3
"""Perceptrons learn AND, OR and NAND; no single perceptron can learn XOR (it is not linearly
separable); a 2-2-1 sigmoid network learns it by backpropagation.

    python examples/logic_gates.py
"""

import numpy as np

import portanet as pn
from _cli import parser, setup

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
GATES = {"AND": [0, 0, 0, 1], "OR": [0, 1, 1, 1], "NAND": [1, 1, 1, 0], "XOR": [0, 1, 1, 0]}


def perceptron(targets, epochs, lr=0.1):
    """Rosenblatt's rule: w += lr (t - step(w.x + b)) x. Returns (weights, bias, converged)."""
    w, b = np.zeros(2), 0.0
    for _ in range(epochs):
        errors = 0
        for x, t in zip(X, targets):
            out = 1.0 if x @ w + b > 0 else 0.0
            if out != t:
                w, b = w + lr * (t - out) * x, b + lr * (t - out)
                errors += 1
        if errors == 0:
            return w, b, True
    return w, b, False


def main(argv=None):
    p = parser(__doc__, epochs=3000,
               epochs_help="Passes over the four XOR examples for the 2-2-1 network (each perceptron stops "
                           "after 100).")
    args = p.parse_args(argv)
    device = setup(args)
    for name in ("AND", "OR", "NAND", "XOR"):
        w, b, ok = perceptron(np.array(GATES[name], dtype=float), epochs=100)
        if ok:
            print(f"perceptron {name:4s}: learned w={np.round(w, 2)}, b={b:.2f}")
        else:
            print(f"perceptron {name:4s}: did not converge in 100 epochs; no line separates "
                  "{(0,1),(1,0)} from {(0,0),(1,1)}, so one perceptron cannot represent XOR")

    net = pn.Sequential(pn.Dense(2, 2, init="glorot_normal"), pn.Sigmoid(), pn.Dense(2, 1, init="glorot_normal"),
                        pn.Sigmoid(), device=device)
    opt = pn.optim.SGD(net.parameters(), lr=2.0, momentum=0.9)
    y = np.array(GATES["XOR"], dtype=np.float32)[:, None]
    loader = pn.DataLoader(X, y, batch_size=4, device=device)
    pn.fit(net, pn.MSELoss(), opt, loader, epochs=args.epochs, metrics=(), verbose=0)
    out = pn.predict(net, X, device=device)[:, 0]
    print("2-2-1 network on XOR: " + ", ".join(f"{a:.0f}{b:.0f} -> {o:.3f}" for (a, b), o in zip(X, out)))
    print(f"XOR learned: {bool(np.all((out > 0.5) == (y[:, 0] > 0.5)))}")


if __name__ == "__main__":
    main()
