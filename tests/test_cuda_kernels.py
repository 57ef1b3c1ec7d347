"""The CuPy backend's CUDA kernels (backends/cuda_sources.py, cuda_kernels.py) and cuBLAS route (cublas.py).

Without a GPU, three checks run wherever their tools are:
- NVRTC compiles every CUDA source with the options CuPy itself adds, and the PTX shows every kernel and, where
  the kernel promises the standard code's bits, no contracted multiply-add (CuPy's nvrtc wheel; skipped without).
- The host compiler runs the same source text on the CPU (tests/cuda_host.py: every thread of the launch shape the
  wrappers ask for; in the reductions, a block's threads are real threads meeting at their barriers) through the
  real Python wrappers, whose arguments are checked against each kernel's C signature. portanet's own training
  code on NumPy then uses them in place of the C kernels: the kernels with elementwise loops (RNG, SGD, Adam, ReLU,
  bias, uint8) must give the standard code's bits, and a whole fit with every kernel (the reductions too) the
  standard code's history and weights to float tolerance. The kernels' own cases (NaN, -0.0, infinite logits,
  ties, rows out of range) run on the host build and on a GPU alike (fixture kernel_device).
- The cuBLAS argument plans (transposes, leading dimensions) against a column-major GEMM written from cuBLAS's
  documentation, on NumPy memory.
On a GPU (skipped elsewhere) every kernel runs against the standard code on CuPy, and the cuBLAS route against
cupy.matmul.
"""
import contextlib
import os
import re
import types

import numpy as np
import pytest

import portanet as pn
from portanet import backends
from portanet.backends import counter_rng, cublas, cuda_kernels, cuda_sources, kernels
from cuda_host import FakeCupy, HostKernel
import cuda_host

GPU_REASON = backends.get("cupy").unavailable()
needs_gpu = pytest.mark.skipif(GPU_REASON is not None, reason=f"cupy/gpu: {GPU_REASON}")
NO_FMA = ("sgd", "adam", "elementwise", "column_sum", "batch", "count_correct")   # modules with no fma at all


# ---- NVRTC: every source compiles as CuPy compiles it ------------------------------------------------------------

def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
        return nvrtc, None
    except Exception as e:       # no NVRTC library: cupy-cuda12x without nvidia-cuda-nvrtc-cu12
        return None, f"NVRTC not importable ({type(e).__name__}: {str(e).strip()[:120]}); " \
                     "pip install nvidia-cuda-nvrtc-cu12"


def _cupy_options(extra):
    """CuPy's own additions to a RawModule's options: cupy._core.core.assemble_cupy_compiler_options (include
    paths, --std), then cupy.cuda.compiler's -ftz=true, an -arch and --device-as-default-execution-space."""
    import cupy._core.core as core

    return tuple(core.assemble_cupy_compiler_options(cuda_sources.OPTIONS)) + (
        "-ftz=true", extra, "--device-as-default-execution-space")


def _compile(nvrtc, name, arch):
    prog = nvrtc.createProgram(cuda_sources.SOURCES[name], name + ".cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, list(_cupy_options(arch)))
        except nvrtc.NVRTCError:
            pytest.fail(f"{name} does not compile:\n{nvrtc.getProgramLog(prog)}")
        out = nvrtc.getCUBIN(prog) if arch.startswith("-arch=sm_") else nvrtc.getPTX(prog)
        return out.decode() if isinstance(out, bytes) and not arch.startswith("-arch=sm_") else out
    finally:
        nvrtc.destroyProgram(prog)


@pytest.mark.parametrize("name", list(cuda_sources.SOURCES))
def test_every_source_compiles_with_cupys_options(name):
    nvrtc, reason = _nvrtc()
    if nvrtc is None:
        pytest.skip(reason)
    cubin = _compile(nvrtc, name, "-arch=sm_90")           # what CuPy builds for an H100/H200
    assert len(cubin) > 1000
    ptx = _compile(nvrtc, name, "-arch=compute_90")
    entries = re.findall(r"\.entry\s+(\w+)", ptx)
    assert entries == list(cuda_sources.KERNELS[name])
    # each kernel's text up to the next kernel or device function (libdevice's, such as pow's, come last)
    bodies = dict(zip(entries, (re.split(r"^\.func\b", b, flags=re.M)[0]
                                for b in re.split(r"\.entry\s+\w+", ptx)[1:])))
    for kernel, body in bodies.items():
        # normal_*: Box-Muller's log/sin/cos; adam_counted_*: the bias corrections' pow. libdevice computes those
        # with FMAs of its own (CuPy's log, sin and power too); the update itself is adam_*'s template, checked there
        exact = (name in NO_FMA and not kernel.startswith("adam_counted")) or (name == "rng" and
                                                                               not kernel.startswith("normal"))
        if exact:   # --fmad=false held: no multiply and add fused into one rounding
            assert not re.search(r"\bfma\.", body), f"{kernel} contracts a multiply-add"


def test_fmad_false_is_what_keeps_the_products_apart():
    """The check above can fail: without --fmad=false NVRTC contracts SGD's and Adam's updates into FMAs."""
    nvrtc, reason = _nvrtc()
    if nvrtc is None:
        pytest.skip(reason)
    import cupy._core.core as core

    prog = nvrtc.createProgram(cuda_sources.SOURCES["sgd"], "sgd.cu", [], [])
    try:
        nvrtc.compileProgram(prog, list(core.assemble_cupy_compiler_options(())) + ["-arch=compute_90"])
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    assert re.search(r"\bfma\.", ptx.decode() if isinstance(ptx, bytes) else ptx)


# NumPy's window kernels (convolution and pooling) have no CUDA twin yet: issue 13 asks for per-backend kernels only
# where measured faster than the standard code, and no GPU has measured these; CuPy runs the standard code there.
NUMPY_ONLY = {"relu", "im2col", "col2im", "maxpool", "maxpool_grad", "bias_add_rows", "bias_grad_rows", "bias_relu_rows",
              "relu_grad_sum_rows"}


def test_the_wrappers_cover_the_numpy_kernels():
    assert set(cuda_kernels.TABLE) == (set(kernels.NAMES) - NUMPY_ONLY) | {"count_correct"}
    declared = {k for names in cuda_sources.KERNELS.values() for k in names}
    for module, source in cuda_sources.SOURCES.items():
        assert set(re.findall(r'extern "C" __global__ void (\w+)\(', source)) == set(cuda_sources.KERNELS[module])
    assert len(declared) == sum(len(v) for v in cuda_sources.KERNELS.values())


# ---- the same sources on the host ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def host_build(tmp_path_factory):
    """Every module compiled for the CPU with its launchers (tests/cuda_host.py)."""
    libs = cuda_host.build(tmp_path_factory.mktemp("cuda_host"))
    if isinstance(libs, str):
        pytest.skip(libs)
    return libs


@pytest.fixture
def on_host(host_build, monkeypatch):
    """cuda_kernels as on a GPU, but over FakeCupy arrays and the host build. Yields the launched HostKernels."""
    launched = {}

    def kernel(module, name):
        if name not in launched:
            sig = cuda_host.signatures(cuda_sources.SOURCES[module])[name]
            launched[name] = HostKernel(name, sig, host_build[module])
        return launched[name]

    monkeypatch.setattr(cuda_kernels, "_kernel", kernel)
    monkeypatch.setattr(cuda_kernels, "_nd", FakeCupy)
    monkeypatch.setattr(cuda_kernels, "_get_device", lambda: 0)
    yield launched


def _wrap(fn):
    """A CUDA wrapper taking NumPy arrays, as portanet's code passes them, dressed as FakeCupy."""
    def call(*args):
        out = fn(*[FakeCupy.of(a) if isinstance(a, np.ndarray) else a for a in args])
        return out.a if isinstance(out, FakeCupy) else out
    return call


EXACT_KERNELS = frozenset(cuda_kernels.TABLE) - {"relu_grad_sum", "bias_grad", "softmax_ce", "count_correct",
                                                 "gemm_tn"}
"""The kernels that add nothing up in another order than the standard code: they must give its bits."""


def _cuda_on_numpy(on_host, monkeypatch, offered):
    """portanet's NumPy backend, with its fused kernels in ``offered`` replaced by the CUDA ones running on the host
    (the others are None, so the standard code runs there). ``standard()`` runs a block with none."""
    numpy_backend = backends.get("numpy")
    state = {"on": True}

    def kernel(name):
        if name not in cuda_kernels.TABLE:
            if name in NUMPY_ONLY:
                return None                       # as CupyBackend.kernel answers for them
            raise ValueError(name)
        return _wrap(cuda_kernels.TABLE[name]) if state["on"] and name in offered else None

    monkeypatch.setattr(numpy_backend, "kernel", kernel)

    def standard(fn):
        state["on"] = False
        try:
            return fn()
        finally:
            state["on"] = True

    return types.SimpleNamespace(standard=standard, launched=on_host)


@pytest.fixture
def cuda_on_numpy(on_host, monkeypatch):
    """The CUDA kernels that promise the standard code's bits (EXACT_KERNELS) in place of NumPy's."""
    return _cuda_on_numpy(on_host, monkeypatch, EXACT_KERNELS)


@pytest.fixture
def all_cuda_on_numpy(on_host, monkeypatch):
    """Every CUDA kernel but the cuBLAS GEMM in place of NumPy's: the reductions too (column sums, cross-entropy,
    correct counts), each run with its GPU launch shape and barriers."""
    return _cuda_on_numpy(on_host, monkeypatch, frozenset(cuda_kernels.TABLE) - {"gemm_tn"})


from test_kernels import FUSED, _train_params  # noqa: E402  (the NumPy kernels' own optimizer runs)
from portanet.step.fusion import plan  # noqa: E402


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,opts", FUSED, ids=[f"{n}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for n, o in FUSED])
def test_cuda_optimizer_source_gives_the_standard_codes_bits_on_the_host(name, opts, dtype, cuda_on_numpy):
    fused = _train_params(name, opts, dtype)
    assert cuda_on_numpy.launched[("sgd" if name == "SGD" else "adam") + ("_f32" if dtype == "float32" else
                                                                          "_f64")].calls > 0
    standard = cuda_on_numpy.standard(lambda: _train_params(name, opts, dtype))
    for a, b in zip(fused, standard):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)


ADAMS = [(n, o) for n, o in FUSED if n != "SGD"]


def _adam_counting_on_the_device(name, opts, dtype, device=None):
    """test_kernels._train_params for Adam, but from the second step on the step count is a 0-d array on the device,
    as in a recorded step (flat.py's counts_to_device): the weights, moments and count after six steps, as host
    arrays. NumPy arrays, or on ``device`` (a Device)."""
    def counts_to_device(step, opt):
        if step == 0:
            for group in opt._flat:
                for fg in group:
                    fg.counts_to_device(opt)

    arrays = _train_params(name, opts, dtype, device=device, after_step=counts_to_device)
    assert any(a.shape == () for a in arrays)                      # the count, on the device
    return arrays


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,opts", ADAMS, ids=[f"{n}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for n, o in ADAMS])
def test_adam_counting_on_the_device_is_the_standard_code_on_the_host(name, opts, dtype, all_cuda_on_numpy):
    """adam_counted (advance_count, then the update with the bias corrections from the device count) against adam.py's
    _update with the same 0-d count: two launches a step for the twenty-odd of the standard code. The counts agree
    exactly; the rest to a few ulps (up to 2 in float32 and 6 in float64 here, compounded over five steps), because
    the kernel's b^t is the C library's pow and the standard code's NumPy's array power, vectorised (0.99 ** 3.0:
    glibc 0.970299, NumPy 2.4 with AVX-512 0.9702989999999999). On a GPU both are CUDA's pow."""
    fused = _adam_counting_on_the_device(name, opts, dtype)
    suffix = "_f32" if dtype == "float32" else "_f64"
    assert all_cuda_on_numpy.launched["adam_counted" + suffix].calls == 5
    assert all_cuda_on_numpy.launched["advance_count" + suffix].calls == 5
    standard = all_cuda_on_numpy.standard(lambda: _adam_counting_on_the_device(name, opts, dtype))
    assert len(fused) == len(standard)
    tol = dict(rtol=2e-6, atol=1e-7) if dtype == "float32" else dict(rtol=1e-14, atol=1e-15)
    for a, b in zip(fused, standard):
        if a.shape == ():
            assert a == b == 6.0                                    # the count, advanced on the device
        else:
            np.testing.assert_allclose(a, b, **tol)


EXACT_POWERS = [("Adam", dict(lr=1e-2, betas=(0.5, 0.75))),
                ("AdamW", dict(lr=1e-2, betas=(0.5, 0.75), weight_decay=0.1, amsgrad=True))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,opts", EXACT_POWERS, ids=["Adam", "AdamW-amsgrad"])
def test_adam_counting_on_the_device_gives_the_standard_codes_bits_where_pow_is_exact(name, opts, dtype,
                                                                                      all_cuda_on_numpy):
    """With betas whose powers are exact in float32 (0.5^t, 0.75^t for t <= 6), NumPy's pow and the C library's
    agree, so adam_counted must give the standard code's bits, as cuda_kernels.adam_counted promises: the bias
    corrections in T, in _update's order (computing them in double, say, passes the test above)."""
    fused = _adam_counting_on_the_device(name, opts, dtype)
    standard = all_cuda_on_numpy.standard(lambda: _adam_counting_on_the_device(name, opts, dtype))
    assert all_cuda_on_numpy.launched["adam_counted" + ("_f32" if dtype == "float32" else "_f64")].calls == 5
    for a, b in zip(fused, standard, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name,opts", ADAMS, ids=[f"{n}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for n, o in ADAMS])
def test_adam_counting_refused_advances_the_count_once(name, opts, all_cuda_on_numpy, monkeypatch):
    """adam_counted refusing its arrays (here: all on another GPU than the current one) launches nothing, so that
    the standard code it falls back to advances the device count, once a step: no check may follow advance_count."""
    monkeypatch.setattr(cuda_kernels, "_get_device", lambda: 1)
    fused = _adam_counting_on_the_device(name, opts, "float32")
    assert not any(k.calls for k in all_cuda_on_numpy.launched.values())
    standard = all_cuda_on_numpy.standard(lambda: _adam_counting_on_the_device(name, opts, "float32"))
    for a, b in zip(fused, standard, strict=True):
        np.testing.assert_array_equal(a, b)                         # the count among them: 6.0 on both sides


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_amsgrad_keeps_nan_in_its_maximum_on_the_host(dtype, cuda_on_numpy):
    """AMSGrad's running maximum of v keeps a NaN, as the standard code's maximum does: a NaN in the first weight's
    gradient at step 4 of 6 (the kernel runs from step 2; a finite maximum until then) leaves the same NaNs in the
    weights and state, and the rest untouched."""
    def nan_at_step_4():
        calls = []

        def grads(g):
            calls.append(g)
            if len(calls) == 7:                       # _train_params asks for 2 gradients a step, the weight's first
                g.flat[0] = np.nan
            return g
        return grads

    opts = dict(lr=1e-2, amsgrad=True)
    fused = _train_params("Adam", opts, dtype, grads=nan_at_step_4())
    standard = cuda_on_numpy.standard(lambda: _train_params("Adam", opts, dtype, grads=nan_at_step_4()))
    assert np.isnan(fused[0].flat[0]) and not np.isnan(fused[0].flat[1:]).any()
    for a, b in zip(fused, standard):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_layer_sources_give_the_standard_codes_bits_on_the_host(dtype, cuda_on_numpy):
    """Dense + ReLU (bias_relu), a Dense alone (bias_add), ReLU backward (relu_grad), uint8 batches (scale_u8,
    take_scale_u8) and SGD's taken-gradient update (sgd_apply), each as portanet's code calls it."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((37, 12)).astype(dtype)
    x[0, :3] = 0.0
    dy = rng.standard_normal((37, 3)).astype(dtype)
    dy[1, 0] = np.nan
    images, labels = rng.integers(0, 256, (50, 4, 3), dtype=np.uint8), rng.integers(0, 3, 50)

    def run():
        pn.seed(5)
        model = pn.Sequential(pn.Dense(12, 16, dtype=dtype), pn.ReLU(), pn.Dense(16, 8, dtype=dtype), pn.Sigmoid(),
                              pn.Dense(8, 3, dtype=dtype), pn.ReLU())
        runner = plan(model)                      # the step plan swaps the kernels in (portanet/step/fusion.py)
        out = runner.forward(x)
        dx = runner.backward(dy)
        batches = [b for shuffle in (False, True) for xb, yb in pn.DataLoader(
            images, labels, batch_size=16, shuffle=shuffle, seed=1, dtype=dtype) for b in (xb, yb)]
        fresh = np.random.default_rng(9)
        w, buf = fresh.standard_normal(301).astype(dtype), fresh.standard_normal(301).astype(dtype)
        for wd in (0.0, 1e-2):
            (pn.device("cpu").kernel("sgd_apply") or _sgd_apply_standard)(w, buf, 0.05, wd)
        return [out, dx] + [p.grad for p in model.parameters()] + batches + [w, buf]

    fused = run()
    for k in ("bias_add", "relu_grad", "scale_u8", "take_scale_u8", "sgd_apply"):
        assert cuda_on_numpy.launched[k + ("_f32" if dtype == "float32" else "_f64")].calls > 0, k
    standard = cuda_on_numpy.standard(run)
    assert len(fused) == len(standard)
    for a, b in zip(fused, standard):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_every_cuda_kernel_trains_as_the_standard_code_on_the_host(optimizer, all_cuda_on_numpy):
    """fit, two epochs of shuffled uint8 batches (the last one partial), with a validation set: Dense + ReLU pairs,
    cross-entropy and the accuracy count all run the CUDA kernels on the host build, the GEMMs stay NumPy's. The
    history and weights are the standard code's to float tolerance (the column sums and the loss add in another
    order), and every kernel the step uses was launched."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 20), dtype=np.uint8)
    y = x[:, :5].argmax(1)

    def run():
        pn.seed(0)
        model = pn.Sequential(pn.Dense(20, 40), pn.ReLU(), pn.Dense(40, 33), pn.ReLU(), pn.Dense(33, 5))
        opt = (pn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4) if optimizer == "sgd"
               else pn.optim.AdamW(model.parameters(), lr=1e-3))
        history = pn.fit(model, pn.CrossEntropyLoss(), opt, x, y, epochs=2, batch_size=64, validation_split=0.2,
                         verbose=0)
        return history, [p.data.copy() for p in model.parameters()]

    (history, weights), (want_history, want_weights) = run(), all_cuda_on_numpy.standard(run)
    assert list(history.keys()) == list(want_history.keys())
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        np.testing.assert_allclose(history[key], want_history[key], rtol=1e-5)
    for a, b in zip(weights, want_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    launched = {k for k, v in all_cuda_on_numpy.launched.items() if v.calls}
    assert {"column_sum_f32", "bias_add_f32", "softmax_ce_f32", "count_correct_f32",
            "take_scale_u8_f32", ("sgd_f32" if optimizer == "sgd" else "adam_f32")} <= launched, launched


def _sgd_apply_standard(w, buf, lr, wd):
    if wd:
        buf += wd * w
    w -= lr * buf


def test_cuda_wrappers_refuse_what_the_c_kernels_refuse(on_host):
    f32 = lambda *s: FakeCupy.of(np.zeros(s, np.float32))                          # noqa: E731
    w = f32(8)
    with pytest.raises(ValueError, match="do not overlap"):
        cuda_kernels.sgd(w, w, f32(8), 0.1, 0.9, 1.0, 0.0, False)
    with pytest.raises(ValueError, match="one dtype and one size"):
        cuda_kernels.sgd(f32(8), FakeCupy.of(np.zeros(8)), f32(8), 0.1, 0.9, 1.0, 0.0, False)
    with pytest.raises(TypeError, match="float32 or float64"):
        cuda_kernels.relu_grad(np.zeros(4, np.float32), f32(4), f32(4))            # a NumPy array, not CuPy
    with pytest.raises(TypeError, match="float32 or float64"):
        cuda_kernels.relu_grad(FakeCupy.of(np.zeros(4, np.int32)), f32(4), f32(4))
    strided = FakeCupy.of(np.zeros((4, 6), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="C-contiguous"):
        cuda_kernels.relu_grad(strided, f32(4, 3), f32(4, 3))
    with pytest.raises(ValueError, match="bias must be"):
        cuda_kernels.bias_relu(f32(5, 3), FakeCupy.of(np.zeros(3)))
    with pytest.raises(ValueError, match=r"\(batch, features\)"):
        cuda_kernels.bias_add(f32(15), f32(3))
    with pytest.raises(TypeError, match="int64 labels"):
        cuda_kernels.softmax_ce(f32(4, 3), FakeCupy.of(np.zeros(4, np.int32)), f32(4, 3), 0.25)
    with pytest.raises(ValueError, match="int64 row indices"):
        cuda_kernels.take_scale_u8(FakeCupy.of(np.zeros((10, 4), np.uint8)), FakeCupy.of(np.zeros(2, np.int32)),
                                   1.0, f32(2, 4))
    with pytest.raises(ValueError, match="hold len"):
        cuda_kernels.take_scale_u8(FakeCupy.of(np.zeros((10, 4), np.uint8)), FakeCupy.of(np.zeros(3, np.int64)),
                                   1.0, f32(2, 4))
    with pytest.raises(ValueError, match="counts"):
        cuda_kernels.count_correct(f32(4, 3), FakeCupy.of(np.zeros(4, np.int64)), FakeCupy.of(np.zeros(2, np.int64)),
                                   2)
    assert all(k.calls == 0 for k in on_host.values())                             # nothing was launched


def test_cuda_wrappers_take_arrays_that_only_touch(on_host):
    """Arrays side by side in one allocation, each ending where the next begins, do not overlap: the kernel runs
    (a refusal here would send every such call to the standard code without a word)."""
    flat = np.zeros(24, np.float32)
    w, g, buf = (FakeCupy.of(flat[i:i + 8]) for i in (0, 8, 16))
    g.a[:] = 1.0
    cuda_kernels.sgd(w, g, buf, 0.5, 0.9, 1.0, 0.0, False)
    assert on_host["sgd_f32"].calls == 1 and flat.tolist() == [-0.5] * 8 + [1.0] * 16


def test_shared_memory_kernels_run_with_their_launch_shapes_on_the_host(on_host):
    """column_sum, softmax_ce and count_correct, whose threads meet at barriers, run on the host with the grid and
    block cuda_kernels.py launches them with (a numpy scalar of the wrong width would be read as garbage)."""
    for dt in (np.float32, np.float64):
        a = lambda *s: FakeCupy.of(np.ones(s, dt))                                 # noqa: E731
        db = a(70)
        cuda_kernels.bias_grad(a(6, 70), db)
        assert db.a.tolist() == [6.0] * 70
        y, dz = FakeCupy.of(np.tile(np.array([1.0, -1.0], dt), (6, 35))), a(6, 70)
        cuda_kernels.relu_grad_sum(a(6, 70), y, dz, db)
        assert dz.a.tolist() == [[1.0, 0.0] * 35] * 6 and db.a.tolist() == [6.0, 0.0] * 35
        grad = a(600, 5)
        total = cuda_kernels.softmax_ce(a(600, 5), FakeCupy.of(np.zeros(600, np.int64)), grad, 1 / 600)
        assert total.shape == () and total.dtype == dt
        np.testing.assert_allclose(total.a, 600 * np.log(5), rtol=1e-6)
        np.testing.assert_allclose(grad.a, np.tile(np.array([-0.8, 0.2, 0.2, 0.2, 0.2]) / 600, (600, 1)), rtol=1e-5)
        counts = FakeCupy.of(np.zeros(3, np.int64))
        cuda_kernels.count_correct(a(600, 5), FakeCupy.of(np.arange(600) % 2), counts, 1)   # ties: column 0 wins
        assert counts.a.tolist() == [0, 300, 0]
    assert {k: (v.calls, v.shapes[0]) for k, v in on_host.items()} == {
        "column_sum_f32": (2, ((3,), (32, 8))), "column_sum_f64": (2, ((3,), (32, 8))),
        "softmax_ce_f32": (1, ((1,), (256,))), "softmax_ce_f64": (1, ((1,), (256,))),
        "count_correct_f32": (1, ((1,), (256,))), "count_correct_f64": (1, ((1,), (256,)))}
    # the blocks are the sizes the sources' reductions are written for: a block of another size would skip rows or
    # write past the shared array, and the host build need not notice
    assert re.search(r"__shared__ T part\[8\]\[32\]", cuda_sources.COLUMN_SUM)
    for module, macro in (("softmax_ce", "CE_THREADS"), ("count_correct", "COUNT_THREADS")):
        assert f"#define {macro} 256\n" in cuda_sources.SOURCES[module]


def test_grid_stride_loops_reach_past_the_largest_grid(on_host):
    """cuda_kernels.py caps a grid at 4096 blocks of 256 threads; the kernels loop over the rest (FOR_EACH)."""
    n = 4096 * 256 + 1234
    rng = np.random.default_rng(1)
    w, g, buf = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    want_buf = buf * np.float32(0.9) + g
    want_w = w - np.float32(0.1) * want_buf
    cuda_kernels.sgd(FakeCupy.of(w), FakeCupy.of(g), FakeCupy.of(buf), 0.1, 0.9, 1.0, 0.0, False)
    assert on_host["sgd_f32"].shapes == [((4096,), (256,))]
    np.testing.assert_array_equal(buf, want_buf)
    np.testing.assert_array_equal(w, want_w)


# ---- the RNG source on the host against the NumPy reference -------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 5, 2**64 - 1])
def test_rng_source_gives_the_reference_bits_on_the_host(seed, on_host):
    engine, host = cuda_kernels.PhiloxEngine(contextlib.nullcontext()), counter_rng.HostEngine()
    key = counter_rng.key_of(seed)
    for start in (0, 7, 2**32 - 1, 2**64 - 3):                 # across the counter's word boundary and its wrap
        for dt in (np.dtype(np.float32), np.dtype(np.float64)):
            for n in (1, 5, 403):
                np.testing.assert_array_equal(engine.uniform(n, dt, key, start, 5.0, -2.0).a,
                                              host.uniform(n, dt, key, start, 5.0, -2.0))
                np.testing.assert_array_equal(engine.bernoulli(n, dt, key, start, 0.3).a,
                                              host.bernoulli(n, dt, key, start, 0.3))
                got, want = engine.normal(n, dt, key, start, 2.0, 1.0).a, host.normal(n, dt, key, start, 2.0, 1.0)
                np.testing.assert_allclose(got, want, rtol=1e-6 if dt == np.float32 else 1e-13, atol=1e-12)
        for n in (1, 2, 9, 1000):
            keys = engine._draw("permutation_keys", 2, n, np.dtype(np.uint64), key, start,
                                np.uint64(counter_rng.index_mask(n))).a
            np.testing.assert_array_equal(keys, counter_rng.permutation_keys(n, key, start))


# ---- cuBLAS: the argument plans, on NumPy memory ------------------------------------------------------------------

def _cublas_gemm(dtype, transa, transb, m, n, k, alpha_ptr, a_ptr, lda, b_ptr, ldb, beta_ptr, c_ptr, ldc):
    """cublas<t>gemm as documented: C (m x n, column-major, ld ldc) = alpha op(A) op(B) + beta C, op(X) = X or
    X^T; A is m x k (k x m under T) column-major with leading dimension lda, B likewise. C is not read when
    beta == 0. Reads and writes raw memory, like the library."""
    item = np.dtype(dtype).itemsize

    def matrix(ptr, rows, cols, ld):
        span = (cols - 1) * ld + rows
        flat = np.ctypeslib.as_array((np.ctypeslib.as_ctypes_type(dtype) * span).from_address(ptr))
        return np.lib.stride_tricks.as_strided(flat, (rows, cols), (item, ld * item))

    assert lda >= (m if transa == cublas.OP_N else k) and ldb >= (k if transb == cublas.OP_N else n) and ldc >= m
    A = matrix(a_ptr, *((m, k) if transa == cublas.OP_N else (k, m)), lda)
    B = matrix(b_ptr, *((k, n) if transb == cublas.OP_N else (n, k)), ldb)
    alpha, beta = (np.ctypeslib.as_array((np.ctypeslib.as_ctypes_type(dtype) * 1).from_address(p))[0]
                   for p in (alpha_ptr, beta_ptr))
    C = matrix(c_ptr, m, n, ldc)
    product = (A if transa == cublas.OP_N else A.T).astype(np.float64) @ (B if transb == cublas.OP_N else B.T)
    C[...] = alpha * product + (beta * C if beta != 0 else 0)
    return 0


@pytest.fixture
def cublas_on_numpy(monkeypatch):
    """cublas.py over FakeCupy arrays, its GEMM the documented one above; yields the calls made."""
    calls = []
    h = types.SimpleNamespace(ptr=1234, lib=types.SimpleNamespace(gemm={}))
    host = {dt: np.array([1, 0, 0, 0], dt) for dt in (np.dtype(np.float32), np.dtype(np.float64))}
    h.one = {dt: a.ctypes.data for dt, a in host.items()}
    h.zero = {dt: p + dt.itemsize for dt, p in h.one.items()}
    h.scalars = {dt: a[2:] for dt, a in host.items()}
    h.scalars_ptr = {dt: p + 2 * dt.itemsize for dt, p in h.one.items()}
    for dt in host:
        def gemm(handle, *args, dt=dt):
            assert handle == 1234 and all(type(a) is int for a in args)
            calls.append(args[:5])
            return _cublas_gemm(dt, *args)
        h.lib.gemm[dt] = gemm
    monkeypatch.setattr(cublas, "_nd", FakeCupy)
    monkeypatch.setattr(cublas, "_get_device", lambda: 0)
    monkeypatch.setattr(cublas, "handle", lambda device_id=None: h)
    h.keep = host
    yield calls


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_plans_read_c_and_f_contiguous_operands_in_place(dtype, cublas_on_numpy):
    rng = np.random.default_rng(0)
    for m, k, n in [(5, 3, 4), (1, 7, 2), (6, 1, 3), (4, 5, 1), (1, 1, 1)]:
        for fa in ("C", "F"):
            for fb in ("C", "F"):
                a = np.asarray(rng.standard_normal((m, k)).astype(dtype), order=fa)
                b = np.asarray(rng.standard_normal((k, n)).astype(dtype), order=fb)
                c = cublas.matmul_or_none(FakeCupy.of(a), FakeCupy.of(b))
                assert c is not None and c.shape == (m, n) and c.a.flags.c_contiguous and c.dtype == a.dtype
                np.testing.assert_allclose(c.a, a.astype(np.float64) @ b, rtol=1e-6 if dtype == "float32" else 1e-12)
    ops = {(call[0], call[1]) for call in cublas_on_numpy}
    assert ops == {(op_b, op_a) for op_b in (cublas.OP_N, cublas.OP_T) for op_a in (cublas.OP_N, cublas.OP_T)}


def test_matmul_leaves_what_it_cannot_read_to_the_fallback(cublas_on_numpy, standard_code):
    f = lambda a: FakeCupy.of(np.asarray(a))                                   # noqa: E731
    m = np.ones((4, 3), np.float32)
    for a, b in [(f(m), f(np.ones((3, 2)))),                                   # mixed dtypes
                 (f(m.astype(np.int32)), f(np.ones((3, 2), np.int32))),          # integers
                 (f(np.ones(3, np.float32)), f(np.ones((3, 2), np.float32))),    # 1-D
                 (f(np.ones((2, 4, 3), np.float32)), f(np.ones((3, 2), np.float32))),   # batched
                 (f(np.ones((4, 6), np.float32)[:, ::2]), f(np.ones((3, 2), np.float32))),   # strided
                 (f(np.ones((4, 0), np.float32)), f(np.ones((0, 2), np.float32))),      # empty k
                 (f(m), f(np.ones((2, 2), np.float32))),                       # mismatched k
                 (m, f(np.ones((3, 2), np.float32)))]:                         # not a CuPy array
        assert cublas.matmul_or_none(a, b) is None
    assert cublas_on_numpy == []
    fallback_calls = []
    matmul = cublas.make_matmul(lambda x1, x2: fallback_calls.append((x1, x2)) or "fallback")
    assert matmul(f(np.ones(3, np.float32)), f(np.ones((3, 2), np.float32))) == "fallback"
    # PORTANET_KERNELS=0: cupy's own
    assert standard_code(lambda: matmul(f(m), f(np.ones((3, 2), np.float32)))) == "fallback"
    assert len(fallback_calls) == 2 and cublas_on_numpy == []
    assert matmul(f(m), f(np.ones((3, 2), np.float32))).shape == (4, 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm_tn_plan_is_the_numpy_kernels_contract(dtype, cublas_on_numpy):
    rng = np.random.default_rng(4)
    for k, m, n, c_shape in [(128, 20, 16, (20, 16)), (5, 3, 1, (3, 1)), (7, 6, 4, (6, 2, 2))]:
        a, b = rng.standard_normal((k, m)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
        for alpha, beta in [(1.0, 0.0), (1.0, 0.9), (0.5, 1.0)]:
            c = rng.standard_normal(c_shape).astype(dtype)
            expect = beta * c.reshape(m, n).astype(np.float64) + alpha * (a.T.astype(np.float64) @ b)
            cublas.gemm_tn(FakeCupy.of(a), FakeCupy.of(b), FakeCupy.of(c), alpha, beta)
            np.testing.assert_allclose(c.reshape(m, n), expect, rtol=1e-5 if dtype == "float32" else 1e-12,
                                       atol=1e-5)
    c = np.full((3, 2), np.nan, dtype)
    cublas.gemm_tn(FakeCupy.of(np.ones((4, 3), dtype)), FakeCupy.of(np.ones((4, 2), dtype)), FakeCupy.of(c), 1.0,
                   0.0)
    np.testing.assert_array_equal(c, 4.0)                                      # beta 0: c is not read


def test_gemm_tn_refuses_what_the_numpy_kernel_refuses(cublas_on_numpy):
    f = lambda *s, dt=np.float32: FakeCupy.of(np.ones(s, dt))                  # noqa: E731
    a, b, c = f(4, 3), f(4, 2), f(3, 2)
    for bad in [(a, b, f(2, 4)), (a, f(5, 2), c), (a, f(4, 2, dt=np.float64), c), (f(4, 3, dt=np.int32), b, c),
                (f(0, 3), f(0, 2), c), (FakeCupy.of(np.ones((3, 4), np.float32).T), b, c),
                (np.ones((4, 3), np.float32), b, c)]:
        with pytest.raises(kernels.REFUSALS):
            cublas.gemm_tn(*bad, 1.0, 0.0)
    square = f(4, 4)
    with pytest.raises(ValueError, match="do not overlap"):
        cublas.gemm_tn(square, square, square, 1.0, 0.0)
    assert cublas_on_numpy == []


def test_workspace_size_follows_pytorchs_rule(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert cublas.workspace_bytes("90") == 32 * 2**20
    assert cublas.workspace_bytes("80") == 8 * 2**20 + 128 * 2**10
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:2:16:8")
    assert cublas.workspace_bytes("90") == 8 * 2**20 + 128 * 2**10
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    assert cublas.workspace_bytes("80") == 32 * 2**20


def test_cublas_symbols_resolve_where_the_library_is_installed():
    """The ctypes half of cublas.py (cublasSetWorkspace_v2, cublas<S|D>gemm_v2) on whatever libcublas CuPy loads;
    skipped where none is installed (no GPU stack: the CI machine)."""
    try:
        lib = cublas._library()
    except Exception as e:
        pytest.skip(f"no libcublas here: {str(e).strip()[:150]}")
    assert os.path.basename(lib.path).startswith("libcublas.so")
    assert set(lib.gemm) == {np.dtype(np.float32), np.dtype(np.float64)}
    assert lib.set_workspace is not None and lib.set_stream is not None


def test_binding_a_stream_goes_around_cupys_capture_guard():
    """A handle last bound to another stream is rebound inside a recording: epoch 2 of a captured fit, after the
    last (smaller) batch ran eagerly on the current stream. CuPy 14's cublas.setStream raises NotImplementedError
    on a stream that is capturing, so ``bind`` sets stream and workspace through libcublas itself; the binding here
    raises as CuPy's does during a capture."""
    calls, allocs = [], []

    class CapturingBinding:
        @staticmethod
        def setStream(handle, stream):
            raise NotImplementedError("calling cuBLAS API during stream capture is currently unsupported")

    def alloc(size):
        allocs.append(size)
        return types.SimpleNamespace(ptr=4096 * len(allocs))

    h = cublas._Handle.__new__(cublas._Handle)
    h._cublas, h._cupy, h.ptr, h.size, h.workspaces, h.stream = CapturingBinding, types.SimpleNamespace(
        cuda=types.SimpleNamespace(alloc=alloc)), 77, 2**20, {}, None
    h.lib = types.SimpleNamespace(set_stream=lambda handle, s: calls.append(("stream", handle, s)) or 0,
                                  set_workspace=lambda handle, p, n: calls.append(("workspace", handle, p, n)) or 0)
    for stream in (5, 9, 5):
        h.bind(stream)
    assert calls == [("stream", 77, 5), ("workspace", 77, 4096, 2**20), ("stream", 77, 9),
                     ("workspace", 77, 8192, 2**20), ("stream", 77, 5), ("workspace", 77, 4096, 2**20)]
    assert allocs == [2**20, 2**20] and h.stream == 5            # one workspace per stream, kept
    h.lib.set_stream = lambda handle, s: 7
    with pytest.raises(RuntimeError, match="cuBLAS cublasSetStream failed with status 7"):
        h.bind(3)


# ---- the kernels' own cases, on the host build and on a GPU --------------------------------------------------------

class HostDevice:
    """The parts of a gpu Device these tests use, over FakeCupy arrays and the host build (fixture on_host)."""

    xp = types.SimpleNamespace(
        float32=np.float32, float64=np.float64, int64=np.int64,
        empty=lambda shape, dtype: FakeCupy(shape, dtype),
        zeros=lambda shape, dtype: FakeCupy.of(np.zeros(shape, dtype)),
        empty_like=lambda a: FakeCupy(a.shape, a.dtype),
        asarray=lambda a, copy=True: FakeCupy.of(np.array(a.a)))

    @staticmethod
    def asarray(a):
        return FakeCupy.of(np.array(a))

    @staticmethod
    def to_host(a):
        return a.a


@pytest.fixture(params=["host", "gpu"])
def kernel_device(request):
    """The CUDA kernels' own checks run twice: on the host build with the GPU's launch shapes, and on a GPU."""
    if request.param == "gpu":
        return request.getfixturevalue("gpu")
    request.getfixturevalue("on_host")
    return HostDevice()


def test_column_sums_keep_nan_and_plus_zero(kernel_device):
    dev, xp = kernel_device, kernel_device.xp
    dy = np.random.default_rng(7).standard_normal((1000, 37)).astype(np.float32)
    dy[:, 1] = -0.0
    dy[3, 2] = np.nan
    db = xp.empty((37,), dtype=xp.float32)
    cuda_kernels.bias_grad(dev.asarray(dy), db)
    got = dev.to_host(db)
    assert not np.signbit(got[1]) and got[1] == 0 and np.isnan(got[2])
    np.testing.assert_allclose(np.delete(got, 2), np.delete(dy.astype(np.float64).sum(0), 2), rtol=1e-5, atol=1e-4)
    y = np.random.default_rng(8).standard_normal((1000, 37)).astype(np.float32)
    dz = xp.empty((1000, 37), dtype=xp.float32)
    cuda_kernels.relu_grad_sum(dev.asarray(dy), dev.asarray(y), dz, db)
    np.testing.assert_array_equal(dev.to_host(dz), dy * (y > 0))
    np.testing.assert_allclose(np.delete(dev.to_host(db), 2), np.delete((dy * (y > 0)).astype(np.float64).sum(0), 2),
                               rtol=1e-5, atol=1e-4)


def test_column_sums_have_the_same_bits_every_run(kernel_device):
    """A fixed order of addition (cuda_sources.COLUMN_SUM): the threads' scheduling cannot change the total."""
    dev, xp = kernel_device, kernel_device.xp
    dy = dev.asarray(np.random.default_rng(9).standard_normal((517, 45)).astype(np.float32) * 1e3)
    runs = []
    for _ in range(3):
        db = xp.empty((45,), dtype=xp.float32)
        cuda_kernels.bias_grad(dy, db)
        runs.append(dev.to_host(db))
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


def test_cross_entropy_selects_the_label_logit(kernel_device):
    """Non-finite logits are selected, never multiplied by a one-hot: [2, -inf, 1] with label 0 costs
    log(1 + e^-1) = 0.3132617; a NaN logit or a label out of range (c, the first past the end, or -1) makes its row
    NaN."""
    dev, xp = kernel_device, kernel_device.xp
    z = dev.asarray(np.array([[2, -np.inf, 1], [0, np.nan, 1], [1, 2, 3], [0, 0, 0]], np.float32))
    grad = xp.empty_like(z)
    labels = dev.asarray(np.array([0, 2, 3, -1]))
    for rows, want in [(slice(0, 1), 0.3132617), (slice(0, 2), np.nan), (slice(2, 3), np.nan), (slice(3, 4), np.nan)]:
        g = grad[rows]
        total = cuda_kernels.softmax_ce(xp.asarray(z[rows], copy=True), xp.asarray(labels[rows], copy=True), g, 1.0)
        got = float(dev.to_host(total))
        assert (np.isnan(got) and np.isnan(want)) or abs(got - want) < 1e-6, (rows, got)
    g = dev.to_host(grad)
    e = np.exp([0.0, -1.0])
    np.testing.assert_allclose(g[0], [e[0] / e.sum() - 1, 0, e[1] / e.sum()], rtol=1e-6)
    assert np.isnan(g[1:]).all()


def test_cross_entropy_total_is_summed_in_float64(kernel_device):
    """The rows' losses add in float64 and round once to the logits' dtype (cuda_sources.SOFTMAX_CE): thread 0's
    rows 0, 256, 512 and 768 cost 2**24 and three times log 2, which total 16777218 in float32; a float32 sum would
    stay at 2**24 (the others cost exactly 0)."""
    dev = kernel_device
    z = np.zeros((769, 2), np.float32)
    z[:, 1] = -np.inf
    z[0, 1] = 2**24
    z[256:769:256, 1] = 0.0
    grad = dev.xp.empty_like(dev.asarray(z))
    total = cuda_kernels.softmax_ce(dev.asarray(z), dev.asarray(np.zeros(769, np.int64)), grad, 1.0)
    assert float(dev.to_host(total)) == 16777218.0


@pytest.mark.parametrize("dtype,tol", [("float32", 2e-6), ("float64", 1e-13)])
def test_cross_entropy_kernel_is_the_losss_formula(kernel_device, dtype, tol):
    """Loss and gradient of 1000 rows (every one of the 256 threads takes several) against the formula in float64;
    infinite logits follow CrossEntropyLoss's rule: a +inf maximum that is the label costs 0, and a row of -inf is
    a tie (log 10), not NaN."""
    dev = kernel_device
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((1000, 10)) * 4).astype(dtype)
    y = rng.integers(0, 10, 1000)
    z[7], y[7] = [np.inf] + [0.0] * 9, 0
    z[8], y[8] = [-np.inf] * 10, 3
    grad = dev.xp.empty_like(dev.asarray(z))
    total = cuda_kernels.softmax_ce(dev.asarray(z), dev.asarray(y), grad, 1 / 1000)
    with np.errstate(invalid="ignore"):                           # inf - inf, where np.where then picks 0
        d = np.where(z == z.max(1, keepdims=True), 0.0, z.astype(np.float64) - z.max(1, keepdims=True))
    e = np.exp(d)
    want = (np.log(e.sum(1)) - d[np.arange(1000), y]).sum()
    want_grad = (e / e.sum(1, keepdims=True) - np.eye(10)[y]) / 1000
    np.testing.assert_allclose(float(dev.to_host(total)), want, rtol=tol)
    np.testing.assert_allclose(dev.to_host(grad), want_grad, rtol=tol * 10, atol=tol / 1000)


def test_counts_correct_predictions_as_the_metric_does(kernel_device):
    from portanet.metrics import correct

    dev = kernel_device
    rng = np.random.default_rng(3)
    z = rng.integers(0, 4, (777, 6)).astype(np.float32)              # many ties: the first maximum wins
    z[5, 3] = np.nan                                                  # NaN counts as the maximum, as argmax
    z[6, [1, 4]] = np.nan                                             # and the first of two
    y = rng.integers(0, 6, 777)
    y[5], y[6] = 3, 1
    counts = dev.xp.zeros((4,), dtype=dev.xp.int64)
    cuda_kernels.count_correct(dev.asarray(z), dev.asarray(y), counts, 2)
    want = int(correct(z, y))
    assert dev.to_host(counts).tolist() == [0, 0, want, 0]
    assert want == int((np.argmax(z, axis=1) == y).sum())


def test_bias_relu_keeps_nan_as_the_standard_relu(kernel_device):
    """Dense + ReLU's forward in one pass is ReLU's maximum(y + b, 0): NaN stays NaN, -inf and negatives become +0,
    -0.0 + -0.0 too, +inf stays."""
    dev = kernel_device
    y = np.array([[np.nan, -1.0, 2.0, -0.0], [np.inf, -np.inf, 0.5, 1.0]], np.float32)
    b = np.array([0.0, 0.5, -3.0, -0.0], np.float32)
    out = dev.asarray(y)
    cuda_kernels.bias_relu(out, dev.asarray(b))
    got, want = dev.to_host(out), np.maximum(y + b, np.float32(0.0))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_take_scale_u8_marks_an_index_out_of_range_with_nan(kernel_device):
    dev = kernel_device
    x = np.arange(40, dtype=np.uint8).reshape(10, 4)
    out = dev.xp.empty((3, 4), dtype=dev.xp.float32)
    cuda_kernels.take_scale_u8(dev.asarray(x), dev.asarray(np.array([2, 10, -1])), 0.5, out)
    got = dev.to_host(out)
    np.testing.assert_array_equal(got[0], x[2] * np.float32(0.5))
    assert np.isnan(got[1:]).all()


# ---- on a GPU ---------------------------------------------------------------------------------------------------

@pytest.fixture
def gpu():
    if GPU_REASON is not None:
        pytest.skip(f"cupy/gpu: {GPU_REASON}")
    return pn.device("gpu")


def test_gpu_offers_every_kernel_and_none_when_turned_off(gpu, standard_code):
    for name in cuda_kernels.TABLE:
        assert gpu.kernel(name) is cuda_kernels.TABLE[name]
    assert standard_code(lambda: gpu.kernel("sgd")) is None
    with pytest.raises(ValueError, match="no kernel named 'conv'"):
        gpu.kernel("conv")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,opts", FUSED, ids=[f"{n}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for n, o in FUSED])
def test_gpu_optimizer_kernels_give_the_standard_codes_bits(gpu, name, opts, dtype, standard_code):
    def run():
        return _train_params(name, opts, dtype, device=gpu)

    for a, b in zip(run(), standard_code(run)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,opts", ADAMS, ids=[f"{n}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for n, o in ADAMS])
def test_gpu_adam_counting_on_the_device_is_the_standard_code(gpu, name, opts, dtype, standard_code):
    """adam_counted against adam.py's _update with the count on the GPU: both take b^t from CUDA's pow, so the bits
    should agree; held to an ulp or two, as on the host, until a GPU has shown it."""
    def run():
        return _adam_counting_on_the_device(name, opts, dtype, device=gpu)

    fused, standard = run(), standard_code(run)
    tol = dict(rtol=2e-6, atol=1e-7) if dtype == "float32" else dict(rtol=1e-14, atol=1e-15)
    same = 0
    for a, b in zip(fused, standard):
        np.testing.assert_allclose(a, b, **tol)
        same += bool(np.array_equal(a, b))
    print(f"adam_counted: {same} of {len(fused)} arrays with the standard code's bits")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_layer_kernels_agree_with_the_standard_code(gpu, dtype, standard_code):
    """Same bits for the forward pass, the ReLU masks and everything computed from them; the bias gradients (column
    sums in another order than CuPy's sum) to float tolerance."""
    rng = np.random.default_rng(2)
    x = gpu.asarray(rng.standard_normal((300, 40)).astype(dtype))
    dy = gpu.asarray(rng.standard_normal((300, 3)).astype(dtype))

    def run():
        pn.seed(5)
        model = pn.Sequential(pn.Dense(40, 70, dtype=dtype), pn.ReLU(), pn.Dense(70, 33, dtype=dtype), pn.Sigmoid(),
                              pn.Dense(33, 3, dtype=dtype), device=gpu)
        out = model(x)
        dx = model.backward(dy)
        return [out, dx] + [p.grad for p in model.parameters()]

    fused, standard = run(), standard_code(run)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    for i, (a, b) in enumerate(zip(fused, standard)):
        a, b = gpu.to_host(a), gpu.to_host(b)
        if i in (3, 5, 7):                       # the three bias gradients
            np.testing.assert_allclose(a, b, **tol)
        else:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_batches_give_the_standard_codes_bits(gpu, dtype, standard_code):
    rng = np.random.default_rng(6)
    x, y = rng.integers(0, 256, (50, 4, 3), dtype=np.uint8), rng.integers(0, 3, 50)

    def run():
        return [gpu.to_host(b) for shuffle in (False, True) for xb, yb in pn.DataLoader(
            x, y, batch_size=16, shuffle=shuffle, seed=1, dtype=dtype, device=gpu) for b in (xb, yb)]

    for a, b in zip(run(), standard_code(run)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype,tol", [("float32", 2e-6), ("float64", 1e-13)])
def test_gpu_cross_entropy_matches_the_standard_code(gpu, dtype, tol, standard_code):
    rng = np.random.default_rng(0)
    z = gpu.asarray((rng.standard_normal((300, 10)) * 4).astype(dtype))
    y = gpu.asarray(rng.integers(0, 10, 300))

    def run():
        loss = pn.CrossEntropyLoss()
        return gpu.to_host(loss.forward(z, y)), gpu.to_host(loss.backward())

    (value, grad), (ref_value, ref_grad) = run(), standard_code(run)
    assert value.dtype == ref_value.dtype == np.dtype(dtype) and value.shape == ()
    np.testing.assert_allclose(value, ref_value, rtol=tol)
    np.testing.assert_allclose(grad, ref_grad, rtol=tol, atol=tol / 300)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_matmul_is_cupys_product(gpu, dtype):
    import cupy

    xp = gpu.xp
    assert xp.matmul.__wrapped__ is not None                          # the namespace's matmul is the lean one
    rng = np.random.default_rng(1)
    same_bits = 0
    for m, k, n in [(128, 784, 256), (128, 256, 10), (1, 5, 3), (7, 1, 9)]:
        a = cupy.asarray(rng.standard_normal((m, k)).astype(dtype))
        b = cupy.asarray(rng.standard_normal((k, n)).astype(dtype))
        for x, w in [(a, b), (cupy.asfortranarray(a), b), (a, cupy.asfortranarray(b)), (a, b.T.copy().T)]:
            got = xp.matmul(x, w)
            assert type(got) is cupy.ndarray and got.flags.c_contiguous and got.dtype == x.dtype
            want = cupy.matmul(x, w)
            np.testing.assert_allclose(cupy.asnumpy(got), cupy.asnumpy(want),
                                       rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5)
            same_bits += bool(cupy.array_equal(got, want))
    print(f"lean matmul has cupy.matmul's bits in {same_bits} of 16 products")
    strided = a[:, ::2]
    np.testing.assert_allclose(cupy.asnumpy(xp.matmul(strided, b[::2])), cupy.asnumpy(strided @ b[::2]), rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_gemm_tn_is_the_products_with_beta(gpu, dtype):
    import cupy

    rng = np.random.default_rng(4)
    for k, m, n in [(128, 784, 256), (32, 100, 10), (5, 3, 1)]:
        a, b, c = (cupy.asarray(rng.standard_normal(s).astype(dtype)) for s in [(k, m), (k, n), (m, n)])
        for alpha, beta in [(1.0, 0.0), (1.0, 0.9), (0.5, 1.0)]:
            out = c.copy()
            gpu.kernel("gemm_tn")(a, b, out, alpha, beta)
            want = cupy.asarray(beta, dtype) * c + cupy.asarray(alpha, dtype) * (a.T @ b)
            np.testing.assert_allclose(cupy.asnumpy(out), cupy.asnumpy(want),
                                       rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-4)


def test_gpu_cublas_handle_keeps_a_workspace_per_stream_and_float32_math(gpu):
    import cupy
    from cupy_backends.cuda.libs import cublas as binding

    a, b = cupy.ones((64, 32), cupy.float32), cupy.ones((32, 16), cupy.float32)
    cublas.matmul_or_none(a, b)
    h = cublas.handle()
    assert binding.getMathMode(h.ptr) == cublas.DEFAULT_MATH
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        c = cublas.matmul_or_none(a, b)
        s.synchronize()
    assert float(c[0, 0]) == 32.0 and len(h.workspaces) >= 2 and h.stream == s.ptr
    assert binding.getStream(h.ptr) == s.ptr
    previous = cublas.set_tf32(True)
    try:
        cublas.matmul_or_none(a, b)
        assert binding.getMathMode(h.ptr) == cublas.TF32_TENSOR_OP_MATH
    finally:
        cublas.set_tf32(previous)
    cublas.matmul_or_none(a, b)
    assert binding.getMathMode(h.ptr) == cublas.DEFAULT_MATH


def test_gpu_gemm_tn_and_a_kernel_replay_from_a_cuda_graph(gpu):
    """The route is capturable: with the handle's workspace set before capture, a stream capture records the GEMM
    and an SGD kernel, and each replay applies them again."""
    import cupy

    a, b = cupy.full((8, 4), 0.5, cupy.float32), cupy.ones((8, 3), cupy.float32)
    buf, w = cupy.zeros((4, 3), cupy.float32), cupy.zeros((4, 3), cupy.float32)
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        cublas.gemm_tn(a, b, buf, 1.0, 1.0)                         # warm-up: binds the stream, sets its workspace
        cuda_kernels.sgd_apply(w, buf, 0.5, 0.0)
        s.synchronize()
        s.begin_capture()
        cublas.gemm_tn(a, b, buf, 1.0, 1.0)
        cuda_kernels.sgd_apply(w, buf, 0.5, 0.0)
        graph = s.end_capture()
        for _ in range(3):
            graph.launch(stream=s)
        s.synchronize()
    # buf gains a.T @ b = 4 per replay (1 warm-up + 3 replays); w loses 0.5 * buf after each
    assert cupy.asnumpy(buf).tolist() == [[16.0] * 3] * 4
    assert cupy.asnumpy(w).tolist() == [[-0.5 * (4 + 8 + 12 + 16)] * 3] * 4


def test_gpu_a_recording_rebinds_a_handle_last_used_on_another_stream(gpu):
    """Epoch 2 of a captured fit: the recording stream has its workspace from the warm-up, but the last batch of
    epoch 1 ran eagerly on the current stream, so the first GEMM of the new recording rebinds the handle while the
    stream captures (CuPy's own cublas.setStream refuses that)."""
    import cupy

    a, b = cupy.full((8, 4), 0.5, cupy.float32), cupy.ones((8, 3), cupy.float32)
    buf = cupy.zeros((4, 3), cupy.float32)
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        cublas.gemm_tn(a, b, buf, 1.0, 1.0)                         # warm-up on s
        s.synchronize()
    cublas.gemm_tn(a, b, buf, 1.0, 1.0)                             # eager, on the current stream
    cupy.cuda.get_current_stream().synchronize()
    assert cublas.handle().stream != s.ptr
    with s:
        s.begin_capture()
        try:
            cublas.gemm_tn(a, b, buf, 1.0, 1.0)
        finally:
            graph = s.end_capture()
        graph.launch(stream=s)
        graph.launch(stream=s)
        s.synchronize()
    assert cupy.asnumpy(buf).tolist() == [[16.0] * 3] * 4            # 4 per product: warm-up, eager, 2 replays
