"""A counter-based random stream: Philox4x32-10, with its NumPy reference and the draws built on it.

Why counter-based: value i of a stream is a pure function f(key, counter = offset + i), so a generator's whole
state is two integers (seed, offset). Saving them and restoring them continues the very same stream, on any
device, and a GPU computes every value of a draw in parallel with no state to carry between threads. Why Philox
(Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011): it is the one cuRAND,
PyTorch's CUDA generator and JAX (as an option) use, it passes BigCrush, ten rounds of 32x32->64-bit multiplies
are cheap on a GPU, and Random123 publishes known-answer vectors (tests/test_counter_rng.py checks them).

The stream. Key = the seed mod 2**64 as two 32-bit words (low first). Block j is philox4x32_10(counter = (j mod
2**32, j // 2**32 mod 2**32, 0, 0), key): four 32-bit words. A draw of n values starts at the generator's offset,
takes ceil(n / per_block) whole blocks and moves the offset past them, so the next draw starts on a fresh block
(rounding up wastes at most three words a draw and makes value i's block and word a division). Per block:

    float32 uniform / bernoulli   4 values, one word each:   u = (w >> 8) * 2**-24            in [0, 1), exact
    float64 uniform / bernoulli   2 values, words (a, b):    u = ((a << 32 | b) >> 11) * 2**-53   in [0, 1), exact
    float32 normal                4 values: Box-Muller on word pairs (a, b) = (w0, w1), (w2, w3), computed in
                                  float64 and rounded: u1 = (a + 1) * 2**-32 in (0, 1], u2 = b * 2**-32,
                                  r = sqrt(-2 log u1), t = 2 pi u2  ->  r cos t, r sin t
    float64 normal                2 values: the same with u1 = ((w0 << 32 | w1) >> 11) + 1) * 2**-53 and
                                  u2 = ((w2 << 32 | w3) >> 11) * 2**-53
    permutation keys              2 values, a 64-bit word (a << 32 | b) each (see ``permutation``)

Then, in the output's dtype: uniform = u * (high - low) + low; normal = z * std + mean (each rounded once, as
NumPy computes ``a *= s; a += m`` on a float32 array); bernoulli = 1 where u < p (compared exactly in float64),
else 0. The integers, the uniforms and the bernoulli masks are exact, so the CUDA kernels (cuda_sources.py) and
this reference give the same bits; the normals go through log, sqrt, cos and sin, which the GPU and NumPy round
within an ulp or two of float64 each: a float32 normal almost always has the same bits, a float64 one agrees to
~1e-15 relative. The normal tail is cut at |z| = 6.66 (float32: sqrt(64 ln 2)) or 8.57 (float64), where the
true probability beyond is below 3e-11.

The counter wraps after 2**64 blocks (2**66 words): unreachable at any real rate of drawing.
"""
from __future__ import annotations

import numpy as np

from .base import Generator, _host_float, decode_state, encode_state

ALGORITHM = "philox4x32-10"
M0, M1 = 0xD2511F53, 0xCD9E8D57          # Philox round multipliers
W0, W1 = 0x9E3779B9, 0xBB67AE85          # key increments (the golden ratio and sqrt(3) - 1, as 32-bit fractions)
_MASK32 = np.uint64(0xFFFFFFFF)
_MASK64 = (1 << 64) - 1

# values per 128-bit block, by draw
PER_BLOCK = {("uniform", "float32"): 4, ("uniform", "float64"): 2, ("normal", "float32"): 4,
             ("normal", "float64"): 2, ("bernoulli", "float32"): 4, ("bernoulli", "float64"): 2,
             ("permutation", "int64"): 2}


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten Philox rounds on counters (c0, c1, c2, c3) under key (k0, k1): four uint32 arrays (or ints) in,
    four uint32 arrays out. Word for word the CUDA ``philox`` in cuda_sources.py."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & _MASK32 for c in (c0, c1, c2, c3))
    k0, k1 = int(k0) & 0xFFFFFFFF, int(k1) & 0xFFFFFFFF
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
        p0 = c0 * np.uint64(M0)              # exact: a 32x32-bit product fits in 64 bits
        p1 = c2 * np.uint64(M1)
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0), p1 & _MASK32,
                          (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1), p0 & _MASK32)
    return tuple(c.astype(np.uint32) for c in (c0, c1, c2, c3))


def key_of(seed) -> tuple[int, int]:
    """The Philox key of a seed: the seed mod 2**64 as (low word, high word)."""
    s = int(seed) & _MASK64
    return s & 0xFFFFFFFF, s >> 32


def blocks(key, start: int, count: int) -> np.ndarray:
    """Blocks start .. start + count - 1 of the stream under ``key``, as a (count, 4) uint32 array."""
    j = np.arange(count, dtype=np.uint64) + np.uint64(start & _MASK64)      # wraps mod 2**64 with the counter
    words = philox4x32_10(j & _MASK32, j >> np.uint64(32), 0, 0, *key)
    return np.stack(words, axis=1)


def _u24(w):
    return (w >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)


def _u53(a, b):
    bits = (a.astype(np.uint64) << np.uint64(32) | b.astype(np.uint64)) >> np.uint64(11)
    return bits.astype(np.float64) * 2.0**-53


def _box_muller(u1, u2):
    r = np.sqrt(-2.0 * np.log(u1))
    t = 6.283185307179586 * u2
    return r * np.cos(t), r * np.sin(t)


class HostEngine:
    """The reference: each draw as flat NumPy arrays of n values from block ``start`` on (see the module doc).
    The CUDA engine (cuda_kernels.PhiloxEngine) has the same methods and gives the same bits."""

    def uniform(self, n, dtype, key, start, scale, shift):
        b = blocks(key, start, -(-n // PER_BLOCK["uniform", dtype.name]))
        u = _u24(b).reshape(-1) if dtype == np.float32 else _u53(b[:, 0::2], b[:, 1::2]).reshape(-1)
        u = u[:n]
        u *= dtype.type(scale)
        u += dtype.type(shift)
        return u

    def normal(self, n, dtype, key, start, std, mean):
        b = blocks(key, start, -(-n // PER_BLOCK["normal", dtype.name]))
        if dtype == np.float32:
            u1 = (b[:, 0::2].astype(np.float64) + 1.0) * 2.0**-32      # words 0 and 2
            u2 = b[:, 1::2].astype(np.float64) * 2.0**-32              # words 1 and 3
            z0, z1 = _box_muller(u1, u2)
        else:
            u1 = _u53(b[:, 0:1], b[:, 1:2]) + 2.0**-53                 # ((bits) + 1) * 2**-53, exact
            u2 = _u53(b[:, 2:3], b[:, 3:4])
            z0, z1 = _box_muller(u1, u2)
        z = np.stack([z0, z1], axis=2).reshape(-1)[:n].astype(dtype)   # per pair: r cos t, then r sin t
        z *= dtype.type(std)
        z += dtype.type(mean)
        return z

    def bernoulli(self, n, dtype, key, start, p):
        b = blocks(key, start, -(-n // PER_BLOCK["bernoulli", dtype.name]))
        u = _u24(b).reshape(-1) if dtype == np.float32 else _u53(b[:, 0::2], b[:, 1::2]).reshape(-1)
        return (u[:n].astype(np.float64) < float(p)).astype(dtype)

    def permutation(self, n, key, start):
        return (np.sort(permutation_keys(n, key, start)) & np.uint64(index_mask(n))).astype(np.int64)


def permutation_keys(n, key, start) -> np.ndarray:
    """The permutation's sort keys: value i's 64-bit word with its low bits replaced by i. The keys are distinct,
    so sorting them gives one order whatever the sort (NumPy's, CUB's radix sort), and the low bits of the sorted
    keys are the permutation. Ties in the high bits (probability ~n**2 / 2**(64 - bits), under 1e-5 for n = 60000)
    fall to the lower index."""
    b = blocks(key, start, -(-n // 2))
    words = (b[:, 0::2].astype(np.uint64) << np.uint64(32) | b[:, 1::2].astype(np.uint64)).reshape(-1)[:n]
    mask = np.uint64(index_mask(n))
    return (words & ~mask) | np.arange(n, dtype=np.uint64)


def index_mask(n: int) -> int:
    """The low bits that hold an index below n in a permutation key (0 for n <= 1)."""
    return (1 << max(n - 1, 0).bit_length()) - 1


class PhiloxGenerator(Generator):
    """The Generator protocol on a Philox4x32-10 stream. State: (seed, offset), offset in 128-bit blocks; a draw
    of n values takes ceil(n / values per block) blocks (module doc). ``engine`` computes the values: HostEngine
    (NumPy, this module) or cuda_kernels.PhiloxEngine (CuPy), which give the same bits, so a state saved on one
    continues on the other; each returns its draws where it computed them."""

    backend_name = ALGORITHM

    def __init__(self, seed, engine=None):
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"a Philox generator takes a non-negative int seed, got {seed!r}")
        self._seed, self._offset = int(seed), 0
        self._key = key_of(seed)
        self._engine = engine if engine is not None else HostEngine()

    @property
    def offset(self) -> int:
        """Blocks drawn so far: the next draw starts at this counter."""
        return self._offset

    def _start(self, n, per_block):
        start = self._offset
        self._offset = start + -(-n // per_block)
        return start

    def uniform(self, shape, dtype, low=0.0, high=1.0):
        dt, n = _host_float(dtype), _count(shape)
        start = self._start(n, PER_BLOCK["uniform", dt.name])
        return self._engine.uniform(n, dt, self._key, start, high - low, low).reshape(shape)

    def normal(self, shape, dtype, mean=0.0, std=1.0):
        dt, n = _host_float(dtype), _count(shape)
        start = self._start(n, PER_BLOCK["normal", dt.name])
        return self._engine.normal(n, dt, self._key, start, std, mean).reshape(shape)

    def bernoulli(self, shape, p, dtype):
        dt, n = _host_float(dtype), _count(shape)
        start = self._start(n, PER_BLOCK["bernoulli", dt.name])
        return self._engine.bernoulli(n, dt, self._key, start, p).reshape(shape)

    def permutation(self, n):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"permutation(n) takes a non-negative int, got {n!r}")
        n = int(n)
        start = self._start(n, PER_BLOCK["permutation", "int64"])
        return self._engine.permutation(n, self._key, start)

    def get_state(self):
        return encode_state({"algorithm": ALGORITHM, "seed": self._seed, "offset": self._offset})

    def set_state(self, state):
        st = decode_state(state)
        if not isinstance(st, dict) or st.get("algorithm") != ALGORITHM or not all(
                isinstance(st.get(k), int) and st[k] >= 0 for k in ("seed", "offset")):
            found = st.get("algorithm") if isinstance(st, dict) else type(st).__name__
            raise ValueError(f"this generator restores a {ALGORITHM} state {{seed, offset}}, got one of {found}: "
                             "load it into a generator of the kind that saved it")
        self._seed, self._offset, self._key = st["seed"], st["offset"], key_of(st["seed"])


def _count(shape) -> int:
    n = 1
    for s in (shape if isinstance(shape, tuple) else (shape,)):
        n *= int(s)
    return n
