"""The exceptions portanet raises. Each message says what was expected, what was found, and the fix."""
from .backends.base import DeviceError, DeviceUnavailableError  # noqa: F401  (re-exported)


class ShapeError(ValueError):
    """An array of the wrong rank or size for the layer or loss it was given to."""


class DeviceMismatchError(ValueError):
    """Arrays from another device or another array library than the model's."""


class NotFittedError(RuntimeError):
    """backward() before forward(), or a step with no gradients."""


class NonFiniteError(FloatingPointError):
    """A loss or input that is NaN or infinite."""


class CheckpointError(ValueError):
    """A checkpoint that is truncated, corrupt, unsafe (pickled) or for another model."""


class DatasetError(ValueError):
    """A dataset file that is missing, corrupt, or not in the expected format."""
