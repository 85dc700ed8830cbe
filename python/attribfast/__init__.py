"""attribfast: token attribution for transformer models, native on ONNX Runtime."""

from . import errors, export
from ._runtime import RuntimeInfo, runtime_info
from .attribution import Attribution
from .bundle import Bundle
from .export import ExportTolerance, export_model
from .faithfulness import Faithfulness
from .faithfulness.compare import Comparison, compare
from .int8 import quantize
from .methods import (
    METHODS,
    FeatureAblation,
    GradientShap,
    Hierarchical,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    Lime,
    NoiseTunnel,
    Occlusion,
    Saliency,
    ShapleySampling,
)
from .model import AttributionModel, load
from .session import Session

__version__ = "0.1.0"

# Docstrings of the public names that are data rather than classes or functions (a dict cannot
# carry one). scripts/gen_api_docs.py puts them in docs/api.md.
_DATA_DOCS = {
    "METHODS": "The registry of attribution methods: name -> config class. Its keys are the names "
    "that AttributionModel.attribute(method=...) and `attribfast explain --method` accept; each "
    "class, called with keyword arguments, gives a configured method.",
}

__all__ = [
    "METHODS",
    "Attribution",
    "AttributionModel",
    "Bundle",
    "Comparison",
    "ExportTolerance",
    "Faithfulness",
    "FeatureAblation",
    "GradientShap",
    "Hierarchical",
    "InputXGradient",
    "IntegratedGradients",
    "KernelShap",
    "Lime",
    "NoiseTunnel",
    "Occlusion",
    "RuntimeInfo",
    "Saliency",
    "Session",
    "ShapleySampling",
    "compare",
    "errors",
    "export",
    "export_model",
    "load",
    "quantize",
    "runtime_info",
]
