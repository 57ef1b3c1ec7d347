# Every target builds .venv itself and installs what it needs, so a fresh clone needs only `make`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test bench bench-gpu test-gpu wheels lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: pyproject.toml setup.py backends/_kernels.c | $(PY)
	$(PIP) -e .
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(PIP) -e '.[test]'
	touch $@

$(VENV)/.plot: $(VENV)/.core
	$(PIP) -e '.[plot]'
	touch $@

## make demo: train the 784-256-256-10 MLP on real 28x28 data (MNIST, else Fashion-MNIST) on CPU; installs the
## plot extra too, so that the README's snippets (history.plot) run in .venv as written
demo: $(VENV)/.plot
	./examples/demo.sh $(PY)

## make test: the whole suite on numpy, array-api-strict (two devices), torch; cupy where a GPU is
test: $(VENV)/.test
	$(PY) -m pytest -q

## make bench: portanet vs PyTorch vs the GEMM-only bound, interleaved in one process
bench: $(VENV)/.test
	$(PY) benchmarks/run.py

# The GPU targets run on a CUDA machine's own python (GPU_PY) without a package index and without .venv: what it
# lacks comes as wheels in WHEELS (make wheels), installed with portanet into .gpu-site (benchmarks/offline_cuda.sh).
# Without CUDA they say so and succeed.
GPU_PY ?= python3
WHEELS ?= .whl

## make wheels: array-api-compat, array-api-strict and tqdm (the versions tested here) as wheels in .whl/, for a
## CUDA machine with no package index (all three are pure Python)
wheels:
	rm -f $(WHEELS)/array_api_compat-*.whl $(WHEELS)/array_api_strict-*.whl $(WHEELS)/tqdm-*.whl
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: -d $(WHEELS) \
		array-api-compat==1.16.0 array-api-strict==2.6.1 tqdm==4.70.1

## make test-gpu: the suite's GPU cases (cupy/gpu and torch:cuda) with 8 pytest-xdist workers (WORKERS=...)
test-gpu:
	@GPU_PY='$(GPU_PY)' WHEELS='$(WHEELS)' sh benchmarks/offline_cuda.sh test-gpu $(TEST_GPU_ARGS)

## make bench-gpu: benchmarks/gpu.py, portanet on gpu and torch:cuda, eager and captured, against PyTorch eager and
## PyTorch's CUDA graph (BENCH_GPU_ARGS="--quick --out FILE")
bench-gpu:
	@GPU_PY='$(GPU_PY)' WHEELS='$(WHEELS)' sh benchmarks/offline_cuda.sh bench-gpu $(BENCH_GPU_ARGS)

lint: $(VENV)/.test
	$(PY) -m pytest -q tests/test_invariants.py

clean:
	rm -rf $(VENV) build *.egg-info .gpu-site
