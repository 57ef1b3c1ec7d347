"""The model as the backend runs it fastest: a Sequential's layers, with fused kernels swapped in.

``plan(model)`` returns something with ``forward(x)`` and ``backward(dy, input_grad)`` that computes exactly what
the model's own methods compute (the kernels give the same bits; tests/test_kernels.py and tests/test_step.py hold
them to the layers' textbook code):

- a Dense (with a bias) followed by a ReLU runs as one step: the bias add and the ReLU in place on the Dense's own
  fresh GEMM output, and backward the ReLU mask with the bias gradient in one pass (``bias_relu``,
  ``relu_grad_sum``). The two layers stay two modules (same state_dict, same repr).
- any other Dense adds its bias through ``bias_add`` (NumPy's broadcasting set-up costs more than the arithmetic for
  a small layer: 4.3 -> 0.8 us for the MNIST net's 256x10 output layer); its bias gradient is summed into the flat
  gradient buffer by the optimizer's sink (step/flat.py).
- a Conv2d (with a bias) followed by a ReLU likewise, on the conv's (channels, positions) product
  (``bias_relu_rows``, ``relu_grad_sum_rows``).
- a lone ReLU runs ``relu`` forward (split over threads, in its input's memory order) and ``relu_grad`` backward
  (one pass instead of three); a Conv2d adds its per-channel bias through ``bias_add_rows``.
- a nested Sequential is planned the same way; every other layer runs its own forward and backward.

Where the backend has none of these kernels (array-api-strict, PyTorch), ``plan`` returns the model itself.
"""
from __future__ import annotations

from ..backends.kernels import REFUSALS
from ..layers.activations import ReLU
from ..layers.conv import Conv2d
from ..layers.dense import Dense
from ..module import Sequential, backward_through

KERNELS = ("bias_relu", "relu_grad_sum", "bias_add", "relu_grad", "relu", "bias_add_rows", "bias_relu_rows",
           "relu_grad_sum_rows")


def plan(model):
    """A runner for ``model`` on its device: ``model`` itself, or a Chain with fused steps."""
    device = model.device
    if not isinstance(model, Sequential) or all(device.kernel(k) is None for k in KERNELS):
        return model
    return Chain(model)


class _Layer:
    """A layer run by its own methods."""

    __slots__ = ("layer", "forward")

    def __init__(self, layer):
        self.layer, self.forward = layer, layer.forward

    def backward(self, dy, input_grad=True):
        return backward_through(self.layer, dy, input_grad)


class _BiasKernel(_Layer):
    """A layer with a bias whose ``product(x)`` gives its output before the bias as its own fresh array (Dense:
    (batch, out); Conv2d: (out, positions)), the bias then added in place by the backend's kernel."""

    __slots__ = ("kernel",)

    def __init__(self, layer, kernel):
        super().__init__(layer)
        self.kernel = kernel
        self.forward = self._forward

    def _forward(self, x):
        product = self.layer.product(x)
        y, bias = self._operands(product)
        try:
            self.kernel(y, bias)
        except REFUSALS:                  # e.g. a bias the user replaced with another dtype: the layer's own code
            y += bias if self._per_column else bias[:, None]
        return self._finish(product, x)


class _Dense(_BiasKernel):
    """A Dense whose bias is added by ``bias_add``."""

    __slots__ = ()
    _per_column = True

    def _operands(self, y):
        return y, self.layer.bias.data

    def _finish(self, y, x):
        return y


class _Conv2d(_BiasKernel):
    """A Conv2d whose bias (one per output channel, a row of its (out, positions) product) is added by
    ``bias_add_rows``: the same bits, split over threads."""

    __slots__ = ()
    _per_column = False

    def _operands(self, product):
        return product[0], self.layer.bias.data

    def _finish(self, product, x):
        y, out = product
        return self.layer.images(y, x.shape[0], out)


def _bias_target(bias, xp):
    """Where a fused backward writes a bias gradient: the flat buffer's segment when this is the step's first
    (``fresh``), else a new array to accumulate."""
    fresh = bias.sink.fresh_grad(bias) if bias.sink is not None else None
    return fresh, (fresh if fresh is not None else xp.empty_like(bias.data))


def _bias_taken(bias, fresh, db):
    if fresh is not None:
        bias.grad = fresh
    else:
        bias.accumulate(db)


class _WithReLU:
    """A layer with a bias (``layer``) and the ReLU after it, as one step of two kernels: the bias add and the ReLU
    in place on the layer's fresh product (``forward_kernel``), and backward the ReLU mask with the bias gradient in
    one pass (``backward_kernel``). The two layers stay two modules (same state_dict, same repr)."""

    __slots__ = ("layer", "relu", "forward_kernel", "backward_kernel")

    def __init__(self, layer, relu, forward_kernel, backward_kernel):
        self.layer, self.relu = layer, relu
        self.forward_kernel, self.backward_kernel = forward_kernel, backward_kernel


class _DenseReLU(_WithReLU):
    """A Dense with a bias and the ReLU after it (``bias_relu``, ``relu_grad_sum``)."""

    __slots__ = ()

    def forward(self, x):
        dense = self.layer
        y = dense.product(x)
        try:
            self.forward_kernel(y, dense.bias.data)
        except REFUSALS:
            y += dense.bias.data
            return self.relu.forward(y)
        self.relu._saved = y              # the ReLU is ready for its own backward, as if it had run
        return y

    def backward(self, dy, input_grad=True):
        dense, relu = self.layer, self.relu
        x, y = dense._x, relu._saved
        dense._needs_forward(x)
        relu._needs_forward(y)
        xp = dense.xp
        dz = xp.empty_like(y)
        fresh, db = _bias_target(dense.bias, xp)
        try:
            self.backward_kernel(dy, y, dz, db)
        except REFUSALS:
            return dense.backward(relu.backward(dy), input_grad=input_grad)
        dense.weight.accumulate_product(x, dz)
        _bias_taken(dense.bias, fresh, db)
        return xp.matmul(dz, dense.weight.data.T) if input_grad else None


class _ConvReLU(_WithReLU):
    """A Conv2d with a bias and the ReLU after it, on the conv's (channels, positions) product (``bias_relu_rows``,
    ``relu_grad_sum_rows``: one pass over each row where the two layers make four)."""

    __slots__ = ()

    def forward(self, x):
        conv = self.layer
        y, out = conv.product(x)
        try:
            self.forward_kernel(y, conv.bias.data)
        except REFUSALS:
            y += conv.bias.data[:, None]
            return self.relu.forward(conv.images(y, x.shape[0], out))
        images = conv.images(y, x.shape[0], out)
        self.relu._saved = images          # the ReLU is ready for its own backward, as if it had run
        return images

    def backward(self, dy, input_grad=True):
        conv, relu = self.layer, self.relu
        y = relu._saved
        relu._needs_forward(y)
        conv._needs_forward(conv._saved)
        xp = conv.xp
        rows = (conv.out_channels, -1)
        # both as (channels, positions) rows: free when they are the conv's channel-major memory (they are, unless
        # a layer in between changed the layout); the kernel refuses anything else and the two layers run
        try:
            dyr = xp.reshape(xp.permute_dims(dy, (1, 0, 2, 3)), rows)
            yr = xp.reshape(xp.permute_dims(y, (1, 0, 2, 3)), rows)
            dz = xp.empty_like(yr)
            fresh, db = _bias_target(conv.bias, xp)
            self.backward_kernel(dyr, yr, dz, db)
        except REFUSALS:
            return conv.backward(relu.backward(dy), input_grad=input_grad)
        _bias_taken(conv.bias, fresh, db)
        return conv.backward_rows(dz, input_grad)


class _ReLU(_Layer):
    """A ReLU whose forward (split over threads, in its input's memory order: a conv's output is channel-major) and
    backward are one pass of the backend's kernels."""

    __slots__ = ("kernel", "forward_kernel")

    def __init__(self, layer, kernel, forward_kernel=None):
        super().__init__(layer)
        self.kernel, self.forward_kernel = kernel, forward_kernel
        if forward_kernel is not None:
            self.forward = self._forward

    def _forward(self, x):
        relu = self.layer
        y = relu.xp.empty_like(x)                 # x's memory order
        try:
            self.forward_kernel(x, y)
        except REFUSALS:
            return relu.forward(x)
        relu._saved = y
        return y

    def backward(self, dy, input_grad=True):
        relu = self.layer
        y = relu._saved
        relu._needs_forward(y)
        dx = relu.xp.empty_like(y)
        try:
            self.kernel(dy, y, dx)
        except REFUSALS:
            return relu.backward(dy)
        return dx


class Chain:
    """A Sequential's layers as planned steps: forward(x), backward(dy, input_grad) as Sequential's own."""

    def __init__(self, seq):
        self.seq = seq
        device = seq.device
        k = {name: device.kernel(name) for name in KERNELS}
        layers, steps, i = seq.layers, [], 0
        trainable = seq.first_trainable()
        self.first = None                 # index into steps of the step holding the first layer with parameters
        while i < len(layers):
            start, layer = i, layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if (type(layer) is Dense and layer.bias is not None and type(nxt) is ReLU
                    and k["bias_relu"] is not None and k["relu_grad_sum"] is not None):
                step, i = _DenseReLU(layer, nxt, k["bias_relu"], k["relu_grad_sum"]), i + 2
            elif (type(layer) is Conv2d and layer.bias is not None and type(nxt) is ReLU
                  and k["bias_relu_rows"] is not None and k["relu_grad_sum_rows"] is not None):
                step, i = _ConvReLU(layer, nxt, k["bias_relu_rows"], k["relu_grad_sum_rows"]), i + 2
            else:
                if type(layer) is Dense and layer.bias is not None and k["bias_add"] is not None:
                    step = _Dense(layer, k["bias_add"])
                elif type(layer) is ReLU and k["relu_grad"] is not None:
                    step = _ReLU(layer, k["relu_grad"], k["relu"])
                elif type(layer) is Conv2d and layer.bias is not None and k["bias_add_rows"] is not None:
                    step = _Conv2d(layer, k["bias_add_rows"])
                elif type(layer) is Sequential:
                    step = Chain(layer)
                else:
                    step = _Layer(layer)
                i += 1
            if trainable is not None and start <= trainable < i:
                self.first = len(steps)
            steps.append(step)
        self.steps = steps

    @property
    def device(self):
        return self.seq.device

    def forward(self, x):
        for step in self.steps:
            x = step.forward(x)
        return x

    def backward(self, dy, input_grad=True):
        steps = self.steps
        stop = 0 if input_grad else self.first
        if stop is None:
            return None
        for i in range(len(steps) - 1, stop, -1):
            dy = steps[i].backward(dy)
        return steps[stop].backward(dy, input_grad=input_grad)
