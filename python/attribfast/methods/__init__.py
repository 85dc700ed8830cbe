"""Attribution methods: one frozen config class each (perturbation.py, gradient.py), and the registry."""

from __future__ import annotations

from ..errors import MethodNotAvailableError
from .base import AGGREGATIONS, GROUPINGS, TOKEN_BASELINES, Groups, Method, TokenBaseline
from .gradient import EMBEDDING_BASELINES, INTEGRATION_METHODS, InputXGradient, IntegratedGradients, Saliency
from .hierarchical import Hierarchical
from .perturbation import FeatureAblation, KernelShap, Lime, Occlusion, ShapleySampling
from .sampled import NT_TYPES, GradientShap, NoiseTunnel

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        Occlusion,
        FeatureAblation,
        ShapleySampling,
        KernelShap,
        Lime,
        IntegratedGradients,
        Saliency,
        InputXGradient,
        NoiseTunnel,
        GradientShap,
        Hierarchical,
    )
}


def resolve_method(method: str | Method, available: tuple[str, ...] | None = None) -> Method:
    """A config instance from a name (with defaults) or an instance; checks it can run here."""
    if isinstance(method, str):
        if method not in METHODS:
            raise MethodNotAvailableError(f"unknown method {method!r} (available: {', '.join(METHODS)})")
        method = METHODS[method]()
    elif not isinstance(method, Method):
        raise MethodNotAvailableError(
            f"method must be a name or a config such as attribfast.Occlusion(), got {type(method).__name__}"
        )
    if available is not None and method.name not in available:
        raise MethodNotAvailableError(
            f"{method.name} cannot run on this model (it needs a {method.needs} graph); "
            f"possible here: {', '.join(available)}"
        )
    return method


__all__ = [
    "AGGREGATIONS",
    "EMBEDDING_BASELINES",
    "GROUPINGS",
    "INTEGRATION_METHODS",
    "METHODS",
    "NT_TYPES",
    "TOKEN_BASELINES",
    "FeatureAblation",
    "GradientShap",
    "Groups",
    "Hierarchical",
    "InputXGradient",
    "IntegratedGradients",
    "KernelShap",
    "Lime",
    "Method",
    "NoiseTunnel",
    "Occlusion",
    "Saliency",
    "ShapleySampling",
    "TokenBaseline",
    "resolve_method",
]
