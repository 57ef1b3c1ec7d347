# Every target builds .venv itself and installs what it needs, so a fresh clone needs only `make`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test bench bench-gpu lint clean

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

## make bench-gpu: the same suite on device="gpu" against PyTorch CUDA (skipped without a GPU)
bench-gpu: $(VENV)/.test
	$(PY) benchmarks/run.py --device gpu

lint: $(VENV)/.test
	$(PY) -m pytest -q tests/test_invariants.py

clean:
	rm -rf $(VENV) build *.egg-info
