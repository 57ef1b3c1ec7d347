"""The fused kernels' threads: OpenBLAS's own pool (backends/_kernels.c, "threads"). That a split kernel gives the
same bits as one thread is checked kernel by kernel in test_kernels.py (the ``shares`` fixture); here: which pool
they find, the controls, and that sharing it with GEMMs from other Python threads and across fork stays correct."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from portanet.backends import kernels

needs_kernels = pytest.mark.skipif(not kernels.built(), reason=f"kernels: {kernels.status()}")


def _numpy_blas() -> str:
    try:
        return np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception as exc:           # numpy < 1.26 has no dict mode
        return f"unknown ({exc})"


def _two_threads():
    if kernels.threads() < 2:
        pytest.skip(f"kernel threads: one here ({kernels.status()})")


@pytest.fixture
def split_everything():
    from portanet.backends import _kernels
    _two_threads()
    previous = _kernels.set_min_share(1)
    try:
        yield
    finally:
        _kernels.set_min_share(previous)


@needs_kernels
@pytest.mark.skipif(not sys.platform.startswith("linux") or "openblas" not in _numpy_blas(),
                    reason=f"the pool is looked for on Linux with NumPy's OpenBLAS; NumPy's BLAS here: {_numpy_blas()}")
def test_kernels_find_numpys_openblas_and_follow_its_thread_count():
    assert "openblas" in os.path.basename(kernels.pool())
    assert kernels.threads() >= 1
    assert "split over" in kernels.status()
    previous = kernels.set_threads(1)
    try:
        assert kernels.threads() == 1
        assert "over 1 thread of" in kernels.status()
    finally:
        kernels.set_threads(previous)


@needs_kernels
def test_thread_settings_are_checked():
    for bad in (0, -1, 1.5, True, "2", np.int64(0)):
        with pytest.raises(ValueError, match="set_threads takes a positive int or None"):
            kernels.set_threads(bad)
    previous = kernels.set_threads(np.int64(1))         # NumPy's integers are ints
    try:
        assert kernels.threads() == 1
    finally:
        kernels.set_threads(previous)
    from portanet.backends import _kernels
    with pytest.raises(ValueError, match="min_share must be at least 1"):
        _kernels.set_min_share(0)
    env = dict(os.environ, PORTANET_KERNEL_THREADS="two")
    run = subprocess.run([sys.executable, "-c", "import portanet"], env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert "PORTANET_KERNEL_THREADS must be a positive int" in run.stderr and "'two'" in run.stderr
    env["PORTANET_KERNEL_THREADS"] = "1"
    run = subprocess.run([sys.executable, "-c", "from portanet.backends import kernels; print(kernels.threads())"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1"


def _sgd_reference(w, g, buf, steps, lr=0.05, mu=0.9):
    w, buf = w.copy(), buf.copy()
    for _ in range(steps):
        buf = buf * np.float32(mu) + g
        w = w - np.float32(lr) * buf
    return w, buf


@needs_kernels
def test_split_kernels_and_gemms_from_several_python_threads_share_the_pool(split_everything):
    # kernels release the GIL, so their shares and other threads' GEMMs ask OpenBLAS's workers at once
    from portanet.backends import _kernels
    rng = np.random.default_rng(0)
    w0, g = rng.standard_normal(50_000).astype(np.float32), rng.standard_normal(50_000).astype(np.float32)
    a, b = rng.standard_normal((96, 200)).astype(np.float32), rng.standard_normal((200, 120)).astype(np.float32)
    product = a @ b
    want_w, want_buf = _sgd_reference(w0, g, np.zeros_like(w0), 40)
    errors = []

    def updates():
        w, buf = w0.copy(), np.zeros_like(w0)
        for _ in range(40):
            _kernels.sgd(w, g, buf, 0.05, 0.9, 1.0, 0.0, False)
        if not (np.array_equal(w, want_w) and np.array_equal(buf, want_buf)):
            errors.append("sgd")

    def products():
        for _ in range(40):
            if not np.array_equal(a @ b, product):
                errors.append("gemm")
                return

    workers = [threading.Thread(target=f) for f in (updates, products, updates, products)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in workers), "a kernel or GEMM never returned"
    assert errors == []


@needs_kernels
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_split_kernels_work_in_a_forked_child(split_everything):
    # OpenBLAS rebuilds its pool in a child on first use; the kernels go through the same door
    from portanet.backends import _kernels
    rng = np.random.default_rng(1)
    w0, g = rng.standard_normal(40_000).astype(np.float32), rng.standard_normal(40_000).astype(np.float32)
    want_w, _ = _sgd_reference(w0, g, np.zeros_like(w0), 3)
    np.ones((64, 64)) @ np.ones((64, 64))            # the parent's pool is up
    pid = os.fork()
    if pid == 0:                                       # the child: no pytest machinery, just an exit code
        ok = False
        try:
            w, buf = w0.copy(), np.zeros_like(w0)
            for _ in range(3):
                _kernels.sgd(w, g, buf, 0.05, 0.9, 1.0, 0.0, False)
            ok = np.array_equal(w, want_w) and _kernels.threads() == kernels.threads()
        finally:
            os._exit(0 if ok else 1)
    for _ in range(1200):                              # a child stuck waiting on a worker is killed after 60 s
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's split kernel never returned")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
