#!/usr/bin/env python3
"""The GPU benchmark of issue 12: microseconds per training step of portanet's fit on CuPy (device="gpu") and on
torch:cuda, each eager and captured (one CUDA graph per step), against PyTorch eager and PyTorch's whole step in one
torch.cuda.CUDAGraph, plus the seconds the first epoch spends compiling.

    make bench-gpu                          # on a CUDA machine, offline (README, "GPU")
    python benchmarks/gpu.py [--quick] [--out FILE] [--budget S]
    python benchmarks/gpu.py --smoke        # the same code on "cpu" and "torch:cpu", tiny sizes (tests/test_bench.py)

Every contender trains the same MLP (784-W-W-10 for W = 256 and 1024, 784-4096-4096-4096-10) from the same initial
weights (portanet's Glorot-uniform, copied into PyTorch's nn.Linear), with SGD momentum 0.9 and cross-entropy in
float32 (no TF32 in either library), on shuffled batches gathered on the device from uint8 images, converted and
scaled by 1/255. One measurement is one epoch of N full batches: the time of an N-step epoch minus that of an 8-step
epoch, over N - 8, so what a call of fit costs once (its checks, the warm-up steps and the recording) cancels and is
reported apart ("fixed ms"). N is chosen per contender for about --seconds of steps. Each config runs its
contenders in turn for 3 rounds; a row gives the median over rounds, and its ratios the median of the per-round
ratios (each round's contenders run back to back). Lines are printed as each config ends, and --out rewrites its
JSON after each config, so a run cut short keeps what it measured.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
LR, MOMENTUM, SCALE = 0.01, 0.9, 1.0 / 255.0
N_FIXED = 8             # steps of the short epoch: the first, checked step, two warm-ups, the recording, replays
ROW = "{batch:>5}  {net:<22}  {name:<29}  {cells}"


@dataclass
class Plan:
    """What one run measures. ``configs`` are (batch, width, hidden layers) in the order they run: the issue's
    headline (batch 128, width 256) first, then the widest net at the largest batch, then the rest."""
    mode: str
    configs: list
    devices: tuple          # portanet's (CuPy device, torch device), e.g. ("gpu", "torch:cuda")
    torch_device: str       # PyTorch's own contenders
    seconds: float          # time of steps per measurement (0: min_extra steps)
    min_extra: int          # fewest steps beyond N_FIXED
    max_samples: int        # samples in the tiled training set; bounds N
    rounds: int = 3
    compile_runs: int = 2
    compile_config: tuple = (128, 60000, 256)    # batch, samples, width of the compile-time runs
    budget: float = 210.0   # seconds after which no new config starts

    @property
    def headline(self):
        return self.configs[0]

    @property
    def big(self):
        return self.configs[1] if len(self.configs) > 1 else None


def make_plan(args) -> Plan:
    if args.smoke:
        configs = [(8, 16, 2), (32, 32, 3)]
        plan = Plan("smoke", configs, ("cpu", "torch:cpu"), "cpu", 0.0, 32, 2048, budget=120.0,
                    compile_config=(32, 256, 16))
    elif args.quick:
        plan = Plan("quick", [(128, 256, 2)], ("gpu", "torch:cuda"), "cuda", 0.1, 16, 300_000, budget=120.0)
    else:
        rest = sorted(((b, w, 3 if w == 4096 else 2) for w in (256, 1024, 4096) for b in (32, 128, 1024)),
                      key=lambda c: (c[1], c[0]))
        first = [(128, 256, 2), (1024, 4096, 3)]
        plan = Plan("full", first + [c for c in rest if c not in first], ("gpu", "torch:cuda"), "cuda", 0.25, 16,
                    300_000)
    if args.seconds is not None:
        plan.seconds = args.seconds
    if args.budget is not None:
        plan.budget = args.budget
    if args.rounds is not None:
        plan.rounds = args.rounds
    return plan


def net_name(width, depth):
    return "-".join(map(str, [784] + [width] * depth + [10]))


def one_line(e: BaseException, limit=300) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- data ------------------------------------------------------------------------------------------------------------
def load_data(pn):
    """Fashion-MNIST's training images as (60000, 784) uint8 and labels, from ./data/fashion-mnist, ./data or
    portanet's own search path ($PORTANET_DATA, the cache, Debian's package); else synthetic data of that shape."""
    from portanet.datasets import mnist

    for root in (ROOT / "data" / "fashion-mnist", ROOT / "data", None):
        if root is not None and not root.is_dir():
            continue
        found = mnist.locate("fashion-mnist", root)
        if found is None:
            continue
        (x, y), _ = pn.datasets.load_fashion_mnist(root=root, download=False)
        where = pathlib.Path(found[mnist.FILES[0]]).parent
        return x.reshape(len(x), -1), y, f"Fashion-MNIST from {where}"
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (60000, 784), dtype=np.uint8), rng.integers(0, 10, 60000),
            "synthetic uint8 data of Fashion-MNIST's shape (Fashion-MNIST not found: put its four files in "
            "data/fashion-mnist or point PORTANET_DATA at them)")


def tiled(x, y, n):
    """The first ``n`` samples of x, y repeated end to end."""
    reps = -(-n // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:n]), np.concatenate([y] * reps)[:n]


# -- contenders --------------------------------------------------------------------------------------------------
# Each has run(steps): one epoch of `steps` full batches that returns when the device is done, prepare(steps) to set
# up what such an epoch needs outside the timing, and close().

def device_sync(kind):
    if kind == "cupy":
        import cupy

        cupy.cuda.runtime.deviceSynchronize()
    elif kind == "torch-cuda":
        import torch

        torch.cuda.synchronize()


class PortanetFit:
    """pn.fit on ``spec``, one epoch per call, capture=True or False, metrics=() (the PyTorch loops count none)."""

    def __init__(self, pn, spec, capture, batch, layers, data, init):
        self.pn, self.capture, self.batch = pn, capture, batch
        self.dev = pn.device(spec)
        self.sync_kind = "cupy" if self.dev.backend.name == "cupy" else (
            "torch-cuda" if "cuda" in str(self.dev) else None)
        self.model = build_portanet(pn, layers, self.dev)
        self.model.load_state_dict(init)
        self.opt = pn.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.loss = pn.CrossEntropyLoss()
        self.x, self.y = data
        self.loaders = {}

    def prepare(self, steps):
        if steps not in self.loaders:
            n = steps * self.batch
            self.loaders[steps] = self.pn.DataLoader(self.x[:n], self.y[:n], batch_size=self.batch, shuffle=True,
                                                     drop_last=True, seed=0, device=self.dev)

    def forget(self, steps):
        self.loaders.pop(steps, None)

    def run(self, steps):
        self.pn.fit(self.model, self.loss, self.opt, self.loaders[steps], epochs=1, metrics=(), verbose=0,
                    capture=self.capture)
        self.sync()

    def sync(self):
        device_sync(self.sync_kind)

    def close(self):
        self.loaders.clear()
        self.model = self.opt = None


class TorchEager:
    """The PyTorch loop a user writes: nn.Sequential of Linear/ReLU, CrossEntropyLoss, SGD(momentum=0.9) with its
    defaults (foreach on CUDA), zero_grad(set_to_none=True); each epoch a host permutation uploaded once, as
    portanet's DataLoader does, and each batch gathered from the uint8 images on the device, converted, scaled."""

    def __init__(self, torch_device, batch, layers, data, init):
        import torch

        self.torch, self.batch = torch, batch
        self.dev = torch.device(torch_device)
        torch.backends.cuda.matmul.allow_tf32 = False       # PyTorch's default, said out loud: float32 GEMMs
        self.model = build_torch(torch, layers).to(self.dev)
        self.model.load_state_dict(init)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.lossf = torch.nn.CrossEntropyLoss()
        x, y = data
        self.X8 = torch.from_numpy(x).to(self.dev)
        self.Y = torch.from_numpy(y).to(self.dev)
        self.epoch = 0

    def prepare(self, steps):
        pass

    def forget(self, steps):
        pass

    def order(self, steps):
        self.epoch += 1
        perm = np.random.default_rng([0, self.epoch]).permutation(steps * self.batch)
        return self.torch.from_numpy(perm).to(self.dev)

    def run(self, steps):
        torch, order, b = self.torch, self.order(steps), self.batch
        for s in range(0, steps * b, b):
            idx = order[s:s + b]
            xb = self.X8.index_select(0, idx).to(torch.float32).mul_(SCALE)
            yb = self.Y.index_select(0, idx)
            self.opt.zero_grad(set_to_none=True)
            self.lossf(self.model(xb), yb).backward()
            self.opt.step()
        self.sync()

    def sync(self):
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize(self.dev)

    def close(self):
        self.model = self.opt = self.X8 = self.Y = None


class TorchGraph(TorchEager):
    """The floor: PyTorch's whole step in one torch.cuda.CUDAGraph, by the whole-network recipe of PyTorch's CUDA
    graphs notes (3 warm-up steps on a side stream, zero_grad(set_to_none=True) before capture so backward's
    gradients come from the graph's pool, replay on the current stream). Static inputs: each batch is gathered
    straight into a uint8 input buffer and a label buffer (index_select(..., out=)); the conversion, the scaling and
    the step are recorded."""

    WARMUP = 3      # as the recipe

    def __init__(self, torch_device, batch, layers, data, init):
        super().__init__(torch_device, batch, layers, data, init)
        torch = self.torch
        if self.dev.type != "cuda":
            raise RuntimeError(f"a CUDA graph needs a CUDA device, and this run's PyTorch contenders are on "
                               f"{self.dev} (PyTorch {torch.__version__}, torch.cuda.is_available() is "
                               f"{torch.cuda.is_available()})")
        self.static_x = torch.empty((batch, self.X8.shape[1]), dtype=torch.uint8, device=self.dev)
        self.static_y = torch.empty((batch,), dtype=self.Y.dtype, device=self.dev)
        self._gather(torch.arange(batch, device=self.dev))
        side = torch.cuda.Stream(self.dev)
        side.wait_stream(torch.cuda.current_stream(self.dev))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                self.opt.zero_grad(set_to_none=True)
                self._step()
        torch.cuda.current_stream(self.dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)
        # recorded on the warm-up's stream, whose cuBLAS workspace exists already (as portanet's TorchStepGraph)
        with torch.cuda.graph(self.graph, stream=side):
            self.static_loss = self._step()

    def _step(self):
        x = self.static_x.to(self.torch.float32).mul_(SCALE)
        loss = self.lossf(self.model(x), self.static_y)
        loss.backward()
        self.opt.step()
        return loss

    def _gather(self, idx):
        self.torch.index_select(self.X8, 0, idx, out=self.static_x)
        self.torch.index_select(self.Y, 0, idx, out=self.static_y)

    def run(self, steps):
        order, b = self.order(steps), self.batch
        for s in range(0, steps * b, b):
            self._gather(order[s:s + b])
            self.graph.replay()
        self.sync()

    def close(self):
        super().close()
        self.graph = self.static_x = self.static_y = self.static_loss = None


def build_portanet(pn, layers, dev):
    mods = []
    for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
        mods.append(pn.Dense(a, b, device=dev))
        if i < len(layers) - 2:
            mods.append(pn.ReLU(device=dev))
    return pn.Sequential(*mods, device=dev)


def build_torch(torch, layers):
    mods = []
    for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
        mods.append(torch.nn.Linear(a, b))
        if i < len(layers) - 2:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


@dataclass
class Spec:
    name: str
    role: tuple             # ("portanet", "gpu"|"torch", "eager"|"captured") or ("pytorch", "eager"|"graph")
    make: object            # (batch, layers, data, inits) -> contender


def contenders(pn, plan):
    cupy_dev, torch_dev = plan.devices
    out = []
    for which, spec in (("gpu", cupy_dev), ("torch", torch_dev)):
        for mode, capture in (("eager", False), ("captured", True)):
            out.append(Spec(f"portanet {spec} {mode}", ("portanet", which, mode),
                            lambda b, l, d, i, spec=spec, capture=capture: PortanetFit(pn, spec, capture, b, l, d,
                                                                                       i["portanet"])))
    out.append(Spec("pytorch eager", ("pytorch", "eager"),
                    lambda b, l, d, i: TorchEager(plan.torch_device, b, l, d, i["torch"])))
    out.append(Spec("pytorch graph", ("pytorch", "graph"),
                    lambda b, l, d, i: TorchGraph(plan.torch_device, b, l, d, i["torch"])))
    return out


# -- measuring -------------------------------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    role: tuple
    steps: int = 0
    per_step: list = field(default_factory=list)     # seconds per step, one per round
    fixed: list = field(default_factory=list)        # seconds an 8-step epoch takes beyond its steps, per round
    error: str | None = None

    @property
    def us(self):
        return 1e6 * statistics.median(self.per_step) if self.per_step and not self.error else None


clock = time.perf_counter


def timed(c, steps):
    c.sync()
    t = clock()
    c.run(steps)
    return clock() - t


def choose_steps(c, plan, batch):
    """N for this contender: about plan.seconds of steps, from the difference of a 40- and an 8-step epoch."""
    most = max(plan.max_samples // batch, N_FIXED + plan.min_extra)
    if plan.seconds <= 0:
        return N_FIXED + plan.min_extra
    probe = min(N_FIXED + 32, most)
    c.prepare(probe)
    short, long = timed(c, N_FIXED), timed(c, probe)
    c.forget(probe)
    per = (long - short) / (probe - N_FIXED)
    if per <= 0:
        per = long / probe
    return N_FIXED + min(max(round(plan.seconds / per), plan.min_extra), most - N_FIXED)


def measure(plan, specs, batch, layers, data, inits):
    """Every contender of one config, interleaved: set up and warm each, then plan.rounds rounds in which each runs
    an 8-step and an N-step epoch. Returns [Result] in specs' order; a contender that raises gets its error."""
    results, alive = {}, {}
    for spec in specs:
        r = results[spec.name] = Result(spec.name, spec.role)
        c = None
        try:
            c = spec.make(batch, layers, data, inits)
            c.prepare(N_FIXED)
            c.run(N_FIXED)                       # compiles, allocates, records once
            r.steps = choose_steps(c, plan, batch)
            c.prepare(r.steps)
            alive[spec.name] = c
        except Exception as e:
            r.error = one_line(e)
            if c is not None:
                c.close()
    times = {name: [] for name in alive}
    for _ in range(plan.rounds):
        for name, c in list(alive.items()):
            try:
                times[name].append((timed(c, N_FIXED), timed(c, results[name].steps)))
            except Exception as e:
                results[name].error = one_line(e)
                c.close()
                del alive[name]
    for name, c in alive.items():
        c.close()
        r = results[name]
        short = statistics.median(s for s, _ in times[name])     # the fixed part, its noise damped once
        r.per_step = [(long - short) / (r.steps - N_FIXED) for _, long in times[name]]
        r.fixed = [s - N_FIXED * per for (s, _), per in zip(times[name], r.per_step)]
    return [results[s.name] for s in specs]


def ratio(a: Result, b: Result | None):
    """Median over rounds of a's time per step / b's."""
    if b is None or a.us is None or b.us is None:
        return None
    return statistics.median(x / y for x, y in zip(a.per_step, b.per_step))


def free_device_memory():
    gc.collect()
    if "cupy" in sys.modules:
        try:
            sys.modules["cupy"].get_default_memory_pool().free_all_blocks()
        except Exception:
            pass
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# -- targets (issue 12) ------------------------------------------------------------------------------------------
def targets(plan):
    """[(config, role, against, limit, text)]: each target of issue 12 and where it is read."""
    out = []
    head, big = plan.headline, plan.big
    cupy_dev = plan.devices[0]
    out.append((head, ("portanet", "gpu", "eager"), "eager", 0.5, f"eager portanet {cupy_dev} / PyTorch eager"))
    if big is not None:
        out.append((big, ("portanet", "gpu", "eager"), "eager", 0.9, f"eager portanet {cupy_dev} / PyTorch eager"))
    for which, spec in zip(("gpu", "torch"), plan.devices):
        for config in plan.configs:
            out.append((config, ("portanet", which, "captured"), "graph", 1.3,
                        f"captured portanet {spec} / PyTorch CUDA graph"))
        out.append((head, ("portanet", which, "captured"), "eager", 0.15,
                    f"captured portanet {spec} / PyTorch eager"))
    return out


def verdict(value, limit):
    if value is None:
        return "no number"
    if value <= 0:
        return "no number (noise over the steps' time: raise --seconds)"
    return "met" if value <= limit else "MISSED"


# -- the compile-time run ----------------------------------------------------------------------------------------
def compile_worker(spec, batch, samples, width):
    """In a fresh process: the seconds of fit's epochs 1 and 2 (784-W-W-10 on the first ``samples`` images, SGD
    momentum, fit's defaults: capture="auto", accuracy counted). Prints one JSON line."""
    t = time.perf_counter()
    import portanet as pn

    dev = pn.device(spec)
    imported = time.perf_counter() - t
    x, y, _ = load_data(pn)
    x, y = x[:samples], y[:samples]
    pn.seed(0)
    model = build_portanet(pn, [784, width, width, 10], dev)
    opt = pn.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loader = pn.DataLoader(x, y, batch_size=batch, shuffle=True, seed=0, device=dev)
    history = pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=2, verbose=0)
    print(json.dumps({"import_s": imported, "epochs_s": list(history["seconds"]), "steps": len(loader),
                      "device": str(dev)}), flush=True)


def cupy_cache_files():
    d = pathlib.Path(os.environ.get("CUPY_CACHE_DIR", pathlib.Path.home() / ".cupy" / "kernel_cache"))
    return sum(1 for p in d.rglob("*") if p.is_file()) if d.is_dir() else 0


def compile_runs(plan, say):
    spec = plan.devices[0]
    batch, samples, width = plan.compile_config
    runs = []
    for i in range(plan.compile_runs):
        files = cupy_cache_files() if spec == "gpu" else None
        cache = "" if files is None else f", CuPy's kernel cache holding {files} files"
        try:
            out = subprocess.run([sys.executable, str(pathlib.Path(__file__).resolve()), "--compile-worker", spec,
                                  str(batch), str(samples), str(width)], capture_output=True, text=True, timeout=180)
            if out.returncode != 0:
                raise RuntimeError((out.stderr.strip().splitlines() or ["no output"])[-1])
            r = json.loads(out.stdout.strip().splitlines()[-1])
        except Exception as e:
            runs.append({"error": one_line(e)})
            say(f"compile, run {i + 1} of {plan.compile_runs}: error: {one_line(e)}")
            continue
        e1, e2 = r["epochs_s"][:2]
        r["difference_s"], r["kernel_cache_files"] = e1 - e2, files
        runs.append(r)
        tail = ""
        if i == plan.compile_runs - 1:
            tail = f"  target <= 1.0 s: {verdict(e1 - e2, 1.0)}"
        say(f"compile, run {i + 1} of {plan.compile_runs} (fresh process{cache}): import {r['import_s']:.2f} s, "
            f"epoch 1 {e1:.3f} s, epoch 2 {e2:.3f} s, epoch 1 - epoch 2 {e1 - e2:.3f} s "
            f"[{r['device']}, {net_name(width, 2)}, batch {batch}, {r['steps']} steps]{tail}")
    return runs


# -- the run -------------------------------------------------------------------------------------------------
def unavailable(plan):
    """Why neither CuPy nor PyTorch can run on CUDA here, or None."""
    if plan.mode == "smoke":
        return None
    import portanet as pn

    cupy_reason = pn.backends.get("cupy").unavailable()
    try:
        import torch

        torch_reason = None if torch.cuda.is_available() else \
            f"PyTorch {torch.__version__} sees no CUDA device"
    except ImportError as e:
        torch_reason = f"PyTorch not importable ({e})"
    if cupy_reason and torch_reason:
        return f"{cupy_reason}; {torch_reason}"
    return None


def header(pn, plan, data_note, n):
    from portanet.backends import cublas, kernels

    lines = [f"portanet GPU benchmark ({plan.mode}): us per training step, median of {plan.rounds} interleaved "
             f"rounds; ratios are medians of per-round ratios",
             f"data: {data_note}; tiled to {n} samples; SGD lr {LR} momentum {MOMENTUM}, cross-entropy, float32",
             f"portanet {pn.__version__} from {pathlib.Path(pn.__file__).parent}; numpy {np.__version__}; "
             f"python {sys.version.split()[0]}"]
    try:
        import torch

        lines.append(f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}); "
                     f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device'}; "
                     f"allow_tf32 {torch.backends.cuda.matmul.allow_tf32}")
    except ImportError as e:
        lines.append(f"PyTorch not importable: {e}")
    if plan.devices[0] == "gpu":
        try:
            import cupy

            lines.append(f"CuPy {cupy.__version__} (CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}); "
                         f"{cublas.status()}; CUDA kernels {'on' if kernels.enabled() else 'off'}")
        except Exception as e:
            lines.append(f"CuPy: {one_line(e)}")
    else:
        lines.append(f"host kernels: {kernels.status()}")
    n = f"N for ~{plan.seconds} s of steps" if plan.seconds > 0 else f"N = {N_FIXED + plan.min_extra}"
    lines.append(f"each measurement: an N-step epoch minus an {N_FIXED}-step one, {n}; 'fixed ms': what one "
                 "epoch's call costs beyond its steps (fit's checks, warm-up, recording)")
    if plan.mode == "smoke":
        lines.append("smoke run: CPU devices stand in for the GPU ones, to check the logic; its numbers measure "
                     "nothing")
    return lines


def cells(r: Result, eager, graph, notes):
    if r.error:
        return f"error: {r.error}"
    re, rg = ratio(r, eager), ratio(r, graph) if r.role[-1] in ("captured", "graph") else None
    text = (f"{r.us:10.1f}  {'-' if re is None else f'{re:.2f}':>9s}  {'-' if rg is None else f'{rg:.2f}':>9s}  "
            f"{r.steps:6d}  {1e3 * statistics.median(r.fixed):9.1f}")
    return text + ("  " + "; ".join(notes) if notes else "")


def rows(plan, config, results, report, say):
    """Print one config's rows (and add them to the report); yields (result, PyTorch eager's, PyTorch graph's)."""
    batch, width, depth = config
    net = net_name(width, depth)
    eager = next((r for r in results if r.role == ("pytorch", "eager") and r.us is not None), None)
    graph = next((r for r in results if r.role == ("pytorch", "graph") and r.us is not None), None)
    for r in results:
        notes = []
        for (where, role, against, limit, _text) in targets(plan):
            if where == config and role == r.role:
                value = ratio(r, eager if against == "eager" else graph)
                notes.append(f"/pt-{against} <= {limit:.2f} {verdict(value, limit)}")
        say(ROW.format(batch=batch, net=net, name=r.name, cells=cells(r, eager, graph, notes)))
        report["rows"].append({"batch": batch, "net": net, "contender": r.name, "us_per_step": r.us,
                               "rounds_us": [1e6 * v for v in r.per_step], "steps": r.steps,
                               "fixed_ms": [1e3 * v for v in r.fixed], "per_pytorch_eager": ratio(r, eager),
                               "per_pytorch_graph": ratio(r, graph) if r.role[-1] in ("captured", "graph")
                               else None, "error": r.error})
        yield r, eager, graph


def summary(plan, done, report, say, no_compile):
    """Issue 12's targets, each with its number and met / MISSED."""
    say()
    say(f"targets (issue 12), {plan.mode} run:")
    for config, role, against, limit, text in targets(plan):
        if against == "graph" and config != plan.headline:
            continue
        got = done.get((config, role))
        value = None if got is None else ratio(got[0], got[1] if against == "eager" else got[2])
        b, w, d = config
        shown = "-" if value is None else f"{value:.2f}"
        say(f"  {text:50s} batch {b:4d}, {net_name(w, d):22s} <= {limit:4.2f}  {shown:>6s}  {verdict(value, limit)}")
        report["targets"].append({"what": text, "batch": b, "net": net_name(w, d), "limit": limit, "value": value,
                                  "verdict": verdict(value, limit)})
    captured = [(c, role) for c, role, against, _, _ in targets(plan) if against == "graph"]
    met = [verdict(ratio(done[k][0], done[k][2]), 1.3) for k in captured if k in done]
    say(f"  captured / PyTorch CUDA graph <= 1.30 over every config and both devices: {met.count('met')} of "
        f"{len(captured)} met")
    runs = [r for r in report["compile"] if "difference_s" in r]
    if runs:
        d = runs[-1]["difference_s"]
        cb, _, cw = plan.compile_config
        say(f"  {'compile: epoch 1 - epoch 2 s, last fresh process':50s} batch {cb:4d}, {net_name(cw, 2):22s} "
            f"<= 1.00  {d:6.2f}  {verdict(d, 1.0)}")
    elif not no_compile:
        say("  compile: no number (see the compile lines above)")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--compile-worker"]:
        return compile_worker(argv[1], *map(int, argv[2:5]))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batch 128, 784-256-256-10 only, ~0.1 s per measurement")
    p.add_argument("--smoke", action="store_true",
                   help='on "cpu" and "torch:cpu" with tiny nets and a few steps: checks the logic, no GPU')
    p.add_argument("--out", help="also write the results as JSON to this file (rewritten after each config)")
    p.add_argument("--seconds", type=float, help="time of steps per measurement (default 0.25; quick 0.1)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per config (default 3)")
    p.add_argument("--budget", type=float,
                   help="seconds after which no new config starts; the rest are listed as skipped (default 210)")
    p.add_argument("--no-compile", action="store_true", help="leave out the compile-time runs")
    args = p.parse_args(argv)
    began = time.perf_counter()
    say = lambda line="": print(line, flush=True)      # noqa: E731  (every line out at once: a cut run keeps it)
    plan = make_plan(args)
    reason = unavailable(plan)
    if reason:
        say(f"bench-gpu skipped: no CUDA device ({reason})")
        return 0
    import portanet as pn

    if plan.mode == "smoke":
        try:        # PyTorch's idle threads spin between its steps, and on a small CPU they slow the next contender
            import torch

            torch.set_num_threads(1)
        except ImportError:
            pass
    x, y, note = load_data(pn)
    n = plan.max_samples
    x, y = tiled(x, y, n)
    for line in header(pn, plan, note, n):
        say(line)
    report = {"mode": plan.mode, "data": note, "samples": n, "rounds": plan.rounds, "seconds": plan.seconds,
              "rows": [], "compile": [], "targets": []}
    specs = contenders(pn, plan)
    done = {}

    def save():
        if args.out:
            pathlib.Path(args.out).write_text(json.dumps(report, indent=1))

    say()
    say(ROW.format(batch="batch", net="net", name="contender",
                   cells="   us/step  /pt-eager  /pt-graph   steps   fixed ms  targets"))
    for i, (batch, width, depth) in enumerate(plan.configs):
        net = net_name(width, depth)
        if time.perf_counter() - began > plan.budget:
            say(ROW.format(batch=batch, net=net, name="(all)",
                           cells=f"skipped: the run's time budget of {plan.budget:.0f} s is spent (--budget)"))
            continue
        layers = [784] + [width] * depth + [10]
        pn.seed(0)
        ref = build_portanet(pn, layers, pn.device("cpu"))
        inits = {"portanet": ref.state_dict()}
        try:
            inits["torch"] = pn.torch_state_dict(ref, device="torch:cpu")
        except Exception as e:
            inits["torch"] = None
            say(f"    PyTorch's initial weights: {one_line(e)}")
        results = measure(plan, specs, batch, layers, (x, y), inits)
        for r, eager, graph in rows(plan, (batch, width, depth), results, report, say):
            done[((batch, width, depth), r.role)] = (r, eager, graph)
        del results
        free_device_memory()
        save()
        if i == 0 and not args.no_compile:
            say()
            report["compile"] = compile_runs(plan, say)
            save()
            say()
    summary(plan, done, report, say, args.no_compile)
    save()
    say(f"total {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
