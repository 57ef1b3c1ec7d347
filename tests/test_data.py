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


def test_dataset_protocol_is_accepted():
    x, y = _data(20)
    ds = pn.ArrayDataset(x, y)
    loader = pn.DataLoader(ds, batch_size=8, shuffle=True, seed=1, device="strict:device1")
    seen = []
    for xb, yb in loader:
        seen += loader.device.to_host(yb).tolist()
    assert sorted(seen) == list(range(20)) and loader.placement == "stream"


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
