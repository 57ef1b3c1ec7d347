"""The one compiled piece: optional fused optimizer kernels for NumPy arrays (backends/_kernels.c).

Everything else is in pyproject.toml. ``optional=True``: without a C compiler the install still succeeds and
portanet runs the same updates through its Array API code (backends/kernels.py says which is in use).
"""
import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    flags = ["/O2", "/fp:precise"]
else:
    # no contraction into FMA: the kernels must round exactly as NumPy's separate ufuncs do
    flags = ["-O3", "-ffp-contract=off", "-fno-math-errno"]

setup(ext_modules=[Extension("portanet.backends._kernels", ["backends/_kernels.c"], extra_compile_args=flags,
                             optional=True)])
