#!/usr/bin/env python3
"""The mnist_mlp.py recipe in PyTorch (784-256-256-10 ReLU, Glorot-uniform weights and zero biases as
portanet's Dense, Adam 1e-3, batch 128, shuffled each epoch), for comparing accuracy and memory.

    python benchmarks/pytorch_mlp.py --dataset fashion-mnist --epochs 10 --seed 0
"""
import argparse
import resource
import time

import numpy as np
import torch

import portanet as pn


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="fashion-mnist")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    load = pn.datasets.load_mnist if args.dataset == "mnist" else pn.datasets.load_fashion_mnist
    (x, y), (xt, yt) = load()
    X = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255)
    Y = torch.from_numpy(y)
    XT = torch.from_numpy(xt.reshape(len(xt), -1).astype(np.float32) / 255)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10))
    for m in model:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
            torch.nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = len(X)
    for epoch in range(args.epochs):
        t = time.perf_counter()
        order = torch.from_numpy(np.random.default_rng([args.seed, epoch]).permutation(n))
        for i in range(0, n, args.batch_size):
            idx = order[i:i + args.batch_size]
            opt.zero_grad()
            loss_fn(model(X[idx]), Y[idx]).backward()
            opt.step()
        with torch.no_grad():
            acc = (model(XT).argmax(1).numpy() == yt).mean()
        print(f"epoch {epoch + 1}: test accuracy {100 * acc:.2f}% ({time.perf_counter() - t:.2f}s)", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss:.0f} MiB")
    print(f"test accuracy: {100 * acc:.2f}%")


if __name__ == "__main__":
    main()
