"""attribfast: token attribution for transformer models, native on ONNX Runtime."""

from . import errors
from ._runtime import RuntimeInfo, runtime_info

__version__ = "0.1.0"

__all__ = ["RuntimeInfo", "errors", "runtime_info"]
