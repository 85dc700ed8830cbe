"""attribfast: token attribution for transformer models, native on ONNX Runtime."""

from . import errors, export
from ._runtime import RuntimeInfo, runtime_info
from .attribution import Attribution
from .bundle import Bundle
from .export import ExportTolerance, export_model
from .methods import (
    METHODS,
    FeatureAblation,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    Lime,
    Occlusion,
    Saliency,
    ShapleySampling,
)
from .model import AttributionModel, load
from .session import Session

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "Attribution",
    "AttributionModel",
    "Bundle",
    "ExportTolerance",
    "FeatureAblation",
    "InputXGradient",
    "IntegratedGradients",
    "KernelShap",
    "Lime",
    "Occlusion",
    "RuntimeInfo",
    "Saliency",
    "Session",
    "ShapleySampling",
    "errors",
    "export",
    "export_model",
    "load",
    "runtime_info",
]
