"""One fixture for every backend and device: numpy/cpu (float32, float64), strict/CPU_DEVICE (float64),
strict/device1 (float32), torch/cpu (float32), cupy/gpu (float32) and torch/cuda (float32, float64); the GPU ones
skip with the reason where there is no CUDA.
``ctx64`` gives the float64 variant of each, for finite-difference checks."""
from __future__ import annotations

import numpy as np
import pytest

import portanet as pn
from portanet import backends
from portanet.backends import kernels


class Ctx:
    """A (device, dtype) pair with helpers to move test data in and out."""

    def __init__(self, spec, dtype):
        self.spec = spec
        self.device = pn.device(spec)
        self.dtype_name = dtype
        self.dtype = self.device.dtype(dtype)
        self.xp = self.device.xp
        self.tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-9, atol=1e-10)

    def asarray(self, host, dtype=None):
        host = np.asarray(host)
        if host.dtype.kind == "f":
            return self.device.asarray(host, dtype=dtype or self.dtype_name)
        return self.device.asarray(host)

    def randn(self, *shape, seed=0, scale=1.0):
        return self.asarray(np.random.default_rng(seed).standard_normal(shape) * scale)

    def host(self, a):
        return self.device.to_host(a)

    def close(self, a, b, **kw):
        tol = {**self.tol, **kw}
        a = self.host(a) if not isinstance(a, np.ndarray) else a
        b = np.asarray(b.detach().numpy() if hasattr(b, "detach") else b)
        np.testing.assert_allclose(a, b, **tol)

    def __repr__(self):
        return f"{self.spec}-{self.dtype_name}"


CONFIGS = [("cpu", "float32"), ("cpu", "float64"), ("strict:CPU_DEVICE", "float64"),
           ("strict:device1", "float32"), ("torch:cpu", "float32"), ("gpu", "float32"),
           ("torch:cuda", "float32"), ("torch:cuda", "float64")]
CONFIGS64 = [("cpu", "float64"), ("strict:CPU_DEVICE", "float64"), ("strict:device1", "float64"),
             ("torch:cpu", "float64"), ("gpu", "float64"), ("torch:cuda", "float64")]


def torch_cuda_unavailable():
    """None when PyTorch sees a CUDA device, else why not."""
    try:
        import torch
    except ImportError as e:
        return f"PyTorch is not installed ({e})"
    if not torch.cuda.is_available():
        return f"this PyTorch ({torch.__version__}) sees no CUDA device (torch.cuda.is_available() is False)"
    return None


def _make(spec, dtype):
    if spec == "gpu":
        reason = backends.get("cupy").unavailable()
        if reason:
            pytest.skip(f"cupy/gpu: {reason}")
    if spec == "torch:cuda":
        reason = torch_cuda_unavailable()
        if reason:
            pytest.skip(f"torch:cuda: {reason}")
    return Ctx(spec, dtype)


@pytest.fixture(params=CONFIGS, ids=lambda c: f"{c[0]}-{c[1]}")
def ctx(request):
    return _make(*request.param)


@pytest.fixture(params=CONFIGS64, ids=lambda c: f"{c[0]}-{c[1]}")
def ctx64(request):
    return _make(*request.param)


@pytest.fixture(autouse=True)
def _fresh_seed():
    pn.seed(1234)
    yield


@pytest.fixture
def standard_code():
    """``standard_code(fn)``: fn() with every backend's kernels off (kernels.set_enabled(False)), so the standard
    Array API code runs; the kernels are always turned back on."""
    def run(fn):
        kernels.set_enabled(False)
        try:
            return fn()
        finally:
            kernels.set_enabled(True)
    return run
