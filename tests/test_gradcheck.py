"""pn.gradcheck itself: it catches a wrong gradient (of the input or of a parameter, large or small), and passes a
true gradient of zero, which central differences give as rounding noise."""
import numpy as np
import pytest

import portanet as pn


class Scaled(pn.Sigmoid):
    """Sigmoid whose backward is off by ``factor``: a layer with a bug gradcheck must find."""

    def __init__(self, factor, device=None):
        super().__init__(device)
        self.factor = factor

    def backward(self, dy):
        return super().backward(dy) * self.factor


@pytest.mark.parametrize("factor", [1.01, 1 + 1e-4])
def test_a_wrong_input_gradient_fails(ctx64, factor):
    layer = Scaled(factor, device=ctx64.device)
    with pytest.raises(pn.GradcheckError, match=r"Scaled: gradient of 'input' is off by"):
        pn.gradcheck(layer, ctx64.randn(3, 4, seed=1))


def test_a_wrong_parameter_gradient_fails_even_when_small(ctx64):
    """Dense's weight gradient scaled by 1.01 where the gradients are about 1e-3: its differences (~1e-5) are far
    above atol, so it is still caught (the error is then measured against atol / tol = 1e-2, not 1e-3)."""
    layer = pn.Dense(4, 2, dtype="float64", device=ctx64.device)
    backward = layer.backward

    def wrong(dy, **kw):
        dx = backward(dy, **kw)
        layer.weight.grad = layer.weight.grad * 1.01
        return dx

    layer.backward = wrong
    x = ctx64.randn(3, 4, seed=2) * 1e-3
    with pytest.raises(pn.GradcheckError, match=r"Dense: gradient of 'weight' is off by 0.00\d+ \(relative\) > tol 1e-06"):
        pn.gradcheck(layer, x)


def test_a_true_zero_gradient_passes(ctx64):
    """A convolution's bias before BatchNorm2d has gradient zero (the normalisation subtracts each channel's mean):
    numerically rounding noise of ~1e-10, which relative to itself was an error of 1."""
    block = pn.Residual(pn.Conv2d(2, 2, 3, padding=1, bias=True), pn.BatchNorm2d(2), pn.ReLU())
    block.to(ctx64.device, dtype="float64")
    errors = pn.gradcheck(block, ctx64.randn(2, 2, 4, 4, seed=3))
    assert set(errors) >= {"input", "0.weight", "0.bias", "1.weight", "1.bias"} and max(errors.values()) < 1e-6


def test_bad_tolerances_are_refused():
    layer = pn.Sigmoid()
    x = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"gradcheck needs tol > 0 and atol >= 0, got tol=0, atol=1e-08"):
        pn.gradcheck(layer, x, tol=0)
    with pytest.raises(TypeError, match="gradcheck needs float64"):
        pn.gradcheck(layer, np.zeros((2, 2), np.float32))
