"""Whole-step capture (portanet/step/capture.py) on every backend, through a stand-in for a CUDA graph.

No CUDA here, so ``ReplayGraph`` plays the graph: recording runs the step once (a real recording runs nothing; the
plan's first replay is then skipped), and each replay runs the recorded closure again, writes its results into the
arrays the recording returned, and fails the test if the rerun changed any host-side state that a real graph could
not change (step counts kept as Python ints, an option, a generator's host stream): such a value would be baked
into a real recording and repeat on every replay. On strict:device1 every exit from the device is trapped too, so a
host synchronisation inside the recorded step fails as it would in a CUDA capture. The real adapters
(backends/torch.py TorchStepGraph, backends/cupy.py CupyStepGraph) run in test_gpu.py where there is a GPU.
"""
import numpy as np
import pytest

import portanet as pn
from portanet.backends.base import CaptureUnsupported, StepGraph
from portanet.step import capture as capture_module

from conftest import Ctx, _make
from test_strict_device import ExitGuard


def _host_state(model, optimizer, registered):
    """What a replay must leave alone: Python scalars of the optimizer's state and groups, and (unless registered
    with the graph, as torch registers its generators) the generators' host state."""
    scalars = []
    for flat in optimizer._flat:
        for fg in flat or ():
            scalars.append(sorted((k, v) for k, v in fg.state.items() if not hasattr(v, "shape")))
    for p, st in optimizer.state.items():
        scalars.append(sorted((k, v) for k, v in st.items() if not hasattr(v, "shape")))
    options = [sorted((k, v) for k, v in g.items() if k != "params") for g in optimizer.param_groups]
    gens = [] if registered else [bytes(np.asarray(g.get_state())) for _, g in model.named_generators()
                                  if g.backend_name != "torch"]
    return scalars, options, gens


class ReplayGraph(StepGraph):
    def __init__(self, model, optimizer, generators="register"):
        self.model, self.optimizer, self.generators = model, optimizer, generators
        self.recordings = self.replays = 0
        self._skip_next = False

    def warmup(self, fn):
        return fn()

    def capture(self, fn, generators=()):
        if generators and self.generators == "refuse":
            raise CaptureUnsupported("this stand-in refuses generators, as CuPy's graph does")
        self.fn, self.outputs = fn, fn()
        self.recordings += 1
        self._skip_next = True              # the step ran already: the plan's first replay is this batch's step
        return self.outputs

    def replay(self):
        self.replays += 1
        if self._skip_next:
            self._skip_next = False
            return
        counters = [(m, m.num_batches_tracked) for m in self.model.modules() if hasattr(m, "num_batches_tracked")]
        before = _host_state(self.model, self.optimizer, self.generators == "register")
        new = self.fn()
        for m, n in counters:               # a real replay runs no Python: the plan advances these itself
            m.num_batches_tracked = n
        after = _host_state(self.model, self.optimizer, self.generators == "register")
        assert after == before, f"the recorded step changed host state a CUDA graph would replay stale: {before} -> {after}"
        for dest, value in zip(self.outputs, new):
            dest[...] = value


@pytest.fixture
def stand_in(monkeypatch):
    made = []

    def install(kind="register"):
        def graph_for(device):
            return made[-1]

        def make(model, optimizer):
            made.append(ReplayGraph(model, optimizer, kind))
            return made[-1]

        monkeypatch.setattr(capture_module, "graph_for", graph_for)
        monkeypatch.setattr(pn.train, "graph_for", graph_for)
        monkeypatch.setattr(pn.train, "check_mode", lambda capture, device: capture is not False)
        return make
    return install


def _data(n=100, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features))
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)


def _run(ctx, opt_name, capture, make=None, layers="plain", epochs=3, x=None, y=None, schedule=True):
    pn.seed(3)
    extra = {"plain": [], "bn": [pn.BatchNorm1d(16)], "dropout": [pn.Dropout(0.2)]}[layers]
    model = pn.Sequential(pn.Dense(6, 16), pn.ReLU(), *extra, pn.Dense(16, 3), device=ctx.device).to(
        dtype=ctx.dtype_name)
    opt = {"SGD": lambda ps: pn.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3),
           "Adam": lambda ps: pn.optim.Adam(ps, lr=0.01),
           "AdamW": lambda ps: pn.optim.AdamW(ps, lr=0.01, amsgrad=True),
           "RMSprop": lambda ps: pn.optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5),
           "Adagrad": lambda ps: pn.optim.Adagrad(ps, lr=0.1, lr_decay=0.01)}[opt_name](model.parameters())
    graph = make(model, opt) if make else None
    if x is None:
        x, y = _data()
    loader = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=1, device=ctx.device, dtype=ctx.dtype_name)
    callbacks = [pn.LearningRateScheduler(pn.optim.StepLR(opt, 1, gamma=0.5))] if schedule else []
    hist = pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=epochs, verbose=0, capture=capture,
                  callbacks=callbacks)
    return model, opt, hist, graph


@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_captured_fit_equals_eager_fit(ctx, opt_name, stand_in):
    """100 samples in batches of 16: six full batches a epoch replayed and a partial one run eagerly; the learning
    rate halves every epoch, so each epoch records anew; every optimizer's step count lives on the device."""
    make = stand_in()
    model, opt, hist, graph = _run(ctx, opt_name, True, make)
    ref, ref_opt, ref_hist, _ = _run(ctx, opt_name, False)
    # epoch 1: first step checked eagerly, two warm-up steps, then recorded; later epochs record at once
    assert graph.recordings == 3 and graph.replays == (6 - 3) + 6 + 6
    for p, q in zip(model.parameters(), ref.parameters()):
        ctx.close(p.data, ctx.host(q.data), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(hist["loss"], ref_hist["loss"], rtol=2e-5)
    for st in opt.state.values():               # counts are Python ints again after fit, for state_dict
        assert all(not hasattr(v, "shape") or v.ndim > 0 for v in st.values())
    assert opt.state_dict()["state"] == {} or isinstance(next(iter(opt.state.values())).get("step", 0), int)


def test_a_batchnorm_counts_every_replayed_batch(ctx, stand_in):
    model, _, _, graph = _run(ctx, "Adam", True, stand_in(), layers="bn")
    ref, _, _, _ = _run(ctx, "Adam", False, layers="bn")
    assert model[2].num_batches_tracked == ref[2].num_batches_tracked == 3 * 7
    for name in ("running_mean", "running_var"):
        ctx.close(getattr(model[2], name), ctx.host(getattr(ref[2], name)), rtol=2e-5, atol=2e-6)


def test_dropout_records_where_generators_register_and_runs_eagerly_where_not(ctx, stand_in):
    make = stand_in("register")
    model, _, _, graph = _run(ctx, "SGD", True, make, layers="dropout")
    ref, _, _, _ = _run(ctx, "SGD", False, layers="dropout")
    assert graph.recordings == 3
    for p, q in zip(model.parameters(), ref.parameters()):
        ctx.close(p.data, ctx.host(q.data), rtol=2e-5, atol=2e-6)
    make = stand_in("refuse")
    model, _, _, graph = _run(ctx, "SGD", "auto", make, layers="dropout")
    assert graph.recordings == 0 and graph.replays == 0
    for p, q in zip(model.parameters(), ref.parameters()):
        ctx.close(p.data, ctx.host(q.data), rtol=1e-6, atol=1e-7)
    with pytest.raises(CaptureUnsupported, match="refuses generators"):
        _run(ctx, "SGD", True, stand_in("refuse"), layers="dropout")


def test_a_nonfinite_loss_in_a_captured_run_names_its_epoch_and_step(ctx, stand_in):
    x, y = _data()
    x[16 * 4 + 3, 2] = np.nan                     # epoch 1, step 5: a replayed batch (after 1 + 2 eager and 1)
    for capture, make in ((True, stand_in()), (False, None)):
        with pytest.raises(pn.NonFiniteError, match="epoch 1, step 5"):
            pn.seed(0)
            model = pn.Sequential(pn.Dense(6, 4), device=ctx.device).to(dtype=ctx.dtype_name)
            opt = pn.optim.Adam(model.parameters())
            if make:
                make(model, opt)
            loader = pn.DataLoader(x, y, batch_size=16, device=ctx.device, dtype=ctx.dtype_name)
            pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=2, verbose=0, capture=capture)


def test_the_stand_in_catches_a_count_baked_into_the_recording(monkeypatch, stand_in):
    """Without moving the step counts to the device, a rerun changes Adam's Python count: the check fires (so the
    equality tests above prove something)."""
    from portanet.step.flat import FlatGroup

    monkeypatch.setattr(FlatGroup, "counts_to_device", lambda self, optimizer: None)
    ctx = Ctx("cpu", "float32")
    with pytest.raises(AssertionError, match="host state a CUDA graph would replay stale"):
        _run(ctx, "Adam", True, stand_in(), schedule=False)


def test_a_recorded_step_never_leaves_device1(monkeypatch, stand_in):
    guard = ExitGuard(monkeypatch)
    ctx = Ctx("strict:device1", "float32")
    model, _, _, graph = _run(ctx, "Adam", True, stand_in(), epochs=2)
    assert graph.replays >= 8 and guard.to_host_calls > 0


def spy_read(real, name, recording, made):
    def reading(self, *args):
        if recording[0]:
            made.append((name, tuple(self.shape)))
        return real(self, *args)
    return reading


def _spy_host_values(monkeypatch):
    """made: while ReplayGraph records or replays, every torch.asarray / as_tensor / tensor of a Python value (a
    host-to-device copy) and every read of a tensor's value on the host (item, tolist, bool, float, int: a
    device-to-host copy) is listed in it; a CUDA graph capture refuses both, since each synchronises the stream."""
    import torch

    recording, made = [False], []

    def spy(real):
        def creating(data, *args, **kwargs):
            if recording[0] and isinstance(data, (bool, int, float, list, tuple)):
                made.append((real.__name__, data))
            return real(data, *args, **kwargs)
        return creating

    for name in ("asarray", "as_tensor", "tensor"):
        monkeypatch.setattr(torch, name, spy(getattr(torch, name)))
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):     # device -> host reads: a sync
        monkeypatch.setattr(torch.Tensor, name, spy_read(getattr(torch.Tensor, name), name, recording, made))
    real_capture, real_replay = ReplayGraph.capture, ReplayGraph.replay

    def during(method):
        def run(self, *args):
            recording[0] = True
            try:
                return method(self, *args)
            finally:
                recording[0] = False
        return run

    monkeypatch.setattr(ReplayGraph, "capture", during(real_capture))
    monkeypatch.setattr(ReplayGraph, "replay", during(real_replay))
    return made


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_a_recorded_torch_step_makes_no_tensor_from_host_values(monkeypatch, stand_in, opt_name):
    """torch.asarray / as_tensor / tensor of a Python value onto a CUDA device copies it from the host and
    synchronises the stream, which a CUDA graph capture refuses; array-api-compat does it for every Python scalar
    given to maximum (ReLU's maximum(x, 0.0)). On torch:cpu the calls are what a CUDA capture would meet."""
    made = _spy_host_values(monkeypatch)
    ctx = Ctx("torch:cpu", "float32")
    _, _, _, graph = _run(ctx, opt_name, True, stand_in(), epochs=2)
    assert graph.recordings == 2 and made == []


LAYER_SETS = {
    "cnn": lambda: [pn.Conv2d(1, 4, 3, padding=1), pn.BatchNorm2d(4), pn.ReLU(), pn.MaxPool2d(2), pn.Dropout2d(0.1),
                    pn.Conv2d(4, 4, 3, padding=1, bias=False), pn.ELU(), pn.AvgPool2d(2), pn.GlobalAvgPool2d(),
                    pn.Dense(4, 3)],
    "residual": lambda: [pn.Flatten(), pn.Dense(16, 8), pn.Residual(pn.Dense(8, 8), pn.GELU(), pn.Dense(8, 8)),
                         pn.Concat(pn.Sequential(pn.LeakyReLU(0.1)), pn.Sequential(pn.Tanh(), pn.Sigmoid())),
                         pn.BatchNorm1d(16), pn.Dropout(0.2), pn.PReLU(), pn.Dense(16, 3)],
}
LOSSES = {"cross-entropy": lambda: (pn.CrossEntropyLoss(label_smoothing=0.1), "labels"),
          "bce-with-logits": lambda: (pn.BCEWithLogitsLoss(), "multi"),
          "huber": lambda: (pn.HuberLoss(), "values"), "mse": lambda: (pn.MSELoss(), "values")}


@pytest.mark.parametrize("layers", sorted(LAYER_SETS))
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_no_layer_or_loss_makes_a_tensor_from_host_values_in_a_recorded_torch_step(monkeypatch, stand_in, layers,
                                                                                    loss_name):
    """The same check over every layer kind and the losses, with RMSprop (its square root and its division)."""
    made = _spy_host_values(monkeypatch)
    device = pn.device("torch:cpu")
    pn.seed(0)
    model = pn.Sequential(*LAYER_SETS[layers](), device=device)
    opt = pn.optim.RMSprop(model.parameters(), lr=0.01, momentum=0.5)
    graph = stand_in()(model, opt)
    loss, targets = LOSSES[loss_name]()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 1, 4, 4)).astype(np.float32)
    y = {"labels": rng.integers(0, 3, 40), "multi": (rng.random((40, 3)) > 0.5).astype(np.float32),
         "values": rng.standard_normal((40, 3)).astype(np.float32)}[targets]
    loader = pn.DataLoader(x, y, batch_size=8, shuffle=True, seed=1, device=device)
    pn.fit(model, loss, opt, loader, epochs=1, verbose=0, capture=True)
    assert made == [] and graph.recordings == 1 and graph.replays == 2     # 5 batches: 1 checked, 2 warm-ups


def test_torch_namespace_functions_given_python_scalars_equal_array_api_compats():
    """The torch namespace's maximum etc. make their scalar argument with torch.full (backends/torch.py); the
    results are array-api-compat's, NaN and signed zeros included."""
    import array_api_compat.torch as compat
    import torch

    from portanet.backends.torch import SCALAR_ARGS

    xp = pn.device("torch:cpu").xp
    x = torch.tensor([-1.5, -0.0, 0.0, 0.5, float("nan"), float("inf")])
    for name, positions in SCALAR_ARGS.items():
        fn, ref = getattr(xp, name), getattr(compat, name)
        assert fn.__wrapped__ is ref
        arg = x > 0 if name.startswith("logical") else x
        for value in ((True,) if name.startswith("logical") else (0.0, -2, 0.5)):
            for args in [(value, arg) if i == 0 else (arg, value) for i in positions]:
                got, want = fn(*args), ref(*args)
                assert got.dtype == want.dtype and got.shape == want.shape, name
                torch.testing.assert_close(got, want, equal_nan=True, rtol=0, atol=0)
                if got.is_floating_point():
                    assert torch.equal(torch.signbit(got), torch.signbit(want)), name


def test_capture_true_where_no_graph_can_record_names_the_backends_that_can(ctx):
    if ctx.device.backend.step_graph(ctx.device.native) is not None:
        pytest.skip("this backend records")
    with pytest.raises(ValueError, match=r"capture=True .* runs on gpu \(CuPy\) and torch:cuda.*capture='auto'"):
        _run(ctx, "SGD", True, epochs=1)
    with pytest.raises(ValueError, match="capture must be 'auto', True or False"):
        _run(ctx, "SGD", "yes", epochs=1)
    model, _, _, _ = _run(ctx, "SGD", "auto", epochs=1)         # auto: eagerly, as capture=False
    ref, _, _, _ = _run(ctx, "SGD", False, epochs=1)
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_array_equal(ctx.host(p.data), ctx.host(q.data))


# -- the real CUDA graphs (skipped without CUDA) ---------------------------------------------------------------------
GPU_CONFIGS = [("gpu", "float32"), ("torch:cuda", "float32"), ("torch:cuda", "float64")]


@pytest.fixture(params=GPU_CONFIGS, ids=lambda c: f"{c[0]}-{c[1]}")
def gpu_ctx(request):
    return _make(*request.param)


@pytest.fixture
def counted(monkeypatch):
    """The real StepGraph of the device, with its recordings and replays counted."""
    graphs = []
    real = capture_module.graph_for

    def graph_for(device):
        graph = real(device)
        graph.recordings = graph.replays = 0
        capture, replay = graph.capture, graph.replay

        def counted_capture(fn, generators=()):
            graph.recordings += 1
            return capture(fn, generators)

        def counted_replay():
            graph.replays += 1
            replay()

        graph.capture, graph.replay = counted_capture, counted_replay
        graphs.append(graph)
        return graph

    monkeypatch.setattr(pn.train, "graph_for", graph_for)
    return graphs


@pytest.mark.parametrize("opt_name,layers", [("SGD", "plain"), ("Adam", "bn"), ("AdamW", "plain")])
def test_a_cuda_graph_step_equals_the_eager_step(gpu_ctx, counted, opt_name, layers):
    """On the real graph: six full batches a epoch replayed, the partial one eager, weights as eager's to float
    rounding (the recorded step runs the same kernels; Adam's bias corrections come from a count on the device)."""
    model, _, hist, _ = _run(gpu_ctx, opt_name, True, layers=layers)
    ref, _, ref_hist, _ = _run(gpu_ctx, opt_name, False, layers=layers)
    (graph,) = counted
    assert graph.recordings == 3 and graph.replays == 15
    for p, q in zip(model.parameters(), ref.parameters()):
        gpu_ctx.close(p.data, gpu_ctx.host(q.data), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hist["loss"], ref_hist["loss"], rtol=1e-4)


def test_a_nonfinite_loss_in_a_cuda_graph_names_its_epoch_and_step(gpu_ctx):
    x, y = _data()
    x[16 * 4 + 3, 2] = np.nan
    pn.seed(0)
    model = pn.Sequential(pn.Dense(6, 4), device=gpu_ctx.device).to(dtype=gpu_ctx.dtype_name)
    loader = pn.DataLoader(x, y, batch_size=16, device=gpu_ctx.device, dtype=gpu_ctx.dtype_name)
    with pytest.raises(pn.NonFiniteError, match="epoch 1, step 5"):
        pn.fit(model, pn.CrossEntropyLoss(), pn.optim.Adam(model.parameters()), loader, epochs=2, verbose=0,
               capture=True)


def test_dropout_in_a_cuda_graph(gpu_ctx, counted):
    """torch registers its generator with the graph (each replay draws new masks); CuPy's Philox counter is on the
    host, so "auto" trains eagerly there and True says why."""
    if gpu_ctx.spec == "gpu":
        model, _, _, _ = _run(gpu_ctx, "SGD", "auto", layers="dropout")
        ref, _, _, _ = _run(gpu_ctx, "SGD", False, layers="dropout")
        for p, q in zip(model.parameters(), ref.parameters()):
            gpu_ctx.close(p.data, gpu_ctx.host(q.data), rtol=1e-5, atol=1e-6)
        with pytest.raises(CaptureUnsupported, match="Philox generator"):
            _run(gpu_ctx, "SGD", True, layers="dropout")
        return
    model, _, hist, _ = _run(gpu_ctx, "SGD", True, layers="dropout")
    assert counted[0].recordings == 3 and np.all(np.isfinite(hist["loss"]))


def test_gpu_replays_survive_free_all_blocks():
    """On CuPy: the memory pool emptied (free_all_blocks) before every batch, between the replays of one recording,
    trains exactly as without it (a block the recording freed would otherwise go back to the driver)."""
    ctx = _make("gpu", "float32")
    import cupy

    class FreeingThePool:
        def __init__(self, loader):
            self.loader = loader

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            for batch in self.loader:
                cupy.get_default_memory_pool().free_all_blocks()
                yield batch

    def run(wrap):
        pn.seed(3)
        model = pn.Sequential(pn.Dense(6, 16), pn.ReLU(), pn.Dense(16, 3), device=ctx.device)
        opt = pn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x, y = _data()
        loader = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=1, device=ctx.device)
        hist = pn.fit(model, pn.CrossEntropyLoss(), opt, wrap(loader), epochs=2, verbose=0, capture=True)
        return model, hist

    model, hist = run(FreeingThePool)
    ref, ref_hist = run(lambda loader: loader)
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_array_equal(ctx.host(p.data), ctx.host(q.data))
    assert hist["loss"] == ref_hist["loss"]


# -- CupyStepGraph's memory, with a stand-in for CuPy (runs everywhere) ------------------------------------------------
class _FakeCupy:
    """What CupyStepGraph.capture uses of CuPy: streams that record events and captures, and allocators."""

    class cuda:
        allocator = staticmethod(lambda size: bytearray(size))

        class Stream:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def record(self):
                return "event"

            def wait_event(self, event):
                pass

            def begin_capture(self):
                self.capturing = True

            def end_capture(self):
                self.capturing = False
                return "graph"

        @classmethod
        def get_allocator(cls):
            return cls.allocator

        @classmethod
        def using_allocator(cls, allocator):
            import contextlib

            @contextlib.contextmanager
            def scope():
                saved, cls.allocator = cls.allocator, allocator
                try:
                    yield
                finally:
                    cls.allocator = saved
            return scope()

        @classmethod
        def get_current_stream(cls):
            return cls.Stream()


class _FakeNative:
    id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_cupy_graph_holds_every_block_allocated_while_recording():
    """A block the recorded step allocates and frees must stay allocated for the graph's life: CuPy's
    free_all_blocks() (run on out-of-memory, or by a user) would otherwise give it back to the driver while replays
    still write to it. The next recording releases the last one's blocks."""
    import weakref

    from portanet.backends.cupy import CupyStepGraph

    fake = _FakeCupy
    graph = object.__new__(CupyStepGraph)
    graph._cupy, graph._native, graph._stream, graph._graph, graph._held = fake, _FakeNative(), fake.cuda.Stream(), \
        None, None
    seen = []

    class Block(bytearray):
        pass

    fake.cuda.allocator = staticmethod(lambda size: Block(size))

    def step():
        temporary = fake.cuda.get_allocator()(64)        # allocated and dropped inside the recorded step
        seen.append(weakref.ref(temporary))
        return "loss"

    assert graph.capture(step) == "loss" and graph._graph == "graph"
    assert seen[0]() is not None and len(graph._held) == 1          # held though the step let it go
    assert fake.cuda.get_allocator()(8) is not None and len(graph._held) == 1   # outside the capture: not held
    graph.capture(step)
    assert seen[0]() is None and seen[1]() is not None               # the new recording released the old blocks
