#!/bin/sh
# make test-gpu and make bench-gpu: portanet's GPU tests and benchmark on a CUDA machine with no package index.
#
#   sh benchmarks/offline_cuda.sh test-gpu  [pytest arguments]
#   sh benchmarks/offline_cuda.sh bench-gpu [benchmarks/gpu.py arguments]
#
# Runs $GPU_PY (default python3) as it is, with the packages it has: no venv is made, because a venv made from a
# venv with --system-site-packages sees the base interpreter's packages, not those of the venv it was made from.
# What that python lacks travels as wheels in $WHEELS (default .whl, filled by `make wheels` where pip reaches an
# index): they and portanet itself are installed offline (pip --no-index) into .gpu-site, which goes first on
# PYTHONPATH; PYTHONSAFEPATH=1 keeps the current directory off sys.path, so the source tree's portanet/ (which has no
# backends/: they live at the top of the repository) cannot shadow the installed package.
# Where neither CuPy nor PyTorch sees a CUDA device it says why and exits 0 (GPU_FORCE=1 goes on regardless: the
# install can then be checked on any machine, the GPU tests skipping with their reasons).
set -eu
target=${1:?usage: offline_cuda.sh test-gpu|bench-gpu [arguments]}
shift
cd "$(dirname "$0")/.."
py=${GPU_PY:-python3}
wheels=${WHEELS:-.whl}
site=.gpu-site

check='
import sys
why = []
try:
    import cupy
    if cupy.cuda.runtime.getDeviceCount() > 0:
        sys.exit(0)
    why.append("CuPy sees no CUDA device")
except Exception as e:
    why.append(f"CuPy: {type(e).__name__}: {e}")
try:
    import torch
    if torch.cuda.is_available():
        sys.exit(0)
    why.append(f"PyTorch {torch.__version__} sees no CUDA device")
except Exception as e:
    why.append(f"PyTorch: {type(e).__name__}: {e}")
print("; ".join(" ".join(w.split()) for w in why))
sys.exit(1)
'
if ! reason=$("$py" -c "$check" 2>/dev/null); then
    reason=${reason:-$(command -v "$py" >/dev/null && echo "it failed before checking" || echo "not found")}
    if [ "${GPU_FORCE:-0}" != 1 ]; then
        echo "$target skipped: no CUDA device ($py: $reason)"
        exit 0
    fi
    echo "$target: no CUDA device ($reason); going on (GPU_FORCE=1)"
fi

# portanet and the wheels into .gpu-site; again when the wheels differ or a source file is newer than the install
stamp=$site/.installed
whls=$(ls "$wheels"/*.whl 2>/dev/null || true)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$whls" ] || \
        [ -n "$(find portanet backends pyproject.toml setup.py -newer "$stamp" | head -n 1)" ]; then
    echo "$target: installing portanet${whls:+ and $(echo $whls | wc -w) wheels from $wheels} into $site with $py" \
         "(pip --no-index)"
    rm -rf "$site"
    pip_offline() {
        PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --no-index --no-deps --no-build-isolation \
            --disable-pip-version-check --target "$site" "$@"
    }
    # shellcheck disable=SC2086  # one word per wheel
    if [ -n "$whls" ]; then pip_offline $whls; fi
    # Building portanet needs setuptools (and, before setuptools 70.1, wheel) in that python. Where the build
    # fails, the package is laid out by hand as setup.py would (backends/ becomes portanet/backends), without the
    # optional C kernels for NumPy, which the GPU cases do not use (the line below says which kernels are in use).
    log=$(mktemp)
    if ! pip_offline . 2>"$log"; then
        echo "$target: pip could not build portanet offline ($(grep . "$log" | tail -n 1)); copying the sources instead"
        rm -rf "$site/portanet"
        cp -R portanet "$site/portanet"
        rm -rf "$site/portanet/backends"
        cp -R backends "$site/portanet/backends"
        rm -f "$site/portanet/backends/"*.so "$site/portanet/backends/"*.pyd
    fi
    rm -f "$log"
    echo "$whls" >"$stamp"
fi
PYTHONPATH="$(pwd)/$site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH PYTHONSAFEPATH=1 PYTHONUNBUFFERED=1
where='
import pathlib, sys
try:
    import array_api_compat, tqdm, portanet, portanet.backends
except ImportError as e:
    sys.exit(f"{e}: a package portanet needs is missing; run `make wheels` where pip reaches an index and bring "
             "the .whl folder along (README, GPU)")
site = pathlib.Path(sys.argv[1]).resolve()
if site not in pathlib.Path(portanet.__file__).resolve().parents:
    sys.exit(f"portanet was imported from {portanet.__file__}, not from {site}")
from portanet.backends import kernels
print(f"{sys.executable} (Python {sys.version.split()[0]}), portanet from {pathlib.Path(portanet.__file__).parent};"
      f" host kernels: {kernels.status()}")
'
about=$("$py" -c "$where" "$site") || exit 1

case $target in
test-gpu)
    # the conftest fixture's gpu and torch:cuda ids, tests/test_cuda_kernels.py, and CuPy-only tests
    select="gpu or cuda or cupy"
    workers=""
    if "$py" -c "import xdist" 2>/dev/null; then
        workers="-n ${WORKERS:-8}"
    fi
    echo "test-gpu: $about"
    echo "test-gpu: pytest -k '$select' ${workers:-(pytest-xdist missing: one process)} $*"
    # shellcheck disable=SC2086
    exec "$py" -m pytest -q -rs -p no:cacheprovider $workers -k "$select" "$@"
    ;;
bench-gpu)
    echo "bench-gpu: $about"
    exec "$py" benchmarks/gpu.py "$@"
    ;;
*)
    echo "offline_cuda.sh: unknown target '$target' (test-gpu or bench-gpu)" >&2
    exit 2
    ;;
esac
