"""The NumPy backend's kernels for image layers (im2col, col2im, maxpool, maxpool_grad, bias_add_rows /
bias_grad_rows, and relu / relu_grad on any dense layout, in backends/_kernels.c) against the Array API code they
override: the same bits for Conv2d, MaxPool2d and ReLU, forward and backward, whole on one thread and split over
OpenBLAS's threads; refused arrays fall back to the standard code; gemm_tn's transposed operands."""
import numpy as np
import pytest

import portanet as pn
from portanet.backends import kernels
from portanet.step.fusion import plan
from test_kernels import needs_kernels, shares  # noqa: F401,F811  (shares: a fixture)

CONVS = [dict(cin=3, cout=4, k=3, s=1, p=1, shape=(2, 3, 7, 6)), dict(cin=3, cout=4, k=(3, 5), s=(2, 3), p=(2, 1),
                                                                        shape=(2, 3, 9, 11)),
         dict(cin=2, cout=5, k=1, s=2, p=0, shape=(3, 2, 5, 5)), dict(cin=1, cout=3, k=5, s=1, p=2, shape=(2, 1, 8, 9)),
         dict(cin=2, cout=2, k=(2, 3), s=(1, 2), p=(0, 2), shape=(1, 2, 6, 4))]
POOLS = [dict(k=2, s=None, p=0), dict(k=3, s=1, p=1), dict(k=(3, 2), s=(2, 1), p=(1, 1)), dict(k=3, s=2, p=0),
         dict(k=(1, 4), s=(1, 3), p=(0, 2)), dict(k=2, s=1, p=0), dict(k=(2, 3), s=2, p=0)]
# image sizes with rows of 3 to 20 outputs, so the float32 vector loops (4 and 8 lanes, the last chunk moved back to
# end at the row's end) and the general ones all run, a stride-2 row whose last lanes would leave it, and 2x2
# windows that tile the whole image (their gradient skips zeroing the plane)
SIZES = [(7, 8), (7, 20), (8, 20), (7, 21)]


def _run(layer, x, dy):
    """The layer as fit runs it: through the step plan (portanet/step/fusion.py: the row-bias and ReLU kernels),
    with an optimizer's flat buffer as its parameters' sink (the bias gradient's kernel)."""
    model = pn.Sequential(layer)
    if model.parameters():
        pn.optim.SGD(model.parameters(), lr=0.1)
    runner = plan(model)
    y = runner.forward(x)
    dx = runner.backward(dy)
    return [np.array(y), np.array(dx)] + [np.array(p.grad) for p in layer.parameters()]


def _same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert u.shape == v.shape and u.dtype == v.dtype
        np.testing.assert_array_equal(u, v)


def _conv_case(spec, dtype, channel_major):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(spec["shape"]).astype(dtype)
    if channel_major:            # the memory a conv's output has: (channels, batch, h, w), seen as (batch, channels...)
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)

    def make():
        pn.seed(0)
        return pn.Conv2d(spec["cin"], spec["cout"], spec["k"], stride=spec["s"], padding=spec["p"], dtype=dtype)

    dy = rng.standard_normal(make().forward(x).shape).astype(dtype)
    return make, x, dy


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("channel_major", [False, True], ids=["nchw", "channel-major"])
@pytest.mark.parametrize("spec", CONVS, ids=[f"k{c['k']}-s{c['s']}-p{c['p']}" for c in CONVS])
@pytest.mark.usefixtures("shares")
def test_conv_kernels_give_the_standard_codes_bits(spec, channel_major, dtype, standard_code):
    make, x, dy = _conv_case(spec, dtype, channel_major)
    _same(_run(make(), x, dy), standard_code(lambda: _run(make(), x, dy)))


def _pool_case(spec, dtype, channel_major, size, nan=False, ties=False):
    rng = np.random.default_rng(1)
    shape = (2, 3, *size)
    x = rng.integers(0, 3, shape).astype(dtype) if ties else rng.standard_normal(shape).astype(dtype)
    if nan:
        x[0, 0, 1, 1:3] = x[1, 2, 6, 7] = np.nan
    if channel_major:
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    layer = pn.MaxPool2d(spec["k"], spec["s"], spec["p"])
    dy = rng.standard_normal(layer.forward(x).shape).astype(dtype)
    return lambda: pn.MaxPool2d(spec["k"], spec["s"], spec["p"]), x, dy


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ["plain", "channel-major", "nan", "ties"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
@pytest.mark.parametrize("spec", POOLS, ids=[f"k{c['k']}-s{c['s']}-p{c['p']}" for c in POOLS])
@pytest.mark.usefixtures("shares")
def test_maxpool_kernels_give_the_standard_codes_bits(spec, size, case, dtype, standard_code):
    make, x, dy = _pool_case(spec, dtype, case == "channel-major", size, nan=case == "nan", ties=case == "ties")
    fused = _run(make(), x, dy)
    standard = standard_code(lambda: _run(make(), x, dy))
    _same(fused, standard)
    winners = [make()]
    winners[0].forward(x)
    assert winners[0]._saved[0].dtype == np.uint8


@needs_kernels
def test_window_kernels_refuse_what_they_cannot_read_and_the_standard_code_runs(standard_code):
    wide = np.random.default_rng(2).standard_normal((2, 3, 7, 12)).astype(np.float32)
    x = wide[:, :, :, ::2]                               # rows with a stride: no kernel takes them
    for name, args in [("im2col", (x, np.empty((27, 70), np.float32), 3, 3, 1, 1, 1, 1)),
                       ("maxpool", (x, np.empty((2, 3, 3, 3), np.float32), np.empty((2, 3, 3, 3), np.uint8),
                                    2, 2, 2, 2, 0, 0))]:
        with pytest.raises(kernels.REFUSALS):
            kernels.get(name)(*args)
    with pytest.raises(kernels.REFUSALS):                # columns of the wrong size
        kernels.get("im2col")(wide, np.empty((27, 71), np.float32), 3, 3, 1, 1, 1, 1)
    with pytest.raises(kernels.REFUSALS):                # mixed dtypes
        kernels.get("col2im")(np.empty((27, 70)), np.empty((2, 3, 7, 6), np.float32), 3, 3, 1, 1, 1, 1)
    memory = np.zeros(2 * 3 * 7 * 8 + 64, np.float32)      # an output that overwrites the input it reads
    with pytest.raises(ValueError, match="do not overlap"):
        kernels.get("maxpool")(memory[:336].reshape(2, 3, 7, 8), memory[40:112].reshape(2, 3, 3, 4),
                               np.empty((2, 3, 3, 4), np.uint8), 2, 2, 2, 2, 0, 0)
    for make in (lambda: pn.Conv2d(3, 2, 3, padding=1), lambda: pn.MaxPool2d(2)):
        pn.seed(0)
        layer = make()
        y = layer.forward(x)
        dy = np.ones(y.shape, np.float32)
        pn.seed(0)
        _same(_run(make(), x, dy), standard_code(lambda: (pn.seed(0), _run(make(), x, dy))[1]))


@needs_kernels
@pytest.mark.skipif(kernels.get("gemm_tn") is None, reason="no OpenBLAS GEMM found")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm_tn_reads_transposed_operands_and_fills_a_conv_weights_shape(dtype):
    rng = np.random.default_rng(3)
    g = rng.standard_normal((6, 40)).astype(dtype)               # dY: (out, batch * positions)
    cols = rng.standard_normal((12, 40)).astype(dtype)           # columns: (in * kh * kw, batch * positions)
    for a, b in [(g.T, cols.T), (np.ascontiguousarray(g.T), cols.T), (g.T, np.ascontiguousarray(cols.T)),
                 (np.ascontiguousarray(g.T), np.ascontiguousarray(cols.T))]:
        c = np.full((6, 3, 2, 2), 2.0, dtype)
        kernels.get("gemm_tn")(a, b, c, 1.0, 0.5)
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(c.reshape(6, 12), g @ cols.T + 1.0, **tol)
    with pytest.raises(kernels.REFUSALS):                        # (m, ...) must start with a's columns
        kernels.get("gemm_tn")(g.T, cols.T, np.zeros((3, 24), dtype), 1.0, 0.0)


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["c", "channel-major", "fortran"])
@pytest.mark.usefixtures("shares")
def test_relu_kernels_take_any_dense_layout_and_give_the_standard_codes_bits(layout, dtype, standard_code):
    rng = np.random.default_rng(4)
    order = {"c": lambda a: a, "fortran": np.asfortranarray,
             "channel-major": lambda a: np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)}[layout]
    x = order(rng.standard_normal((3, 4, 5, 6)).astype(dtype))
    x[0, 0, 0, :3] = [np.nan, -0.0, 0.0]
    dy = order(rng.standard_normal((3, 4, 5, 6)).astype(dtype))

    def run():
        runner = plan(pn.Sequential(pn.ReLU()))          # the relu and relu_grad kernels come with the plan
        y = runner.forward(x)
        return [np.array(y), np.array(runner.backward(dy)), y.strides == x.strides]

    fused, standard = run(), standard_code(run)
    np.testing.assert_array_equal(fused[0], standard[0])
    assert not np.signbit(fused[0][0, 0, 0, 1])                  # maximum(-0.0, 0) is +0.0, as NumPy gives
    np.testing.assert_array_equal(fused[1], standard[1])
    assert fused[2]                                               # the output keeps the input's memory order


@needs_kernels
def test_relu_kernels_refuse_arrays_that_are_not_dense_or_differ_in_layout():
    x = np.random.default_rng(5).standard_normal((4, 6)).astype(np.float32)
    relu = kernels.get("relu")
    for bad in [(x[:, ::2], np.empty((6, 6), np.float32)[:, ::2][:4]),     # strided, one layout: not dense
                (x, np.empty((6, 4), np.float32).T),                          # dense, two layouts
                (x, x)]:                                                      # the output is the input
        with pytest.raises(kernels.REFUSALS):
            relu(*bad)


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.usefixtures("shares")
def test_row_bias_kernels_give_numpys_bits(dtype):
    # rows across the pairwise sum's boundaries: under 8, up to 128, and split in halves at multiples of 8
    rng = np.random.default_rng(6)
    for width in [1, 7, 8, 9, 127, 128, 129, 1000, 8193, 25088]:
        g = (rng.standard_normal((5, width)) * rng.uniform(0.1, 100)).astype(dtype)
        g[0] = -0.0                                              # NumPy's sum of -0.0s is +0.0
        db = np.empty(5, dtype)
        kernels.get("bias_grad_rows")(g, db)
        np.testing.assert_array_equal(db, g.sum(axis=1))
        assert not np.signbit(db[0])
        b = rng.standard_normal(5).astype(dtype)
        y = g.copy()
        kernels.get("bias_add_rows")(y, b)
        np.testing.assert_array_equal(y, g + b[:, None])
    with pytest.raises(kernels.REFUSALS):
        kernels.get("bias_grad_rows")(np.ones((3, 4), dtype), np.empty(4, dtype))     # one value per row
    for name, arrays in [("bias_add_rows", 1), ("bias_relu_rows", 1), ("relu_grad_sum_rows", 3)]:
        with pytest.raises(kernels.REFUSALS):       # a Dense's bias, one value per column, is not a row kernel's
            kernels.get(name)(*(np.ones((3, 4), dtype) for _ in range(arrays)), np.zeros(4, dtype))


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("spec", CONVS[:3], ids=[f"k{c['k']}-s{c['s']}-p{c['p']}" for c in CONVS[:3]])
@pytest.mark.usefixtures("shares")
def test_conv_relu_pairs_give_the_standard_codes_bits(spec, input_grad, dtype, standard_code):
    """The plan runs Conv2d + ReLU as one step (bias_relu_rows forward; relu_grad_sum_rows backward, the ReLU's mask
    and the conv's bias gradient in one pass over each row) and a MaxPool2d after it as its own kernels: the layers'
    own code, kernels off, gives the same bits, with an optimizer's flat buffer as the sink and without one."""
    make, x, _ = _conv_case(spec, dtype, False)
    x[0, 0, 0, :2] = [np.nan, -0.0]

    def run(with_optimizer):
        model = pn.Sequential(make(), pn.ReLU(), pn.Conv2d(spec["cout"], 2, 1, dtype=dtype), pn.ReLU())
        if with_optimizer:
            pn.optim.SGD(model.parameters(), lr=0.1)
        runner = plan(model)
        y = runner.forward(x)
        dy = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
        dx = runner.backward(dy, input_grad=input_grad)
        return [np.array(y)] + ([np.array(dx)] if input_grad else []) + [np.array(p.grad) for p in model.parameters()]

    assert [type(s).__name__ for s in plan(pn.Sequential(make(), pn.ReLU())).steps] == ["_ConvReLU"]
    for with_optimizer in (True, False):
        _same(run(with_optimizer), standard_code(lambda: run(with_optimizer)))


@needs_kernels
def test_fused_conv_relu_passes_gradcheck():
    from test_kernels import Planned

    pn.seed(2)
    model = pn.Sequential(pn.Conv2d(2, 3, 3, padding=1, dtype="float64"), pn.ReLU(), pn.MaxPool2d(2),
                          pn.Conv2d(3, 2, 2, dtype="float64"), pn.ReLU())
    planned = Planned(model)
    assert [type(s).__name__ for s in planned.runner.steps] == ["_ConvReLU", "_Layer", "_ConvReLU"]
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 6))
    errors = pn.gradcheck(planned, x, tol=1e-6)
    assert len(errors) == 5 and max(errors.values()) < 1e-7
