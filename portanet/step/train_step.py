"""TrainStep: one training step, planned for the model's backend. What ``fit`` runs for every batch."""
from __future__ import annotations

from . import fusion, sinks


class TrainStep:
    """zero_grad, forward, loss, backward (without the input's gradient), optimizer step: the documented loop

        optimizer.zero_grad(); loss = loss_fn(model(xb), yb); model.backward(loss_fn.backward()); optimizer.step()

    as the backend runs it fastest (portanet/step/): fused Dense + ReLU pairs and bias kernels (fusion.py), one
    update per flat group (flat.py), and on host backends SGD momentum's weight gradients straight into its buffer
    (sinks.py; armed only while a step runs, or for the whole ``with`` block, so a loop of your own always sees
    every ``grad``). The result is the documented loop's, to float rounding (tests/test_step.py).

        step = pn.TrainStep(model, pn.CrossEntropyLoss(), optimizer)
        for xb, yb in loader:
            loss, out = step(xb, yb)          # 0-d loss and the model's output, on the device

    xb: a batch on the model's device; yb: its targets. Checks of shapes, devices and label values are the
    model's and the loss's own (call ``model(xb)`` and ``loss_fn(out, yb)`` once first, as fit does, for the
    full checks; ``finish(out, yb)`` continues a step from an output computed that way).
    """

    def __init__(self, model, loss, optimizer):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.runner = fusion.plan(model)
        self._held = False

    def __call__(self, xb, yb):
        return self.finish(self.runner.forward(xb), yb)

    def finish(self, out, yb):
        """The rest of a step whose forward gave ``out``: loss, backward, update. Returns (loss, out)."""
        loss, optimizer = self.loss, self.optimizer
        value = loss.forward(out, yb)
        held = self._held
        if not held:
            sinks.arm(optimizer)
        try:
            optimizer.zero_grad()
            self.runner.backward(loss.backward(), input_grad=False)
            optimizer.step()
        finally:
            if not held:
                sinks.disarm(optimizer)
        return value, out

    def __enter__(self):
        sinks.arm(self.optimizer)
        self._held = True
        return self

    def __exit__(self, *exc):
        self._held = False
        sinks.disarm(self.optimizer)
        return False
