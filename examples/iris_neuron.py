#!/usr/bin/env python3
"""One sigmoid neuron separates setosa from versicolor on Iris; then a 4-8-3 network learns all three.

    python examples/iris_neuron.py --epochs 100
"""

import numpy as np

import portanet as pn
from _cli import parser, setup


def main(argv=None):
    p = parser(__doc__, epochs=100, epochs_help="Passes over the training data, for the neuron and for the network.")
    args = p.parse_args(argv)
    device = setup(args)
    x, y = pn.datasets.load_iris()
    x = x.astype(np.float32)

    # Part 1: setosa (0) vs versicolor (1), 80/20 split, weights 0.1, lr 0.1, one sigmoid neuron
    two = y < 2
    (xtr, ytr), (xte, yte) = pn.train_val_split(x[two], y[two].astype(np.float32)[:, None], 0.2, seed=args.seed)
    neuron = pn.Sequential(pn.Dense(4, 1, init=lambda shape, **kw: pn.init.constant(shape, 0.1, **kw)), pn.Sigmoid(),
                           device=device)
    opt = pn.optim.SGD(neuron.parameters(), lr=0.1)
    train = pn.DataLoader(xtr, ytr, batch_size=1, shuffle=True, seed=args.seed, device=device)
    pn.fit(neuron, pn.BCELoss(), opt, train, epochs=args.epochs, metrics=(), verbose=0)
    prob = pn.predict(neuron, xte, device=device)[:, 0]
    acc1 = float(((prob > 0.5) == (yte[:, 0] > 0.5)).mean())
    w = device.to_host(neuron[0].weight.data)[:, 0]
    print(f"single neuron (setosa vs versicolor): test accuracy {100 * acc1:.1f}%, weights {np.round(w, 3)}")

    # Part 2: all three species with a 4-8-3 network and softmax cross-entropy
    (xtr, ytr), (xte, yte) = pn.train_val_split(x, y, 0.2, seed=args.seed)
    mean, std = xtr.mean(0), xtr.std(0)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    net = pn.Sequential(pn.Dense(4, 8), pn.Tanh(), pn.Dense(8, 3), device=device)
    opt = pn.optim.Adam(net.parameters(), lr=0.01)
    train = pn.DataLoader(xtr, ytr, batch_size=16, shuffle=True, seed=args.seed, device=device)
    test = pn.DataLoader(xte, yte, batch_size=64, device=device)
    pn.fit(net, pn.CrossEntropyLoss(), opt, train, epochs=args.epochs, verbose=0)
    print(f"4-8-3 network (three species): test accuracy {100 * pn.evaluate(net, test)['accuracy']:.1f}%")


if __name__ == "__main__":
    main()
