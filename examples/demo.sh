#!/usr/bin/env bash
# make demo: train mnist_mlp.py on the CPU on real 28x28 data. MNIST when it is here or downloadable;
# otherwise Fashion-MNIST (installing Debian's dataset-fashion-mnist when apt is usable).
set -euo pipefail
PY=${1:-python3}
cd "$(dirname "$0")/.."
if "$PY" -c "import portanet as pn; pn.datasets.load_mnist()" >/dev/null 2>&1; then
    exec "$PY" examples/mnist_mlp.py --dataset mnist --device cpu --epochs "${EPOCHS:-10}"
fi
if ! "$PY" -c "import portanet as pn; pn.datasets.load_fashion_mnist(download=False)" >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 || true
    fi
fi
echo "MNIST is not available offline and could not be downloaded: training on Fashion-MNIST instead." >&2
exec "$PY" examples/mnist_mlp.py --dataset fashion-mnist --device cpu --epochs "${EPOCHS:-10}"
