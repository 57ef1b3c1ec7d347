"""The CUDA sources of backends/cuda_sources.py run on the CPU, for tests on machines without a GPU.

Each module is compiled by the host C++ compiler behind a small shim, and every kernel gets a launcher,
``pn_launch_<kernel>(grid_x, block_x, block_y, <the kernel's own parameters>)``, that runs it the way a GPU does:
every thread of every block of the launch shape cuda_kernels.py asked for, with its own ``threadIdx``, the block's
``blockIdx``, ``blockDim`` and ``gridDim``. Blocks run one after another, the last first. In a module with
``__syncthreads`` the threads of a block are real threads, ``__shared__`` arrays are one array all of them share,
and ``__syncthreads`` is a barrier of the block's threads, so the reductions run as written, races and barrier
mistakes included (a barrier not every thread reaches would hang a GPU; here the launch fails after 20 s). Shared
memory is uninitialised on a GPU: here each block's ``__shared__`` arrays start as 0xff bytes (NaN as a float, -1
as an integer), so a kernel that reads an element no thread wrote gets NaN or -1 rather than the last launch's
value. In a module without ``__syncthreads`` the block's threads run one after another in a single thread, the
last first: a kernel whose threads read what lower-numbered ones wrote (an order no GPU promises) fails here.

What the CPU does not reproduce: float32 ``exp``/``log`` round as glibc's, not as CUDA's libdevice (both within a
few ulp), subnormals are not flushed to zero (CuPy compiles with ``-ftz=true``), nothing is concurrent across
blocks, and nothing checks bounds: an index past an array (or past a ``__shared__`` one) goes unnoticed unless it
crashes the process, as on a GPU without compute-sanitizer. ``-ffp-contract=off`` keeps products and sums apart,
as ``--fmad=false`` does on the GPU.

``HostKernel`` stands in for a cupy.RawKernel: before launching it checks every argument against the kernel's C
parameter (a CuPy array of the pointee's dtype for a pointer, a NumPy scalar of exactly the parameter's type
otherwise: CuPy passes a scalar's bytes as they are, so a width mismatch would be read as garbage on a GPU).
``FakeCupy`` is a NumPy array dressed as the parts of cupy.ndarray the wrappers read.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import types

import numpy as np

from portanet.backends import cuda_sources

SHIM = r"""
#include <math.h>
#include <string.h>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

struct PnDim { unsigned int x, y, z; };            // CUDA's uint3/dim3: unsigned, as the kernels' arithmetic expects
static PnDim blockIdx, blockDim, gridDim;          // one block runs at a time
static thread_local PnDim threadIdx;

// __syncthreads: a barrier of the block's threads. A barrier some thread never reaches hangs a GPU; here the others
// give up after PN_BARRIER_SECONDS, the launch reports it, and the test fails instead of hanging.
#define PN_BARRIER_SECONDS 20
static struct {
    std::mutex lock;
    std::condition_variable turn;
    unsigned expected = 1, arrived = 0, generation = 0;
    bool stuck = false;
} pn_barrier;

static void __syncthreads() {
    std::unique_lock<std::mutex> hold(pn_barrier.lock);
    if (pn_barrier.stuck)                          // the launch has failed: let every thread run to its end
        return;
    unsigned generation = pn_barrier.generation;
    if (++pn_barrier.arrived == pn_barrier.expected) {
        pn_barrier.arrived = 0;
        pn_barrier.generation++;
        pn_barrier.turn.notify_all();
        return;
    }
    auto released = [&] { return pn_barrier.generation != generation; };
    if (!pn_barrier.turn.wait_for(hold, std::chrono::seconds(PN_BARRIER_SECONDS), released)) {
        pn_barrier.stuck = true;
        pn_barrier.arrived--;
    }
}

#define __global__
#define __device__
#define __forceinline__ inline

// A __shared__ array is a static one (one per kernel instantiation, shared by the block: blocks run one at a time),
// filled with 0xff bytes by the first of the block's threads to reach its declaration (share_source rewrites each
// declaration to call this).
static unsigned pn_block_serial;                   // one more for every block run
static std::mutex pn_shared_lock;
static void pn_fresh_shared(void *array, size_t size, unsigned *filled_for) {
    std::lock_guard<std::mutex> hold(pn_shared_lock);
    if (*filled_for != pn_block_serial) {
        memset(array, 0xff, size);
        *filled_for = pn_block_serial;
    }
}
static inline double __longlong_as_double(unsigned long long v) { double d; memcpy(&d, &v, sizeof d); return d; }

// body() once per thread of a (gx) x (bx, by) launch; the block's threads concurrently (real threads meeting at
// __syncthreads) when the module synchronises, else one after another. Returns 1 if a barrier was left waiting.
static int pn_run(unsigned gx, unsigned bx, unsigned by, bool concurrent, const std::function<void()> &body) {
    gridDim = {gx, 1, 1};
    blockDim = {bx, by, 1};
    pn_barrier.stuck = false;
    // Last block first, and in a block without barriers last thread first: a GPU promises no order, and the
    // reverse of the natural one shows a kernel that reads what a lower-numbered thread or block wrote.
    for (unsigned b = gx; b-- > 0;) {
        blockIdx = {b, 0, 0};
        pn_block_serial++;
        if (!concurrent) {
            for (unsigned y = by; y-- > 0;)
                for (unsigned x = bx; x-- > 0;) {
                    threadIdx = {x, y, 0};
                    body();
                }
            continue;
        }
        pn_barrier.expected = bx * by;
        pn_barrier.arrived = 0;
        std::vector<std::thread> threads;
        for (unsigned y = 0; y < by; y++)
            for (unsigned x = 0; x < bx; x++)
                threads.emplace_back([x, y, &body] {
                    threadIdx = {x, y, 0};
                    body();
                });
        for (auto &t : threads)
            t.join();
        if (pn_barrier.stuck)
            return 1;
    }
    return 0;
}
"""

_CTYPES = {"float": (ctypes.c_float, np.float32), "double": (ctypes.c_double, np.float64),
           "i64": (ctypes.c_longlong, np.int64), "int": (ctypes.c_int, np.int32),
           "u32": (ctypes.c_uint32, np.uint32), "u64": (ctypes.c_uint64, np.uint64)}
_POINTEES = {"float": np.float32, "double": np.float64, "i64": np.int64, "u64": np.uint64,
             "unsigned char": np.uint8}
_DECLARATION = re.compile(r'extern "C" __global__ void (\w+)\(([^)]*)\)')
MAX_THREADS_PER_BLOCK = 1024                       # every CUDA GPU since compute capability 2.0


def signatures(source):
    """kernel -> [(is_pointer, base type)] from its extern "C" declaration."""
    sigs = {}
    for name, params in _DECLARATION.findall(source):
        parsed = []
        for p in params.split(","):
            words = p.replace("*", " * ").split()
            pointer = "*" in words
            base = " ".join(w for w in words[:-1] if w not in ("const", "*"))
            parsed.append((pointer, base))
        sigs[name] = parsed
    return sigs


_SHARED = re.compile(r"__shared__\s+([\w ]+?)\s+(\w+)((?:\s*\[[^\]]+\])+)\s*;")


def share_source(source):
    """``source`` with each ``__shared__ T name[...];`` a static array that every block starts as 0xff bytes."""
    out = _SHARED.sub(r"static \1 \2\3; { static unsigned filled_for = ~0u; "
                      r"pn_fresh_shared(&\2, sizeof \2, &filled_for); }", source)
    assert "__shared__" not in out, "a __shared__ declaration cuda_host.share_source does not know how to rewrite"
    return out


def synchronises(module: str) -> bool:
    return "__syncthreads" in cuda_sources.SOURCES[module]


def launchers(source, concurrent):
    """The C++ text of pn_launch_<kernel> for every kernel of ``source``."""
    out = []
    for name, params in _DECLARATION.findall(source):
        args = ", ".join(p.replace("*", " ").split()[-1] for p in params.split(","))
        out.append(f'extern "C" int pn_launch_{name}(unsigned gx, unsigned bx, unsigned by, {params}) {{\n'
                   f'    return pn_run(gx, bx, by, {"true" if concurrent else "false"}, [&] {{ {name}({args}); }});\n'
                   '}\n')
    return "".join(out)


def build(root):
    """Every module of cuda_sources.SOURCES compiled for the CPU into ``root``; returns {module: ctypes.CDLL}, or a
    string saying why nothing could be built (no C++ compiler)."""
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if cxx is None:
        return "no C++ compiler to run the CUDA sources on the host"
    libs = {}
    for name in cuda_sources.SOURCES:
        source = cuda_sources.SOURCES[name]
        src, so = root / f"{name}.cpp", root / f"{name}.so"
        src.write_text(SHIM + share_source(source) + launchers(source, synchronises(name)))
        run = subprocess.run([cxx, "-std=c++17", "-O2", "-pthread", "-ffp-contract=off", "-fno-fast-math", "-shared",
                              "-fPIC", str(src), "-o", str(so)], capture_output=True, text=True)
        if run.returncode != 0:
            raise AssertionError(f"{name} does not compile for the host:\n{run.stderr}")
        libs[name] = ctypes.CDLL(str(so))
    return libs


class FakeCupy:
    """A NumPy array dressed as the parts of cupy.ndarray the wrappers read (the memory is the NumPy array's)."""

    def __init__(self, shape, dtype=float):
        self.a = np.empty(shape, dtype)

    @classmethod
    def of(cls, a):
        f = cls.__new__(cls)
        f.a = a
        return f

    dtype = property(lambda self: self.a.dtype)
    shape = property(lambda self: self.a.shape)
    size = property(lambda self: self.a.size)
    ndim = property(lambda self: self.a.ndim)
    nbytes = property(lambda self: self.a.nbytes)
    strides = property(lambda self: self.a.strides)
    _c_contiguous = property(lambda self: self.a.flags.c_contiguous)
    _f_contiguous = property(lambda self: self.a.flags.f_contiguous)
    data = property(lambda self: types.SimpleNamespace(ptr=self.a.ctypes.data, device_id=0))

    def __getitem__(self, key):
        return FakeCupy.of(self.a[key])


class HostKernel:
    """A RawKernel stand-in: checks the launch shape and each argument against the kernel's C parameter, then
    runs the host build ``lib`` with that launch shape. ``calls`` counts launches, ``shapes`` keeps them."""

    def __init__(self, name, signature, lib):
        self.name, self.signature = name, signature
        self.fn = getattr(lib, "pn_launch_" + name)
        self.calls, self.shapes = 0, []

    def __call__(self, grid, block, args):
        assert len(args) == len(self.signature), f"{self.name} takes {len(self.signature)} arguments"
        converted = []
        for i, (arg, (pointer, base)) in enumerate(zip(args, self.signature)):
            if pointer:
                assert type(arg) is FakeCupy and arg.dtype == _POINTEES[base], \
                    f"{self.name} argument {i}: {base} * expected, got {type(arg).__name__}"
                converted.append(ctypes.c_void_p(arg.data.ptr))
            else:
                ctype, np_type = _CTYPES[base]
                assert type(arg) is np_type, f"{self.name} argument {i}: {base} expected, got {type(arg).__name__}"
                converted.append(ctype(arg.item()))
        grid, block = tuple(grid), tuple(block)
        # The kernels index with blockIdx.x and threadIdx.x/y only: a grid or block in more dimensions would
        # launch threads that repeat another's work.
        assert len(grid) == 1 and 1 <= grid[0] < 2**31, f"{self.name}: grid {grid}"
        assert len(block) in (1, 2) and all(b >= 1 for b in block), f"{self.name}: block {block}"
        bx, by = block if len(block) == 2 else (block[0], 1)
        assert bx * by <= MAX_THREADS_PER_BLOCK, f"{self.name}: {bx * by} threads in a block"
        self.calls += 1
        self.shapes.append((grid, block))
        stuck = self.fn(ctypes.c_uint(grid[0]), ctypes.c_uint(bx), ctypes.c_uint(by), *converted)
        assert stuck == 0, (f"{self.name}: a __syncthreads barrier was not reached by every thread of a block "
                            "(on a GPU the launch would hang)")
