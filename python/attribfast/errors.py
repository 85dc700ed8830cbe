"""Every error attribfast raises. All derive from :class:`AttribfastError`.

This module is pure Python and imports nothing from the package: the compiled core imports it to
raise these classes.
"""


class AttribfastError(Exception):
    """Base class of attribfast's errors."""


class LibraryError(AttribfastError):
    """The ONNX Runtime shared library is missing, cannot be loaded, or is too old."""


class ModelLoadError(AttribfastError):
    """An ONNX model could not be loaded (missing file, corrupt bytes, invalid graph)."""


class InvalidInputError(AttribfastError, ValueError):
    """Inputs do not fit the model or the method (names, dtypes, shapes, parameter values)."""


class RuntimeBackendError(AttribfastError):
    """ONNX Runtime failed while running a model."""


class DeviceMemoryError(RuntimeBackendError):
    """A batch did not fit the device's memory even at one row (larger batches are retried smaller)."""


class NonFiniteScoreError(AttribfastError):
    """The model produced NaN or infinite scores or gradients."""


class AttributionOverflowError(NonFiniteScoreError):
    """The scores are finite, but an attribution computed from them is beyond float32's range."""


class CancelledError(AttribfastError):
    """The run was cancelled before it finished."""


class ProviderWarning(UserWarning):
    """A requested execution provider could not be used; the session runs elsewhere."""


class ConvergenceWarning(UserWarning):
    """Integrated gradients stopped at max_steps with a convergence delta above its tolerance."""


class Float32GradientWarning(UserWarning):
    """A gradient method ran on an int8 bundle: its gradients come from the float32 gradient graph."""


# Bundles and export.
class ExportError(AttribfastError):
    """Exporting a model to a bundle failed (including validation above tolerance)."""


class ExportValidationError(ExportError):
    """An exported graph disagrees with torch beyond the tolerance; `errors` holds the measured
    differences by name (forward_scores, gradient_scores, gradients, auxiliary, model_forward)."""

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.errors = dict(errors or {})


class UnknownTaskError(ExportError, InvalidInputError):
    """The task is not one attribfast knows."""


class UnsupportedArchitectureError(ExportError):
    """The model's architecture cannot be exported for the task."""


class MissingTokenizerError(ExportError):
    """The model directory has no tokenizer files."""


class OutputExistsError(ExportError, FileExistsError):
    """The output directory exists and overwrite was not requested."""


class BundleError(AttribfastError):
    """A bundle is missing files or is malformed."""


class BundleIntegrityError(BundleError):
    """A bundle file's sha256 does not match its manifest, or a file the manifest names is not hashed."""


class BundleVersionError(BundleError):
    """The bundle was written with a newer schema version than this attribfast reads."""


class BundleContractError(BundleError):
    """A graph's inputs or outputs differ from what the manifest declares or the task feeds."""


# Attribution requests.
class TargetError(InvalidInputError):
    """Targets are unknown, empty, or of the wrong kind for the task."""


class MethodNotAvailableError(InvalidInputError):
    """The method is unknown or cannot run on this model (e.g. no gradient graph)."""


class InputTooLongError(InvalidInputError):
    """The input is longer than the model's maximum length and truncation was not requested."""


class ResultMismatchError(InvalidInputError):
    """A result is evaluated with a model other than the one that computed it (another bundle hash)."""


__all__ = [
    name for name, value in globals().items() if isinstance(value, type) and issubclass(value, Warning | Exception)
]
