"""The NumPy backend's fused kernels (backends/kernels.py) against the standard Array API code they override:
the same bits for the optimizer updates and the ReLU gradient, float tolerance for softmax cross-entropy;
and the standard code on every other backend agrees with them. The bit-for-bit tests run twice (the ``shares``
fixture): every kernel whole on the calling thread, then split over OpenBLAS's threads however small."""
import os
import subprocess
import sys

import numpy as np
import pytest

import portanet as pn
from portanet.backends import kernels
from portanet.step.fusion import plan

from test_optim import OPTIMIZERS

needs_kernels = pytest.mark.skipif(not kernels.built(), reason=f"kernels: {kernels.status()}")
FUSED = [(n, o) for n, o in OPTIMIZERS if n in ("Adam", "AdamW") or (n == "SGD" and o.get("momentum"))]


@pytest.fixture(params=["one thread", "split"])
def shares(request):
    """Kernels whole on the calling thread; then split into shares over OpenBLAS's threads on every call, however
    small the arrays (the smallest share is one element), which must give the same bits."""
    if not kernels.built():             # no C compiler where portanet was installed: nothing to split
        if request.param == "split":
            pytest.skip(f"kernels: {kernels.status()}")
        yield
        return
    from portanet.backends import _kernels
    if request.param == "one thread":
        previous = kernels.set_threads(1)
        try:
            yield
        finally:
            kernels.set_threads(previous)
        return
    if kernels.threads() < 2:
        pytest.skip(f"kernel threads: one here ({kernels.status()})")
    previous = _kernels.set_min_share(1)
    try:
        yield
    finally:
        _kernels.set_min_share(previous)


def _train_params(name, opts, dtype, steps=6, grads=None, device=None, after_step=None):
    """The parameters and state slots after ``steps`` steps on fixed gradients, as host arrays; NumPy arrays as they
    are (``grads`` may hand the optimizer a strided one), or on ``device`` (a Device) and back. ``after_step(step,
    opt)`` runs after each step."""
    put, get = (device.asarray, device.to_host) if device is not None else (lambda a: a, lambda a: a)
    shapes = [(33, 7), (7,)]
    params = [pn.Parameter(put(np.random.default_rng(i).standard_normal(s).astype(dtype)))
              for i, s in enumerate(shapes)]
    opt = getattr(pn.optim, name)(params, **opts)
    for step in range(steps):
        rng = np.random.default_rng(100 + step)
        opt.zero_grad()
        for p in params:
            p.grad = put((grads or (lambda g: g))(rng.standard_normal(p.shape).astype(dtype)))
        opt.step()
        if after_step is not None:
            after_step(step, opt)
    slots = [v for st in opt.state.values() for v in st.values() if hasattr(v, "shape")]
    return [get(p.data) for p in params] + [get(v) for v in slots]


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,opts", FUSED, ids=[f"{n}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for n, o in FUSED])
@pytest.mark.usefixtures("shares")
def test_fused_optimizer_gives_the_standard_codes_bits(name, opts, dtype, standard_code):
    fused = _train_params(name, opts, dtype)
    standard = standard_code(lambda: _train_params(name, opts, dtype))
    assert len(fused) == len(standard) > 2
    for a, b in zip(fused, standard):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)


@needs_kernels
def test_optimizer_falls_back_when_the_kernel_refuses(standard_code):
    # a non-contiguous gradient (a strided view) is refused by the kernel; the standard code runs instead
    def strided(g):
        wide = np.zeros(g.shape[:-1] + (2 * g.shape[-1],), g.dtype)
        wide[..., ::2] = g
        return wide[..., ::2]

    opts = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)
    fused = _train_params("SGD", opts, "float32", grads=strided)
    standard = standard_code(lambda: _train_params("SGD", opts, "float32"))
    for a, b in zip(fused, standard):
        np.testing.assert_array_equal(a, b)


def _ce(z, y, reduction):
    loss = pn.CrossEntropyLoss(reduction=reduction)
    value = loss.forward(z, y)
    return np.asarray(value), np.asarray(loss.backward())


@needs_kernels
@pytest.mark.parametrize("dtype,tol", [("float32", 2e-6), ("float64", 1e-13)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fused_cross_entropy_matches_the_standard_code(dtype, tol, reduction, standard_code):
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((64, 10)) * 4).astype(dtype)
    y = rng.integers(0, 10, 64)
    value, grad = _ce(z, y, reduction)
    ref_value, ref_grad = standard_code(lambda: _ce(z, y, reduction))
    assert value.dtype == ref_value.dtype == np.dtype(dtype) and value.shape == ()
    np.testing.assert_allclose(value, ref_value, rtol=tol)
    np.testing.assert_allclose(grad, ref_grad, rtol=tol, atol=tol / 64)
    assert abs(float(grad.sum())) < 1e-5                     # rows of p - t sum to zero


@needs_kernels
def test_fused_cross_entropy_float32_exp_is_accurate_over_its_whole_range():
    # the float32 kernel has its own vectorized exp: rows [0, x] give p = e^x / (1 + e^x) for x from 0 to -100
    x = -np.linspace(0, 100, 100_001, dtype=np.float32)
    z = np.stack([np.zeros_like(x), x], axis=1)
    y = np.zeros(len(x), np.int64)
    _, grad = _ce(z, y, "sum")
    e = np.exp(x.astype(np.float64))
    p = e / (1 + e)
    tiny = x < -87                                           # exp underflows there; the kernel gives < 2e-38
    np.testing.assert_allclose(grad[~tiny, 1], p[~tiny], rtol=4 * 2.0**-24)
    assert (grad[tiny, 1] >= 0).all() and (grad[tiny, 1] < 2e-38).all()
    assert (grad[x <= -88, 1] == 0).all()                    # and exactly 0 from -88 down: exp(-inf) must be 0
    np.testing.assert_allclose(grad[:, 0], -grad[:, 1], atol=2.0**-23)     # p0 - 1 rounds near 1


@needs_kernels
def test_fused_cross_entropy_poisons_a_bad_label():
    # the standard code leaves labels to the checks of loss(...) and fit; the kernel also marks them itself
    z = np.zeros((3, 4), np.float32)
    y = np.array([0, 7, 2])                                  # 7 is out of range for 4 classes
    value, grad = _ce(z, y, "mean")
    assert np.isnan(value)
    assert np.isnan(grad[1]).all() and not np.isnan(grad[[0, 2]]).any()
    with pytest.raises(ValueError, match=r"labels in \[0, 7\] but the model has 4 classes"):
        pn.CrossEntropyLoss()(z, y)


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.usefixtures("shares")
def test_fused_relu_gradient_gives_the_standard_codes_bits(dtype, standard_code):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 9)).astype(dtype)
    x[0, :3] = 0.0
    dy = rng.standard_normal((50, 9)).astype(dtype)
    dy[1, :4] = np.nan                                       # NaN stays NaN where the unit is off, as dy * 0

    def run():
        relu = pn.ReLU()
        relu.forward(x)
        return relu.backward(dy)

    np.testing.assert_array_equal(run(), standard_code(run))


def test_other_backends_run_the_standard_code_and_agree(ctx):
    """Kernels exist for NumPy (C) and CuPy (CUDA); elsewhere Device.kernel is None, and the standard code gives the
    same numbers."""
    expect = (ctx.spec == "cpu" and kernels.built()) or ctx.spec == "gpu"   # the C kernels; CuPy's CUDA ones
    assert (ctx.device.kernel("sgd") is not None) == expect
    rng = np.random.default_rng(3)
    z, y = rng.standard_normal((16, 5)), rng.integers(0, 5, 16)
    loss = pn.CrossEntropyLoss()
    value = loss.forward(ctx.asarray(z), ctx.asarray(y))
    grad = loss.backward()
    ref = pn.CrossEntropyLoss()
    ref_value = ref.forward(z, y)
    ctx.close(value, np.asarray(ref_value))
    ctx.close(grad, np.asarray(ref.backward()))


@pytest.mark.usefixtures("shares")
def test_training_through_every_override_agrees_on_every_backend(ctx):
    """One epoch of fit that passes through every kernel: uint8 batches converted on the device, two Dense + ReLU
    pairs, a last Dense with its bias, cross-entropy on labels and SGD with momentum. On NumPy it runs the kernels
    (where built), elsewhere the standard code; the trained weights agree with the NumPy run's."""
    rng = np.random.default_rng(8)
    x, y = rng.integers(0, 256, (36, 3, 4), dtype=np.uint8), rng.integers(0, 5, 36)

    def train(spec):
        pn.seed(9)
        model = pn.Sequential(pn.Flatten(), pn.Dense(12, 8), pn.ReLU(), pn.Dense(8, 8), pn.ReLU(), pn.Dense(8, 5))
        model.to(dtype=ctx.dtype_name)
        model.to(spec)
        opt = pn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loader = pn.DataLoader(x, y, batch_size=12, shuffle=True, seed=3, device=spec, dtype=ctx.dtype_name)
        pn.fit(model, pn.CrossEntropyLoss(), opt, loader, epochs=1, metrics=(), verbose=0)
        return [p.data for p in model.parameters()]

    reference = train("cpu")
    trained = train(ctx.spec)
    assert len(trained) == 6
    for a, b in zip(trained, reference):
        ctx.close(a, b)


def test_status_says_what_runs():
    line = kernels.status()
    assert line.startswith("fused C kernels: sgd, adam") or line.startswith("standard code (")
    with pytest.raises(ValueError, match="no kernel named 'conv'"):
        kernels.get("conv")
    out = subprocess.run([sys.executable, "-c", "import portanet.backends.kernels as k; print(k.status()); "
                          "print(k.get('sgd'))"], capture_output=True, text=True,
                         env={**os.environ, "PORTANET_KERNELS": "0"}, check=True).stdout.splitlines()
    assert out == ["standard code (fused kernels turned off)", "None"] or out[0].startswith("standard code (fused "
                                                                                            "kernels not built")


class Planned(pn.Module):
    """A model run through its step plan (portanet/step/fusion.py), as a Module for gradcheck."""

    def __init__(self, model):
        super().__init__(model.device)
        self.model = model
        self.runner = plan(model)

    def forward(self, x):
        return self.runner.forward(x)

    def backward(self, dy, input_grad=True):
        return self.runner.backward(dy, input_grad=input_grad)


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.usefixtures("shares")
def test_fused_dense_relu_pairs_give_the_standard_codes_bits(dtype, input_grad, standard_code):
    """The step plan runs Dense + ReLU as one step (bias add and ReLU in place; mask and bias gradient in one
    pass); the model's own methods, with the kernels off, give the same bits."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((37, 12)).astype(dtype)
    dy = rng.standard_normal((37, 3)).astype(dtype)

    def run():
        pn.seed(5)
        model = pn.Sequential(pn.Dense(12, 16, dtype=dtype), pn.ReLU(), pn.Dense(16, 8, dtype=dtype), pn.ReLU(),
                              pn.Dense(8, 3, dtype=dtype))
        runner = plan(model)
        out = runner.forward(x)
        dx = runner.backward(dy, input_grad=input_grad)
        return [out] + ([dx] if input_grad else []) + [p.grad for p in model.parameters()]

    assert [type(s).__name__ for s in plan(pn.Sequential(pn.Dense(2, 2), pn.ReLU(), pn.Dense(2, 2))).steps] == \
        ["_DenseReLU", "_Dense"]
    fused, standard = run(), standard_code(run)
    for a, b in zip(fused, standard):
        np.testing.assert_array_equal(a, b)


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.usefixtures("shares")
def test_dense_bias_add_and_gradient_give_the_standard_codes_bits(dtype, layout, standard_code):
    """A Dense with no ReLU after it adds its bias through a kernel in the plan, and the optimizer's flat buffer
    sums its bias gradient through one (the same bits); a Fortran-ordered dy is refused by the kernel and summed
    by the standard code."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((29, 6)).astype(dtype)
    dy = np.asarray(rng.standard_normal((29, 4)).astype(dtype), order=layout)
    dy[:, 1] = -0.0                                          # a column of -0: the sum is +0 in both
    dy[3, 2] = np.nan

    def run():
        pn.seed(2)
        model = pn.Sequential(pn.Dense(6, 4, dtype=dtype))
        pn.optim.SGD(model.parameters(), lr=0.1)               # flattens: the bias gradient lands in its buffer
        runner = plan(model)
        out = runner.forward(x)
        layer = model[0]
        return [out, runner.backward(dy), layer.weight.grad, layer.bias.grad]

    fused, standard = run(), standard_code(run)
    assert not np.signbit(fused[3][1]) and np.isnan(fused[3][2])
    for a, b in zip(fused, standard):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@needs_kernels
def test_pairs_that_are_not_dense_relu_run_layer_by_layer():
    steps = plan(pn.Sequential(pn.Dense(2, 2, bias=False), pn.ReLU(), pn.Dense(2, 2), pn.Sigmoid(),
                               pn.Dense(2, 2), pn.LeakyReLU())).steps
    assert not any(type(s).__name__ == "_DenseReLU" for s in steps)


@needs_kernels
def test_a_pair_the_kernel_refuses_runs_layer_by_layer(standard_code):
    """A bias of another dtype than the activations (set by hand) is refused by the kernel; the pair then runs
    the two layers' own code, which gives what the standard code gives."""
    rng = np.random.default_rng(4)
    x, dy = rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal((6, 3)).astype(np.float32)

    def run():
        pn.seed(1)
        model = pn.Sequential(pn.Dense(5, 3), pn.ReLU())
        model[0].bias.data = np.linspace(-1, 1, 3)                 # float64 bias in a float32 model
        runner = plan(model)
        out = runner.forward(x)
        return [out, runner.backward(dy)] + [p.grad for p in model.parameters()]

    for a, b in zip(run(), standard_code(run)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make, shape, out_shape, step", [
    (lambda: pn.Sequential(pn.Dense(5, 3)), (6, 5), (6, 3), "_Dense"),
    (lambda: pn.Sequential(pn.Conv2d(2, 3, 3)), (2, 2, 5, 4), (2, 3, 3, 2), "_Conv2d"),
    (lambda: pn.Sequential(pn.Conv2d(2, 3, 3), pn.ReLU()), (2, 2, 5, 4), (2, 3, 3, 2), "_ConvReLU"),
])
def test_a_bias_the_kernel_refuses_is_added_by_the_layers_code(standard_code, make, shape, out_shape, step):
    """A lone Dense or Conv2d (and a Conv2d + ReLU) whose bias the kernel refuses (float64 in a float32 model) adds
    it as the layer's own code does."""
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(out_shape).astype(np.float32)

    def run():
        pn.seed(1)
        model = make()
        model[0].bias.data = np.linspace(-1, 1, model[0].bias.shape[0])     # float64 bias in a float32 model
        runner = plan(model)
        if runner is not model:
            assert type(runner.steps[0]).__name__ == step
        out = runner.forward(x)
        return [out, runner.backward(dy)] + [p.grad for p in model.parameters()]

    for a, b in zip(run(), standard_code(run)):
        np.testing.assert_array_equal(a, b)


@needs_kernels
def test_fused_pairs_pass_gradcheck():
    """The fused Dense + ReLU path against central differences (float64), input and every parameter."""
    pn.seed(3)
    model = pn.Sequential(pn.Dense(6, 5, dtype="float64"), pn.ReLU(), pn.Dense(5, 4, dtype="float64"), pn.ReLU(),
                          pn.Dense(4, 2, dtype="float64"))
    planned = Planned(model)
    assert [type(s).__name__ for s in planned.runner.steps] == ["_DenseReLU", "_DenseReLU", "_Dense"]
    x = np.random.default_rng(0).standard_normal((7, 6))
    errors = pn.gradcheck(planned, x, tol=1e-6)
    assert set(errors) == {"input", "model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias",
                           "model.4.weight", "model.4.bias"}
    assert max(errors.values()) < 1e-7


@needs_kernels
def test_kernels_refuse_overlapping_arrays_and_the_optimizer_falls_back(standard_code):
    """A gradient that is the parameter itself (aliasing a written buffer) is refused; the standard code runs."""
    from portanet.backends import _kernels

    w = np.ones(8, np.float32)
    with pytest.raises(ValueError, match="do not overlap"):
        _kernels.sgd(w, w, np.zeros(8, np.float32), 0.1, 0.9, 1.0, 0.0, False)

    def run():
        p = pn.Parameter(np.linspace(-1, 1, 8).astype(np.float32))
        opt = pn.optim.SGD([p], lr=0.1, momentum=0.9)
        for _ in range(3):
            p.grad = p.data                       # the same array, as a user might write by mistake
            opt.step()
        return p.data

    np.testing.assert_array_equal(run(), standard_code(run))


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.usefixtures("shares")
def test_uint8_batches_give_the_standard_codes_bits(dtype, shuffle, standard_code):
    """The DataLoader converts and scales a uint8 batch in one pass (shuffled rows and plain slices alike)."""
    rng = np.random.default_rng(6)
    x, y = rng.integers(0, 256, (50, 4, 3), dtype=np.uint8), rng.integers(0, 3, 50)

    def run():
        loader = pn.DataLoader(x, y, batch_size=16, shuffle=shuffle, seed=1, dtype=dtype)
        return [b for xb, yb in loader for b in (xb, yb)]

    fused, standard = run(), standard_code(run)
    assert fused[0].dtype == np.dtype(dtype) and float(fused[0].max()) <= 1.0
    for a, b in zip(fused, standard):
        np.testing.assert_array_equal(a, b)


@needs_kernels
@pytest.mark.usefixtures("shares")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gathered_uint8_rows_give_the_standard_codes_bits(dtype):
    """take_scale_u8: the shuffled batch's gather and conversion in one pass, as xp.take then astype and scale."""
    from portanet.backends import _kernels
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (300, 5, 7), dtype=np.uint8)
    rows = rng.permutation(300)[:37]
    out = np.empty((37, 5, 7), dtype)
    _kernels.take_scale_u8(x, rows, 1 / 255, out)
    want = np.take(x, rows, axis=0).astype(dtype)
    want *= 1 / 255
    np.testing.assert_array_equal(out, want)
    _kernels.take_scale_u8(x, rows, 1.0, out)
    np.testing.assert_array_equal(out, np.take(x, rows, axis=0).astype(dtype))


@needs_kernels
def test_gather_kernel_refuses_what_numpy_would_read_differently():
    from portanet.backends import _kernels
    x = np.zeros((10, 4), np.uint8)
    out = np.empty((2, 4), np.float32)
    for rows, match in [(np.array([0, 10]), "row indices in 0..len"), (np.array([-1, 2]), "row indices in 0..len"),
                        (np.array([0, 1], np.int32), "int64 row indices"), (np.array([0, 1, 2]), "hold len\\(rows\\)")]:
        with pytest.raises(ValueError, match=match):
            _kernels.take_scale_u8(x, rows, 1.0, out)
    with pytest.raises(ValueError, match="uint8 array"):
        _kernels.take_scale_u8(x.astype(np.float32), np.array([0, 1]), 1.0, out)
    # the loader gathers with xp.take what the kernel refuses, e.g. a strided view of the images
    images = np.arange(80, dtype=np.uint8).reshape(10, 8)
    loader = pn.DataLoader(images[:, ::2], np.arange(10), batch_size=4, shuffle=True, seed=0, dtype="float64")
    batches = list(loader)
    assert [len(yb) for _, yb in batches] == [4, 4, 2]
    for xb, yb in batches:
        np.testing.assert_array_equal(xb, images[:, ::2][yb].astype(np.float64) * (1 / 255))


@needs_kernels
def test_a_transform_error_in_a_gathered_batch_is_raised_once():
    # the kernel path hands the batch to the transform outside its refusal handling: a user's error is not
    # mistaken for a refusal and retried through xp.take
    calls = []

    def transform(x, rng):
        calls.append(1)
        raise ValueError("bad augmentation")

    loader = pn.DataLoader(np.zeros((8, 4), np.uint8), np.arange(8), batch_size=4, shuffle=True, seed=0,
                           transform=transform)
    with pytest.raises(ValueError, match="bad augmentation"):
        next(iter(loader))
    assert calls == [1]


needs_gemm = pytest.mark.skipif(kernels.get("gemm_tn") is None, reason=f"no GEMM of NumPy's OpenBLAS: {kernels.status()}")


@needs_gemm
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("beta", [0.0, 0.9, 1.0])
def test_gemm_tn_is_numpys_product_with_beta(dtype, beta):
    """c = alpha * a.T @ b + beta * c. At the MNIST net's big shapes OpenBLAS scales c, then adds the very product
    NumPy's a.T @ b computes: the bits of `c *= beta; c += a.T @ b`; at small shapes its small-matrix kernels fuse
    the scaling into one rounding, so float tolerance."""
    rng = np.random.default_rng(4)
    for k, m, n, exact in [(128, 784, 256, True), (32, 100, 10, False), (5, 3, 1, False)]:
        a, b, c = (rng.standard_normal(s).astype(dtype) for s in [(k, m), (k, n), (m, n)])
        expect = c * np.asarray(beta, dtype) + a.T @ b
        out = c.copy()
        kernels.get("gemm_tn")(a, b, out, 1.0, beta)
        if exact:
            np.testing.assert_array_equal(out, expect)
        else:
            np.testing.assert_allclose(out, expect, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5)
    scaled = c.copy()
    kernels.get("gemm_tn")(a, b, scaled, 0.5, 0.0)
    np.testing.assert_allclose(scaled, 0.5 * (a.T @ b), rtol=1e-5)


@needs_gemm
def test_gemm_tn_refuses_what_it_cannot_compute():
    gemm = kernels.get("gemm_tn")
    a, b, c = np.ones((4, 3), np.float32), np.ones((4, 2), np.float32), np.zeros((3, 2), np.float32)
    for bad in [(a, b, np.zeros((2, 3), np.float32)),              # c of the wrong shape
                (a, np.ones((5, 2), np.float32), c),                # a and b with different batches
                (a, b.astype(np.float64), c),                       # mixed dtypes
                (a.astype(np.int32), b, c),                         # not floats
                (np.ones((0, 3), np.float32), np.ones((0, 2), np.float32), c)]:   # an empty batch
        with pytest.raises(REFUSAL):
            gemm(*bad, 1.0, 0.0)
    with pytest.raises(REFUSAL):
        gemm(np.ones((8, 3), np.float32)[::2], b, c, 1.0, 0.0)      # neither C-contiguous nor a transpose of one
    square = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="do not overlap"):
        gemm(square, square, square, 1.0, 0.0)                      # c aliasing an input
    np.testing.assert_array_equal(c, 0)


REFUSAL = kernels.REFUSALS


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("wd", [0.0, 1e-2])
@pytest.mark.usefixtures("shares")
def test_sgd_apply_gives_the_standard_codes_bits(dtype, wd):
    rng = np.random.default_rng(6)
    w, buf = (rng.standard_normal(4099).astype(dtype) for _ in range(2))
    w_ref, buf_ref = w.copy(), buf.copy()
    if wd:
        buf_ref += wd * w_ref
    w_ref -= 0.05 * buf_ref
    kernels.get("sgd_apply")(w, buf, 0.05, wd)
    np.testing.assert_array_equal(w, w_ref)
    np.testing.assert_array_equal(buf, buf_ref)
