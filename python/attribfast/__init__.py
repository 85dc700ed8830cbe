"""attribfast: token attribution for transformer models, native on ONNX Runtime."""

from . import errors
from ._runtime import RuntimeInfo, runtime_info
from .session import Session

__version__ = "0.1.0"

__all__ = ["RuntimeInfo", "Session", "errors", "runtime_info"]
