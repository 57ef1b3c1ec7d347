"""Row (i) of `make bench`: a small CNN, portanet's fit on NumPy against PyTorch eager from the same initial weights,
and the bare GEMMs of its steps, taking turns epoch by epoch.

    Conv2d(1, 32, 3, padding=1), ReLU, MaxPool2d(2), Conv2d(32, 64, 3, padding=1), ReLU, MaxPool2d(2), Flatten,
    Dense(3136, 128), ReLU, Dense(128, 10); float32, batch 128, SGD momentum 0.9, softmax cross-entropy.

A full Fashion-MNIST epoch takes ~15 s a contender on two cores, so each "epoch" here is the first ``images``
training images (the row says how many), shuffled per epoch; test accuracy is over the whole test set.
"""
from __future__ import annotations

import numpy as np

import portanet as pn

LR, MOMENTUM, BATCH = 0.01, 0.9, 128


def portanet_cnn(x, y, xt, yt, batch, seed=0):
    pn.seed(seed)
    model = pn.Sequential(pn.Conv2d(1, 32, 3, padding=1), pn.ReLU(), pn.MaxPool2d(2),
                          pn.Conv2d(32, 64, 3, padding=1), pn.ReLU(), pn.MaxPool2d(2), pn.Flatten(),
                          pn.Dense(3136, 128), pn.ReLU(), pn.Dense(128, 10), device="cpu")
    opt = pn.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss = pn.CrossEntropyLoss()
    train = pn.DataLoader(x[:, None], y, batch_size=batch, shuffle=True, seed=seed, device=model.device)
    test = pn.DataLoader(xt[:, None], yt, batch_size=1000, device=model.device)

    def epoch(e):
        pn.fit(model, loss, opt, train, epochs=1, metrics=(), verbose=0)

    return epoch, lambda: pn.evaluate(model, test)["accuracy"], model


def torch_cnn(x, y, xt, yt, batch, model, seed=0):
    """PyTorch eager, starting from ``model``'s (portanet's) weights: conv weights as they are (the same layout),
    Dense weights transposed."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(3136, 128), torch.nn.ReLU(),
                              torch.nn.Linear(128, 10))
    host = [model.device.to_host(p.data) for p in model.parameters()]
    with torch.no_grad():
        for p, h in zip(net.parameters(), host):
            p.copy_(torch.from_numpy(np.ascontiguousarray(h.T if h.ndim == 2 else h)))
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    lossf = torch.nn.CrossEntropyLoss()
    X = torch.from_numpy(x[:, None].astype(np.float32) / 255)
    Y = torch.from_numpy(y)
    XT = torch.from_numpy(xt[:, None].astype(np.float32) / 255)
    n = len(x)

    def epoch(e):
        order = torch.from_numpy(np.random.default_rng([seed, e]).permutation(n))
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            opt.zero_grad()
            lossf(net(X[idx]), Y[idx]).backward()
            opt.step()

    def accuracy():
        with torch.no_grad():
            return float(np.mean([(net(XT[i:i + 1000]).argmax(1).numpy() == yt[i:i + 1000]).mean()
                                  for i in range(0, len(xt), 1000)]))

    return epoch, accuracy


def gemm_bound(n, batch):
    """The GEMMs of the CNN's steps at their exact shapes, as portanet lays them out: per conv, W @ columns forward
    and dW = dY @ columns.T (plus dcols = W.T @ dY for the second); per Dense, x @ W, x.T @ dy and dy @ W.T (the
    first Dense's input gradient feeds the convs)."""
    rng = np.random.default_rng(0)

    def a(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    w1, c1, y1 = a(32, 9), a(9, batch * 784), a(32, batch * 784)
    w2, c2, y2 = a(64, 288), a(288, batch * 196), a(64, batch * 196)
    x3, w3, g3, x4, w4, g4 = a(batch, 3136), a(3136, 128), a(batch, 128), a(batch, 128), a(128, 10), a(batch, 10)
    steps = -(-n // batch)

    def epoch(e):
        for _ in range(steps):
            w1 @ c1, y1 @ c1.T
            w2 @ c2, y2 @ c2.T, w2.T @ y2
            x3 @ w3, x3.T @ g3, g3 @ w3.T
            x4 @ w4, x4.T @ g4, g4 @ w4.T

    return epoch


def measure(x, y, xt, yt, epochs, interleave):
    """Row (i): portanet, PyTorch and the bare GEMMs on the training images ``x``, taking turns epoch by epoch
    (run.py's ``interleave``). Returns (its Timings, portanet's test accuracy, PyTorch's)."""
    ep, acc_pn, model = portanet_cnn(x, y, xt, yt, BATCH)
    tep, acc_t = torch_cnn(x, y, xt, yt, BATCH, model)
    med = interleave({"portanet": ep, "pytorch": tep, "gemm": gemm_bound(len(x), BATCH)}, epochs)
    return med, acc_pn(), acc_t()
