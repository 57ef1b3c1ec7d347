"""Whole-step capture: one training step recorded into a CUDA graph and replayed for every full batch.

Eager, a step on the GPU costs one kernel launch and several microseconds of Python per Array API call, a few
hundred calls a step; replayed, the whole step is one launch. PyTorch's recipe (torch/cuda/graphs.py) is followed:

- warm-up: the first steps of a fit run eagerly on the stream the recording will use, so that every kernel is
  compiled and loaded, cuBLAS has its workspace for that stream, and the optimizer's state exists;
- static inputs: the recording reads its batch from two buffers; each later batch is copied into them (one copy
  each) before the replay;
- outputs: the loss and the model's output of a replay land in the arrays the recording returned; fit sums them on
  the device as it does eagerly, and the non-finite check stays there too (the error still names epoch and step);
- the last, smaller batch of an epoch runs eagerly (a recording is for one shape);
- what the recording bakes in must not change between replays: the learning rate and every other option are
  checked before each replay, and a change (a schedule's step) records the step again; step counts (Adam's) move to
  the device for the recording's life (FlatGroup.counts_to_device), updated in place by every replay; a layer's
  host-side counter (BatchNorm's num_batches_tracked) is advanced after each replay, since the replay runs no Python.

What cannot be recorded raises CaptureUnsupported (backends/base.py): with ``capture="auto"`` fit then trains
eagerly, with ``capture=True`` it raises. The backend adapters (the only code that names CUDA APIs) are
TorchStepGraph in backends/torch.py and CupyStepGraph in backends/cupy.py.
"""
from __future__ import annotations

from ..backends.base import CaptureUnsupported

WARMUP = 2      # eager steps on the recording's stream before the first recording (PyTorch's examples use 3)
CAPTURING_BACKENDS = ("gpu (CuPy)", "torch:cuda")


def graph_for(device):
    """The device's StepGraph, or None where its backend cannot record a step."""
    return device.backend.step_graph(device.native)


def check_mode(capture, device):
    """Validate fit's ``capture`` argument; returns whether to try recording on ``device``."""
    if capture not in (True, False, "auto"):
        raise ValueError(f"capture must be 'auto', True or False, got {capture!r}")
    if capture is False:
        return False
    if graph_for(device) is None:
        if capture is True:
            raise ValueError(f"capture=True records the training step into a CUDA graph, which {device} cannot do: "
                             f"it runs on {' and '.join(CAPTURING_BACKENDS)}. Use capture='auto' (records where "
                             "it can, else runs eagerly) or capture=False")
        return False
    return True


class CapturedStep:
    """A TrainStep that records itself into ``graph`` after its warm-up and replays for every batch of the recorded
    shape. ``__call__(xb, yb) -> (loss, out)`` as TrainStep's; ``release()`` ends the recording's life (the counts
    go back to the host). ``strict``: raise CaptureUnsupported instead of running eagerly."""

    def __init__(self, train_step, graph, strict=False):
        self.step, self.graph, self.strict = train_step, graph, strict
        model, optimizer = train_step.model, train_step.optimizer
        self.model, self.optimizer = model, optimizer
        self.generators = [g for _, g in model.named_generators()]
        self.counters = [m for m in model.modules() if hasattr(m, "num_batches_tracked")]
        self.warm = 0
        self.failed = None          # why recording was given up (auto mode), or None
        self.told = False           # whether fit has said so (once per fit)
        self._clear()

    def finish(self, out, yb):
        """TrainStep.finish, eagerly (fit's first, fully checked step)."""
        return self.step.finish(out, yb)

    def _clear(self):
        self.static = self.outputs = self.key = None

    # -- what a recording bakes in -----------------------------------------------------------------------------------
    def _options(self):
        return tuple(tuple(sorted((k, v) for k, v in g.items() if k != "params")) for g in self.optimizer.param_groups)

    def _flat_groups(self):
        if any(flat is None for flat in self.optimizer._flat):
            raise CaptureUnsupported(f"{type(self.optimizer).__name__}'s parameters are not in flat buffers on "
                                     f"{self.optimizer.device}")
        return [fg for flat in self.optimizer._flat for fg in flat]

    def _matches(self, xb, yb) -> bool:
        xs, ys = self.static
        return (tuple(xb.shape) == tuple(xs.shape) and xb.dtype == xs.dtype and tuple(yb.shape) == tuple(ys.shape)
                and yb.dtype == ys.dtype)

    # -- running -----------------------------------------------------------------------------------------------------
    def __call__(self, xb, yb):
        if self.failed is not None:
            return self.step(xb, yb)
        if self.static is not None:
            if not self._matches(xb, yb):
                return self.step(xb, yb)            # the last, smaller batch: eagerly
            if self.key == self._options():
                return self._replay(xb, yb)
            self._release_recording()               # an option changed (a schedule stepped): record again
        if self.warm < WARMUP:
            self.warm += 1
            if self.warm == WARMUP:
                return self._last_warmup(xb, yb)
            return self.graph.warmup(lambda: self.step(xb, yb))
        try:
            return self._record(xb, yb)
        except Exception as e:          # CaptureUnsupported, or the CUDA runtime refusing something while recording
            if self.strict:
                raise
            self.failed = str(e) if isinstance(e, CaptureUnsupported) else f"recording failed ({type(e).__name__}: {e})"
            return self.step(xb, yb)

    def _last_warmup(self, xb, yb):
        """The last warm-up runs the step as the recording will, with the step counts on the device, so that what
        that path launches (Adam's bias corrections from a 0-d count) is compiled and loaded now: CuPy compiles an
        elementwise kernel on its first call, which would otherwise fall inside the capture."""
        try:
            groups = [fg for fg in self._flat_groups() if fg.ready]
        except CaptureUnsupported:
            groups = []                 # recording will say why; this warm-up runs as the first did
        for fg in groups:
            fg.counts_to_device(self.optimizer)
        try:
            return self.graph.warmup(lambda: self.step(xb, yb))
        finally:
            for fg in groups:
                fg.counts_to_host(self.optimizer)

    def _replay(self, xb, yb):
        xs, ys = self.static
        xs[...] = xb
        ys[...] = yb
        self.graph.replay()
        self._advance_counters()
        return self.outputs

    def _advance_counters(self):
        for m in self.counters:
            if m.training:
                m.num_batches_tracked += 1

    def _record(self, xb, yb):
        groups = self._flat_groups()
        if not all(fg.ready for fg in groups):
            raise CaptureUnsupported("some parameters had no gradient in a step, so the optimizer updates them one by "
                                     "one with host-side counts; a recorded step needs every parameter to get one")
        xp = self.model.xp
        xs, ys = xp.empty_like(xb), xp.empty_like(yb)
        xs[...] = xb
        ys[...] = yb
        for fg in groups:
            fg.counts_to_device(self.optimizer)
        counters = [m.num_batches_tracked for m in self.counters]
        try:
            outputs = self.graph.capture(lambda: self.step(xs, ys), self.generators)
        except BaseException:
            for fg in groups:
                fg.counts_to_host(self.optimizer)
            raise
        finally:                                     # recording ran the Python once but computed nothing
            for m, n in zip(self.counters, counters):
                m.num_batches_tracked = n
        self.static, self.outputs, self.key = (xs, ys), outputs, self._options()
        self.graph.replay()                          # recording runs nothing: this batch's step is the first replay
        self._advance_counters()
        return outputs

    def _release_recording(self):
        if self.static is not None:
            for fg in self._flat_groups():
                fg.counts_to_host(self.optimizer)
        self._clear()

    def release(self):
        """End the recording's life: step counts are Python ints again, ready for state_dict and checkpoints."""
        self._release_recording()
