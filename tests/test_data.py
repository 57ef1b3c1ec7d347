"""DataLoader: batch counts, coverage, backend-independent shuffles, on-device conversion, transforms."""
import numpy as np
import pytest

import portanet as pn
from portanet.transforms import Compose, GaussianNoise, RandomFlip, RandomRotation, RandomShift


def _data(n=103):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 4, 5), dtype=np.uint8), np.arange(n, dtype=np.int64)


@pytest.mark.parametrize("drop_last,expected", [(False, 11), (True, 10)])
def test_batch_counts(drop_last, expected):
    x, y = _data()
    loader = pn.DataLoader(x, y, batch_size=10, drop_last=drop_last)
    assert len(loader) == expected
    sizes = [xb.shape[0] for xb, _ in loader]
    assert len(sizes) == expected and sizes[:10] == [10] * 10
    assert sizes[-1] == (10 if drop_last else 3)


@pytest.mark.parametrize("placement", ["device", "stream"])
def test_every_sample_once_per_epoch_and_fresh_order(ctx, placement):
    x, y = _data()
    loader = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=3, device=ctx.device, placement=placement,
                           dtype=ctx.dtype_name)
    epochs = []
    for _ in range(2):
        seen = []
        for xb, yb in loader:
            assert ctx.device.holds(xb) and ctx.device.holds(yb)
            assert xb.dtype == ctx.dtype and tuple(xb.shape[1:]) == (4, 5)
            seen += ctx.host(yb).tolist()
            np.testing.assert_allclose(ctx.host(xb), x[ctx.host(yb)] / 255.0, rtol=1e-6)
        assert sorted(seen) == list(range(103))
        epochs.append(seen)
    assert epochs[0] != epochs[1]


def test_same_seed_same_batches_on_every_backend():
    x, y = _data()
    orders = {}
    for spec in ("cpu", "strict:device1", "torch:cpu"):
        d = pn.device(spec)
        loader = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=11, device=d)
        orders[spec] = [d.to_host(yb).tolist() for _, yb in loader]
    assert orders["cpu"] == orders["strict:device1"] == orders["torch:cpu"]


def test_resume_position_reproduces_the_shuffle():
    x, y = _data()
    a = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=5)
    list(a)
    second = [yb.tolist() for _, yb in a]
    b = pn.DataLoader(x, y, batch_size=16, shuffle=True, seed=5)
    b.load_state_dict({"epoch": 1, "seed": 5})
    assert [yb.tolist() for _, yb in b] == second


def test_float_targets_and_no_labels():
    x = np.random.default_rng(0).standard_normal((10, 3))
    loader = pn.DataLoader(x, x[:, :1], batch_size=4)
    xb, yb = next(iter(loader))
    assert xb.dtype == np.float32 and yb.dtype == np.float32
    np.testing.assert_allclose(xb, x[:4], rtol=1e-6)
    xb, none = next(iter(pn.DataLoader(x, batch_size=4)))
    assert none is None


class Pairs:
    """A user Dataset: only __len__ and __getitem__ returning (x_i, y_i)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_dataset_protocol_is_accepted():
    x, y = _data(20)
    loader = pn.DataLoader(Pairs(x, y), batch_size=8, shuffle=True, seed=1, device="strict:device1")
    seen = []
    for xb, yb in loader:
        seen += loader.device.to_host(yb).tolist()
    assert sorted(seen) == list(range(20)) and loader.placement == "stream"
    # an ArrayDataset is read as its arrays, with their placement choices
    assert pn.DataLoader(pn.ArrayDataset(x, y), device="strict:device1").placement == "device"


@pytest.mark.parametrize("bad,msg", [
    (dict(batch_size=0), "batch_size must be a positive int"),
    (dict(batch_size=-3), "batch_size must be a positive int"),
    (dict(placement="gpu"), "placement must be"),
])
def test_loader_argument_errors(bad, msg):
    x, y = _data(10)
    with pytest.raises(ValueError, match=msg):
        pn.DataLoader(x, y, **bad)


def test_loader_data_errors():
    x, y = _data(10)
    with pytest.raises(pn.ShapeError, match="x has 10 samples but y has 9"):
        pn.DataLoader(x, y[:9])
    with pytest.raises(ValueError, match="dataset is empty"):
        pn.DataLoader(x[:0], y[:0])


def test_train_val_split_and_one_hot(ctx):
    x, y = _data(50)
    (xt, yt), (xv, yv) = pn.train_val_split(x, y, 0.2, seed=0)
    assert len(xt) == 40 and len(xv) == 10 and sorted(np.concatenate([yt, yv]).tolist()) == list(range(50))
    oh = ctx.host(pn.one_hot(ctx.asarray(np.array([2, 0, 1])), 3))
    np.testing.assert_array_equal(oh, np.eye(3)[[2, 0, 1]])


def test_transforms_run_on_the_device_per_sample(ctx):
    x = np.zeros((64, 9, 9), np.float32)
    x[:, 4, 4] = 1.0
    xb = ctx.asarray(x)
    rng = ctx.device.rng(0)
    shifted = ctx.host(RandomShift(2)(xb, rng))
    positions = {tuple(np.argwhere(img)[0]) for img in shifted}
    assert len(positions) > 5 and all(abs(r - 4) <= 2 and abs(c - 4) <= 2 for r, c in positions)
    assert np.allclose(shifted.sum((1, 2)), 1.0)
    rot = ctx.host(RandomRotation(0.0)(xb, rng))
    np.testing.assert_allclose(rot, x, **ctx.tol)
    square = ctx.asarray(np.ones((64, 9, 9), np.float32))
    turned = ctx.host(RandomRotation(45)(square, rng))
    # the centre stays; corners rotate out of the image for large enough angles, by a different angle each
    assert turned[:, 4, 4].min() > 0.99 and (turned[:, 0, 0] < 0.5).mean() > 0.3 and len(set(turned[:, 0, 1])) > 10
    flipped = ctx.host(RandomFlip(1.0)(ctx.asarray(np.arange(6, dtype=np.float32).reshape(1, 2, 3)), rng))
    np.testing.assert_array_equal(flipped[0], [[2, 1, 0], [5, 4, 3]])
    noisy = ctx.host(GaussianNoise(0.1)(ctx.asarray(np.zeros((200, 9, 9), np.float32)), rng))
    assert abs(noisy.std() - 0.1) < 0.01
    with pytest.raises(pn.ShapeError, match="Flatten"):
        RandomShift(1)(ctx.asarray(np.zeros((2, 81), np.float32)), rng)


def test_loader_applies_transforms_reproducibly(ctx):
    x, y = _data(32)
    make = lambda: pn.DataLoader(x, y, batch_size=8, seed=2, device=ctx.device,
                                 transform=Compose(RandomShift(1), GaussianNoise(0.01)))
    a = [ctx.host(xb) for xb, _ in make()]
    b = [ctx.host(xb) for xb, _ in make()]
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.allclose(a[0], x[:8] / 255.0)


class Samples:
    """A user Dataset of images alone (no targets)."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


@pytest.mark.parametrize("placement", ["device", "stream"])
def test_one_conversion_rule_for_every_input_path(ctx, placement):
    # the reported case: DataLoader(ArrayDataset(x_uint8, y)) yielded 0..255 while DataLoader(x_uint8, y) scaled
    x, y = _data(37)
    expected = x.astype(np.float64) / 255.0
    paths = {
        "arrays": pn.DataLoader(x, y, batch_size=8, device=ctx.device, dtype=ctx.dtype_name, placement=placement),
        "ArrayDataset": pn.DataLoader(pn.ArrayDataset(x, y), batch_size=8, device=ctx.device, dtype=ctx.dtype_name,
                                      placement=placement),
        "Dataset of pairs": pn.DataLoader(Pairs(x, y), batch_size=8, device=ctx.device, dtype=ctx.dtype_name),
        "Dataset of images": pn.DataLoader(Samples(x), batch_size=8, device=ctx.device, dtype=ctx.dtype_name),
        "list of images": pn.DataLoader(list(x), batch_size=8, device=ctx.device, dtype=ctx.dtype_name),
        "device array": pn.DataLoader(ctx.device.asarray(x), ctx.device.asarray(y), batch_size=8, device=ctx.device,
                                      dtype=ctx.dtype_name, placement=placement),
    }
    for name, loader in paths.items():
        got = np.concatenate([ctx.host(xb) for xb, _ in loader])
        assert got.dtype == np.dtype(ctx.dtype_name), name
        np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=name)
    # predict's loader follows it too: an Identity model returns the converted batch
    model = pn.Sequential(pn.Flatten(), device=ctx.device)
    np.testing.assert_allclose(pn.predict(model, x), expected.reshape(37, 20), rtol=1e-6)
    np.testing.assert_allclose(pn.predict(model, pn.ArrayDataset(x)), expected.reshape(37, 20), rtol=1e-6)
    # other dtypes convert without scaling; scale= overrides the rule
    ints = x.astype(np.int64)
    got = np.concatenate([ctx.host(xb) for xb, _ in pn.DataLoader(pn.ArrayDataset(ints, y), batch_size=8,
                                                                   device=ctx.device, dtype=ctx.dtype_name)])
    np.testing.assert_array_equal(got, ints)
    got = np.concatenate([ctx.host(xb) for xb, _ in pn.DataLoader(Samples(x), batch_size=8, device=ctx.device,
                                                                  dtype=ctx.dtype_name, scale=1.0)])
    np.testing.assert_array_equal(got, x)


def test_fit_on_an_array_dataset_trains_as_on_arrays():
    x, y = _data(64)
    y = y % 3
    losses = []
    for data in ((x, y), (pn.ArrayDataset(x, y),)):
        pn.seed(0)
        model = pn.Sequential(pn.Flatten(), pn.Dense(20, 3))
        loader = pn.DataLoader(*data, batch_size=16, seed=0)
        hist = pn.fit(model, pn.CrossEntropyLoss(), pn.optim.SGD(model.parameters(), lr=0.1), loader, epochs=2,
                      verbose=0)
        losses.append(hist["loss"])
    assert losses[0] == losses[1] and losses[0][0] < 2.0


def test_a_dataset_with_y_is_refused():
    x, y = _data(10)
    with pytest.raises(TypeError, match="ArrayDataset and y: the dataset holds its targets; drop y"):
        pn.DataLoader(pn.ArrayDataset(x, y), y)
    with pytest.raises(TypeError, match=r"Pairs \(a Dataset\) and y: a Dataset yields its own targets"):
        pn.DataLoader(Pairs(x, y), y)


def test_a_pair_given_as_x_is_read_as_x_and_y(ctx):
    # DataLoader((x, y)) read the pair as a Dataset of two samples, x and y, and failed in NumPy's np.stack
    # ("all input arrays must have the same shape"), or, for x and y of one shape, yielded batches of both
    x, y = _data(37)
    for data, targets in (((x, y), y), ((x, None), None), ((x, list(y)), y), ((x, x), x)):
        loader = pn.DataLoader(data, batch_size=8, device=ctx.device, dtype=ctx.dtype_name)
        batches = list(loader)
        assert len(batches) == 5
        got = np.concatenate([ctx.host(xb) for xb, _ in batches])
        np.testing.assert_allclose(got, x.astype(np.float64) / 255.0, rtol=1e-6)   # uint8: the one rule
        if targets is None:
            assert all(yb is None for _, yb in batches)
        else:
            got_y = np.concatenate([ctx.host(yb) for _, yb in batches])
            np.testing.assert_array_equal(got_y, targets)      # targets are never scaled


class Ragged:
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return np.zeros(3 + i % 2, np.float32), i


def test_dataset_samples_of_different_shapes_are_a_shape_error(ctx):
    loader = pn.DataLoader(Ragged(), batch_size=4, device=ctx.device, dtype=ctx.dtype_name)
    with pytest.raises(pn.ShapeError, match=r"samples differ in shape \(x: \(3,\), \(4,\)\): give every sample the "
                                            r"same shape \(pad or crop them\)"):
        next(iter(loader))
    x, y = _data(6)
    with pytest.raises(pn.ShapeError, match=r"samples differ in shape \(x: \(6,\), \(6, 4, 5\)\).*DataLoader\(x, y\)"):
        next(iter(pn.DataLoader([x, y], device=ctx.device, dtype=ctx.dtype_name)))
