#!/usr/bin/env python3
"""portanet vs PyTorch eager vs the GEMM-only bound, interleaved epoch by epoch in one process.

    make bench                      # or: python benchmarks/run.py [--epochs 6] [--quick] [--cnn]
    python benchmarks/run.py --device gpu [--quick]     # runs benchmarks/gpu.py (make bench-gpu) instead

Every row trains the same MLP on the same batches (Fashion-MNIST from Debian's package, else synthetic data of
MNIST's shape, said so), with SGD momentum 0.9 and softmax cross-entropy in float32; in rows a-c PyTorch starts
from portanet's initial weights. Each contender runs
one epoch in turn; the table gives the median seconds per epoch over epochs 2..N, and as ratios the median of
the per-round ratios (each round's contenders run back to back, so the shared machine's slow spells cancel).
Row (i) trains a small CNN the same way (benchmarks/cnn.py); ``--cnn`` runs it alone.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import portanet as pn
from portanet.backends import host_memory, kernels

HERE = os.path.dirname(os.path.abspath(__file__))


def load_data():
    try:
        (x, y), (xt, yt) = pn.datasets.load_fashion_mnist(download=False)
        return x, y, xt, yt, "Fashion-MNIST"
    except pn.DatasetError:
        print("warning: Fashion-MNIST not found (apt-get install dataset-fashion-mnist); using synthetic data of "
              "the same shape", file=sys.stderr)
        rng = np.random.default_rng(0)
        return (rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8), rng.integers(0, 10, 60000),
                rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10000), "synthetic")


def sizes(hidden, depth):
    return [784] + [hidden] * depth + [10]


# -- contenders: each returns (run_one_epoch(epoch), test_accuracy()) ---------------------------------
def portanet_fit(x, y, xt, yt, hidden, depth, batch, device="cpu", loader=True, seed=0):
    pn.seed(seed)
    dev = pn.device(device)
    dims = sizes(hidden, depth)
    layers = [pn.Flatten()]
    for i in range(len(dims) - 1):
        layers += [pn.Dense(dims[i], dims[i + 1], device=dev)] + ([pn.ReLU(device=dev)] if i < len(dims) - 2 else [])
    model = pn.Sequential(*layers, device=dev)
    opt = pn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = pn.CrossEntropyLoss()
    train = pn.DataLoader(x, y, batch_size=batch, shuffle=True, seed=seed, device=dev)
    test = pn.DataLoader(xt, yt, batch_size=1000, device=dev)
    if loader:
        def epoch(e):
            pn.fit(model, loss, opt, train, epochs=1, metrics=(), verbose=0)
            dev.synchronize()
    else:
        xs = dev.asarray(x.reshape(len(x), -1).astype(np.float32) / 255)
        ys = dev.asarray(y)
        xp = dev.xp
        n = len(x)

        def epoch(e):
            order = dev.asarray(np.random.default_rng([seed, e]).permutation(n))
            for s in range(0, n, batch):
                idx = order[s:s + batch]
                xb, yb = xp.take(xs, idx, axis=0), xp.take(ys, idx, axis=0)
                loss.forward(_forward_flat(model, xb), yb)
                opt.zero_grad()
                model.backward(loss.backward(), input_grad=False)
                opt.step()
            dev.synchronize()
    return epoch, lambda: pn.evaluate(model, test)["accuracy"], model


def _forward_flat(model, xb):
    for layer in model.layers[1:]:
        xb = layer.forward(xb)
    return xb


def initial_weights(model):
    """[(W (in, out), b)] of a portanet model's Dense layers, on the host."""
    dev = model.device
    return [(dev.to_host(m.weight.data), dev.to_host(m.bias.data)) for m in model.layers if isinstance(m, pn.Dense)]


def torch_eager(x, y, xt, yt, hidden, depth, batch, device="cpu", seed=0, init=None):
    """``init``: initial_weights() of a portanet model, so that the two runs differ only in the frameworks'
    arithmetic (else both draw Xavier-uniform weights from their own generators)."""
    import torch

    torch.manual_seed(seed)
    dims = sizes(hidden, depth)
    layers = []
    for i in range(len(dims) - 1):
        lin = torch.nn.Linear(dims[i], dims[i + 1])
        torch.nn.init.xavier_uniform_(lin.weight)
        torch.nn.init.zeros_(lin.bias)
        if init:
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(init[i][0].T)))
                lin.bias.copy_(torch.from_numpy(np.array(init[i][1])))
        layers += [lin] + ([torch.nn.ReLU()] if i < len(dims) - 2 else [])
    tdev = "cuda" if device.startswith("gpu") else "cpu"
    model = torch.nn.Sequential(*layers).to(tdev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()
    X = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255).to(tdev)
    Y = torch.from_numpy(y).to(tdev)
    XT = torch.from_numpy(xt.reshape(len(xt), -1).astype(np.float32) / 255).to(tdev)
    n = len(x)

    def epoch(e):
        order = torch.from_numpy(np.random.default_rng([seed, e]).permutation(n)).to(tdev)
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            opt.zero_grad()
            lossf(model(X[idx]), Y[idx]).backward()
            opt.step()
        if tdev == "cuda":
            torch.cuda.synchronize()

    def acc():
        with torch.no_grad():
            return float((model(XT).argmax(1).cpu().numpy() == yt).mean())

    return epoch, acc


class TorchProcess:
    """PyTorch eager in a process of its own with glibc's default allocator, as a user runs it (portanet's
    allocator setting applies to the whole process it runs in, PyTorch included). Runs one epoch per call, so it
    takes turns with the in-process contenders."""

    def __init__(self, init, hidden, depth, batch, device):
        import json
        import tempfile

        self._file = tempfile.NamedTemporaryFile(suffix=".npz", delete=False)
        np.savez(self._file, **{f"w{i}": w for i, (w, _) in enumerate(init)},
                 **{f"b{i}": b for i, (_, b) in enumerate(init)})
        self._file.close()
        env = {**os.environ, "PORTANET_HOST_MALLOC": "system"}
        args = json.dumps([self._file.name, hidden, depth, batch, device])
        self._proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--torch-worker", args],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._ask("ready")

    def _ask(self, line):
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        answer = self._proc.stdout.readline()
        if not answer:
            raise RuntimeError("the PyTorch worker process ended early")
        return answer.strip()

    def epoch(self, e):
        self._ask(f"epoch {e}")

    def accuracy(self):
        return float(self._ask("acc"))

    def close(self):
        self._ask("quit")
        self._proc.wait()
        os.unlink(self._file.name)


def torch_worker(spec):
    import json

    path, hidden, depth, batch, device = json.loads(spec)
    with np.load(path) as f:
        init = [(f[f"w{i}"], f[f"b{i}"]) for i in range(len(f.files) // 2)]
    x, y, xt, yt, _ = load_data()
    epoch, acc = torch_eager(x, y, xt, yt, hidden, depth, batch, device, init=init)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "epoch":
            epoch(int(cmd[1]))
            out = "done"
        elif cmd[0] == "acc":
            out = repr(acc())
        else:
            out = "ok"
        print(out, flush=True)
        if cmd[0] == "quit":
            return


def gemm_bound(x, hidden, depth, batch):
    """The GEMMs of one step at its exact shapes: forward x@W per layer, dW = a.T@g per layer, and
    dX = g@W.T for every layer but the first."""
    rng = np.random.default_rng(0)
    dims = sizes(hidden, depth)
    W = [rng.standard_normal((a, b)).astype(np.float32) for a, b in zip(dims[:-1], dims[1:])]
    A = [rng.standard_normal((batch, d)).astype(np.float32) for d in dims]
    n_steps = -(-len(x) // batch)

    def epoch(e):
        for _ in range(n_steps):
            for i, w in enumerate(W):
                A[i] @ w
                A[i].T @ A[i + 1]
                if i:
                    A[i + 1] @ w.T

    return epoch


class Timings(dict):
    """Per-contender epoch times of one interleaved run. ``med[name]`` is the median over epochs 2..N;
    ``ratio(a, b)`` is the median of the per-round ratios a/b: rounds run back to back, so a slow spell of
    the shared machine cancels out of each pair."""

    def __init__(self, times):
        super().__init__({k: statistics.median(v[1:] if len(v) > 1 else v) for k, v in times.items()})
        self.times = times

    def ratio(self, a, b, rounds=None):
        pairs = list(zip(self.times[a], self.times[b]))
        pairs = pairs[1:] if len(pairs) > 1 else pairs
        if rounds is not None:
            pairs = [pairs[i] for i in rounds]
        return statistics.median(x / y for x, y in pairs)

    def quiet_rounds(self, anchor="gemm", slack=1.1):
        """Rounds (of epochs 2..N) in which ``anchor`` ran within ``slack`` of its fastest epoch. The bare GEMMs
        do the same work every round, so a slow GEMM round marks one of the shared machine's slow spells."""
        t = self.times[anchor][1:] if len(self.times[anchor]) > 1 else self.times[anchor]
        return [i for i, x in enumerate(t) if x <= slack * min(t)]


def interleave(contenders, epochs):
    times = {name: [] for name in contenders}
    for e in range(epochs):
        for name, fn in contenders.items():
            t = time.perf_counter()
            fn(e)
            times[name].append(time.perf_counter() - t)
    return Timings(times)


def row(title, med, extra=""):
    pnt = med["portanet"]
    cols = [f"{title:34s}", f"portanet {pnt:6.3f}s"]
    if "pytorch" in med:
        cols.append(f"pytorch {med['pytorch']:6.3f}s  ratio {med.ratio('portanet', 'pytorch'):.2f}")
    if "gemm" in med:
        cols.append(f"gemm-bound {med['gemm']:6.3f}s  ratio {med.ratio('portanet', 'gemm'):.2f}")
    print("  ".join(cols) + extra, flush=True)


def quiet_row(label, med):
    """The ratios over the rounds whose bare GEMMs ran within 10% of their fastest (outside the shared machine's
    slow spells)."""
    quiet = med.quiet_rounds()
    print(f"{label + ' rounds outside slow spells':34s}  {len(quiet)} of {len(med.times['gemm']) - 1} rounds had the "
          f"GEMMs within 10% of their fastest: portanet/pytorch {med.ratio('portanet', 'pytorch', quiet):.2f}  "
          f"portanet/gemm-bound {med.ratio('portanet', 'gemm', quiet):.2f}", flush=True)


def peak_rss(cmd):
    out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    for line in out.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.split(":")[1]) / 1024
    return float("nan")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--torch-worker":
        return torch_worker(sys.argv[2])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="only the headline rows (a) to (c)")
    p.add_argument("--cnn", action="store_true", help="only row (i), the CNN (CPU)")
    p.add_argument("--cnn-images", type=int, default=12800,
                   help="training images per epoch of row (i) (default 12800 of 60000: ~3 s a contender)")
    p.add_argument("--images", type=int, default=None,
                   help="train rows (a) to (h) on the first N training images only (a smoke run: tests/test_bench.py)")
    args = p.parse_args()
    if args.device != "cpu":        # the GPU suite is benchmarks/gpu.py (make bench-gpu)
        os.execv(sys.executable, [sys.executable, os.path.join(HERE, "gpu.py")] + ["--quick"] * args.quick)
    x, y, xt, yt, name = load_data()
    if args.images:
        x, y, name = x[:args.images], y[:args.images], f"{name}, first {args.images} images"
    pn.device(args.device)
    print(f"data: {name} {x.shape}, {args.epochs} interleaved epochs per row, median of epochs 2..N, "
          f"device {args.device}\nportanet: {kernels.status()}; host malloc {host_memory.status()}\n")
    if args.cnn:
        return cnn_row(x, y, xt, yt, args)

    ep, acc_pn, model = portanet_fit(x, y, xt, yt, 256, 2, 128, args.device)
    init = initial_weights(model)
    tep, acc_t = torch_eager(x, y, xt, yt, 256, 2, 128, args.device, init=init)
    own = TorchProcess(init, 256, 2, 128, args.device)
    med = interleave({"portanet": ep, "pytorch": tep, "gemm": gemm_bound(x, 256, 2, 128), "own": own.epoch},
                     args.epochs)
    row("(a-c) 784-256-256-10, batch 128", med,
        f"  | test acc portanet {100 * acc_pn():.2f}% pytorch {100 * acc_t():.2f}%")
    quiet_row("(a-c)", med)
    print(f"{'(a-c) PyTorch in its own process':34s}  pytorch {med['own']:6.3f}s  portanet/pytorch "
          f"{med.ratio('portanet', 'own'):.2f}  (glibc's default allocator, as a user runs it; "
          f"test acc {100 * own.accuracy():.2f}%)", flush=True)
    own.close()
    if args.quick:
        return
    ep, _, _ = portanet_fit(x, y, xt, yt, 100, 1, 32, args.device)
    tep, _ = torch_eager(x, y, xt, yt, 100, 1, 32, args.device)
    row("(d) 784-100-10, batch 32", interleave({"portanet": ep, "pytorch": tep, "gemm": gemm_bound(x, 100, 1, 32)},
                                                max(3, args.epochs // 2)))
    for hidden, batch in ((256, 128), (1024, 128), (2048, 128), (256, 512), (1024, 512), (2048, 512)):
        ep, _, _ = portanet_fit(x, y, xt, yt, hidden, 2, batch, args.device)
        row(f"(e) width {hidden}, batch {batch}",
            interleave({"portanet": ep, "gemm": gemm_bound(x, hidden, 2, batch)}, 3))
    ep, _, _ = portanet_fit(x, y, xt, yt, 256, 2, 128, args.device)
    hand, _, _ = portanet_fit(x, y, xt, yt, 256, 2, 128, args.device, loader=False)
    med = interleave({"portanet": ep, "hand": hand}, args.epochs)
    print(f"{'(f) fit+DataLoader vs hand-sliced':34s}  fit {med['portanet']:6.3f}s  hand-sliced {med['hand']:6.3f}s  "
          f"ratio {med.ratio('portanet', 'hand'):.3f}", flush=True)
    ep, _, _ = portanet_fit(x, y, xt, yt, 256, 2, 128, "torch:cpu")
    tep, _ = torch_eager(x, y, xt, yt, 256, 2, 128)
    med = interleave({"portanet": ep, "pytorch": tep}, max(3, args.epochs // 2))
    print(f"{'(h) portanet on torch:cpu':34s}  portanet {med['portanet']:6.3f}s  pytorch {med['pytorch']:6.3f}s  "
          f"ratio {med.ratio('portanet', 'pytorch'):.2f}", flush=True)
    if os.path.exists("/usr/bin/time") and name == "Fashion-MNIST":
        root = os.path.dirname(HERE)
        a = peak_rss([sys.executable, os.path.join(root, "examples/mnist_mlp.py"), "--dataset", "fashion-mnist",
                      "--epochs", "1", "--verbose", "0"])
        b = peak_rss([sys.executable, os.path.join(HERE, "pytorch_mlp.py"), "--epochs", "1"])
        print(f"{'(g) peak RSS, one epoch':34s}  portanet {a:6.0f} MiB  pytorch {b:6.0f} MiB  ratio {a / b:.2f}")
    cnn_row(x, y, xt, yt, args)


def cnn_row(x, y, xt, yt, args):
    """Row (i), the CNN of benchmarks/cnn.py (the NumPy path's im2col, pooling and GEMMs)."""
    sys.path.insert(0, HERE)
    import cnn

    x, y = x[:args.cnn_images], y[:args.cnn_images]
    med, acc_pn, acc_t = cnn.measure(x, y, xt, yt, max(3, args.epochs), interleave)
    row(f"(i) CNN, batch {cnn.BATCH}, {len(x)} images", med,
        f"  | test acc portanet {100 * acc_pn:.2f}% pytorch {100 * acc_t:.2f}%")
    quiet_row("(i)", med)


if __name__ == "__main__":
    main()
