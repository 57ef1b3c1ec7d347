"""The counter-based stream (backends/counter_rng.py): Philox4x32-10's published answers, a state that continues
the very stream at any split, the draws' statistics, and (on a GPU) the CuPy generator's bits against the NumPy
reference. tests/test_cuda_kernels.py also runs the CUDA source of the draws on the CPU against this reference."""
import math
import pickle

import numpy as np
import pytest

import portanet as pn
from portanet import backends
from portanet.backends import counter_rng
from portanet.backends.base import encode_state

GPU_REASON = backends.get("cupy").unavailable()
needs_gpu = pytest.mark.skipif(GPU_REASON is not None, reason=f"cupy/gpu: {GPU_REASON}")
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

# Random123's known-answer vectors for Philox4x32-10 (its tests/kat_vectors): counter, key -> output
KAT = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
       ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
       ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]


@pytest.mark.parametrize("counter,key,expect", KAT)
def test_philox_gives_random123s_known_answers(counter, key, expect):
    assert tuple(int(w) for w in counter_rng.philox4x32_10(*counter, *key)) == expect


def test_block_j_is_the_counter_j_under_the_seed_as_key():
    seed = 0x0123456789ABCDEF
    assert counter_rng.key_of(seed) == (0x89ABCDEF, 0x01234567)
    b = counter_rng.blocks(counter_rng.key_of(seed), 2**32 - 1, 2)     # the counter's low word carries into the next
    for row, j in zip(b, (2**32 - 1, 2**32)):
        want = counter_rng.philox4x32_10(j & 0xFFFFFFFF, j >> 32, 0, 0, 0x89ABCDEF, 0x01234567)
        assert tuple(row) == tuple(int(w) for w in want)
    wrapped = counter_rng.blocks((1, 2), 2**64 - 1, 2)                 # and the counter wraps mod 2**64
    np.testing.assert_array_equal(wrapped[1], counter_rng.blocks((1, 2), 0, 1)[0])


DRAWS = [lambda g: g.uniform((7,), F32, -1.0, 2.0), lambda g: g.normal((3, 2), F64, 0.5, 3.0),
         lambda g: g.bernoulli((5,), 0.3, F32), lambda g: g.permutation(11), lambda g: g.uniform((4,), F64),
         lambda g: g.normal((9,), F32), lambda g: g.bernoulli((2, 3), 0.9, F64), lambda g: g.permutation(1)]
BLOCKS = [2, 3, 2, 6, 2, 3, 3, 1]                                       # ceil(n / values per block), draw by draw


def test_offsets_advance_by_whole_blocks():
    g = counter_rng.PhiloxGenerator(3)
    for draw, used in zip(DRAWS, BLOCKS):
        before = g.offset
        draw(g)
        assert g.offset - before == used


@pytest.mark.parametrize("split", range(len(DRAWS) + 1))
def test_a_restored_state_continues_the_very_stream(split):
    g = counter_rng.PhiloxGenerator(42)
    whole = [d(g) for d in DRAWS]
    g = counter_rng.PhiloxGenerator(42)
    for d in DRAWS[:split]:
        d(g)
    state = g.get_state()
    assert state.dtype == np.uint8 and state.ndim == 1
    for d in DRAWS:                                                    # wander on, then come back
        d(g)
    other = counter_rng.PhiloxGenerator(7)                             # another seed: the state carries the seed
    for h in (g, other):
        h.set_state(state)
        for d, want in zip(DRAWS[split:], whole[split:]):
            got = d(h)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_a_pickled_generator_continues_the_very_stream():
    """A model with Dropout pickles and deep-copies its generators (the CuPy one is this class on the GPU engine)."""
    g = counter_rng.PhiloxGenerator(5)
    DRAWS[0](g)
    copy = pickle.loads(pickle.dumps(g))
    for d in DRAWS:
        np.testing.assert_array_equal(d(copy), d(g))


def test_values_are_the_documented_functions_of_the_blocks():
    seed, key = 11, counter_rng.key_of(11)
    g = counter_rng.PhiloxGenerator(seed)
    g.uniform((3,), F32)                                               # one block
    b = counter_rng.blocks(key, 1, 3).astype(np.uint64)                # the next draws start at block 1
    u32 = g.uniform((10,), F32)
    np.testing.assert_array_equal(u32, (b.reshape(-1)[:10] >> 8).astype(np.float32) * np.float32(2.0**-24))
    b = counter_rng.blocks(key, g.offset, 2).astype(np.uint64)
    u64 = g.uniform((4,), F64)
    np.testing.assert_array_equal(u64, ((b[:, 0::2] << 32 | b[:, 1::2]) >> 11).reshape(-1) * 2.0**-53)
    start = g.offset
    z = g.normal((4,), F64)
    w = counter_rng.blocks(key, start, 2).astype(np.uint64)
    u1 = (((w[:, 0] << 32 | w[:, 1]) >> 11) + 1) * 2.0**-53
    u2 = ((w[:, 2] << 32 | w[:, 3]) >> 11) * 2.0**-53
    r = np.sqrt(-2 * np.log(u1))
    np.testing.assert_allclose(z, np.stack([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)], 1).reshape(-1),
                               rtol=1e-14)
    start = g.offset
    perm = g.permutation(6)
    w = counter_rng.blocks(key, start, 3).astype(np.uint64)
    keys = (w[:, 0::2] << 32 | w[:, 1::2]).reshape(-1)
    np.testing.assert_array_equal(perm, np.argsort(keys >> 3, kind="stable"))   # 3 index bits for n = 6


def test_uniforms_are_exact_grid_points_in_the_unit_interval():
    g = counter_rng.PhiloxGenerator(1)
    u = g.uniform((100_000,), F32)
    assert u.dtype == F32 and u.min() >= 0 and u.max() < 1
    assert np.all(u * 2**24 == np.floor(u * np.float64(2**24)))
    d = g.uniform((100_000,), F64)
    assert d.dtype == F64 and d.min() >= 0 and d.max() < 1
    assert np.all(np.ldexp(d, 53) == np.floor(np.ldexp(d, 53)))
    s = g.uniform((50_000,), F32, -2.0, 3.0)
    assert s.min() >= -2 and s.max() <= 3


def _ks(sample, cdf):
    """Kolmogorov-Smirnov distance between a sample and a continuous cdf."""
    x = np.sort(np.asarray(sample, np.float64))
    f = cdf(x)
    n = len(x)
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


N = 200_000
KS_001 = 1.95 / math.sqrt(N)        # the KS distance a true sample exceeds with probability 0.001


@pytest.mark.parametrize("dtype", [F32, F64])
def test_uniform_statistics(dtype):
    u = counter_rng.PhiloxGenerator(2024).uniform((N,), dtype).astype(np.float64)
    assert abs(u.mean() - 0.5) < 4 * math.sqrt(1 / 12 / N)
    assert abs(u.var() - 1 / 12) < 4 * math.sqrt(1 / 180 / N)       # var of (u - 1/2)^2 is 1/80 - 1/144 = 1/180
    assert _ks(u, lambda x: x) < KS_001
    pairs = np.corrcoef(u[:-1], u[1:])[0, 1]                           # neighbours (within and across blocks)
    assert abs(pairs) < 4 / math.sqrt(N)
    other = counter_rng.PhiloxGenerator(2025).uniform((N,), dtype)    # the next seed: another stream
    assert abs(np.corrcoef(u, other)[0, 1]) < 4 / math.sqrt(N)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_normal_statistics(dtype):
    z = counter_rng.PhiloxGenerator(77).normal((N,), dtype).astype(np.float64)
    assert abs(z.mean()) < 4 / math.sqrt(N)
    assert abs(z.var() - 1) < 4 * math.sqrt(2 / N)
    phi = np.vectorize(lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2))))
    assert _ks(z[:50_000], phi) < 1.95 / math.sqrt(50_000)
    tail = np.mean(np.abs(z) > 3)                                      # 0.0027 for a true normal
    assert abs(tail - 0.0026998) < 4 * math.sqrt(0.0027 / N)
    assert abs(np.mean(z**3)) < 4 * math.sqrt(15 / N) and abs(np.mean(z**4) - 3) < 4 * math.sqrt(96 / N)
    shifted = counter_rng.PhiloxGenerator(77).normal((N,), dtype, 1.0, 2.0).astype(np.float64)
    np.testing.assert_allclose(shifted, z * 2 + 1, rtol=1e-6 if dtype == F32 else 1e-15, atol=1e-6)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.97, 1.0])
def test_bernoulli_frequency(dtype, p):
    b = counter_rng.PhiloxGenerator(5).bernoulli((N,), p, dtype)
    assert b.dtype == dtype and set(np.unique(b)) <= {0.0, 1.0}
    assert abs(b.mean() - p) <= 4 * math.sqrt(p * (1 - p) / N)


def test_permutations_are_permutations_and_uniform_over_positions():
    g = counter_rng.PhiloxGenerator(9)
    assert g.permutation(0).shape == (0,) and g.permutation(1).tolist() == [0]
    big = g.permutation(60_000)
    assert big.dtype == np.int64 and np.array_equal(np.sort(big), np.arange(60_000))
    trials, n = 6000, 8
    where = np.array([np.argmax(g.permutation(n) == 0) for _ in range(trials)])
    counts = np.bincount(where, minlength=n)
    chi2 = float(((counts - trials / n) ** 2 / (trials / n)).sum())
    assert chi2 < 24.3                                                 # 7 degrees of freedom, p = 0.001


def test_bad_seeds_and_foreign_states_are_refused():
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="non-negative int seed"):
            counter_rng.PhiloxGenerator(bad)
    g = counter_rng.PhiloxGenerator(1)
    pcg = np.random.Generator(np.random.PCG64(1)).bit_generator.state
    for foreign in (encode_state(pcg), encode_state([1, 4]), encode_state({"algorithm": "philox4x32-10",
                                                                            "seed": -1, "offset": 0})):
        with pytest.raises(ValueError, match="restores a philox4x32-10 state"):
            g.set_state(foreign)
    with pytest.raises(ValueError, match="non-negative int"):
        g.permutation(-1)
    with pytest.raises(TypeError, match="float32 or float64"):
        g.uniform((2,), np.int32)


# ---- on a GPU: the CuPy generator draws the reference's numbers ---------------------------------------------------

@needs_gpu
@pytest.mark.parametrize("seed", [0, 123456789, 2**63 + 5])
def test_cupy_generator_draws_the_references_bits(seed):
    gpu = pn.device("gpu")
    g, ref = gpu.rng(seed), counter_rng.PhiloxGenerator(seed)
    assert type(g).__name__ == "CupyGenerator" and g.backend_name == ref.backend_name
    for n in (1, 3, 4, 5, 1001, 65_537):
        for dt in (F32, F64):
            np.testing.assert_array_equal(gpu.to_host(g.uniform((n,), dt, -1.0, 4.0)), ref.uniform((n,), dt, -1.0, 4.0))
            np.testing.assert_array_equal(gpu.to_host(g.bernoulli((n,), 0.25, dt)), ref.bernoulli((n,), 0.25, dt))
            got, want = gpu.to_host(g.normal((n,), dt, 0.5, 2.0)), ref.normal((n,), dt, 0.5, 2.0)
            np.testing.assert_allclose(got, want, rtol=1e-6 if dt == F32 else 1e-13, atol=1e-6 if dt == F32 else 1e-13)
            if dt == F32:                          # float64 math rounded to float32: all but a few in 2**28 equal
                assert np.mean(got == want) > 0.999
        np.testing.assert_array_equal(gpu.to_host(g.permutation(n)), ref.permutation(n))
    assert g.offset == ref.offset


@needs_gpu
def test_a_state_saved_on_the_gpu_continues_on_the_host_and_back():
    gpu = pn.device("gpu")
    g = gpu.rng(31)
    g.normal((1000,), F32)
    state = g.get_state()
    want = gpu.to_host(g.uniform((777,), F64))
    host = counter_rng.PhiloxGenerator(0)
    host.set_state(state)
    np.testing.assert_array_equal(host.uniform((777,), F64), want)
    g2 = gpu.rng(99)
    g2.set_state(host.get_state())
    np.testing.assert_array_equal(gpu.to_host(g2.permutation(500)), host.permutation(500))
