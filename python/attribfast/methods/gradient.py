"""Gradient methods over the input embeddings, from the bundle's gradient graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .. import _core
from ..errors import InvalidInputError
from .base import Method, _check_aggregation, _check_positive

INTEGRATION_METHODS = (
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "trapezoid",
)
EMBEDDING_BASELINES = ("pad", "mask", "unk", "eos", "zero")


@dataclass(frozen=True, eq=False)
class IntegratedGradients(Method):
    """Integrated gradients over the input embeddings, from the bundle's gradient graph.

    n_steps: quadrature points. method: Captum's rule names ("gausslegendre", "riemann_left",
    "riemann_right", "riemann_middle", "riemann_trapezoid" with Captum's (n-1)/n weights) or
    "trapezoid" (normalised). baseline: "pad", "mask", "unk", "eos" (that token's embedding at every
    position), "zero", None (pad, else unk, else eos) or an array [n_tokens, hidden].
    tolerance: if set, each target's steps are doubled until |convergence delta| <= tolerance or
    max_steps is reached. aggregation: "sum" over the hidden dimension, or "l2" (its norm).
    """

    n_steps: int = 50
    method: str = "gausslegendre"
    baseline: str | np.ndarray | None = None
    tolerance: float | None = None
    max_steps: int = 512
    aggregation: str = "sum"
    name: ClassVar[str] = "integrated_gradients"
    needs: ClassVar[str] = "gradient"

    def __post_init__(self):
        _check_positive("n_steps", self.n_steps, 1 if self.method == "gausslegendre" else 2)
        if self.method not in INTEGRATION_METHODS:
            raise InvalidInputError(f"method must be one of {', '.join(INTEGRATION_METHODS)}, got {self.method!r}")
        if not isinstance(self.baseline, np.ndarray) and self.baseline is not None:
            if self.baseline not in EMBEDDING_BASELINES:
                raise InvalidInputError(f"baseline must be one of {', '.join(EMBEDDING_BASELINES)}, None or an array")
        if self.tolerance is not None and not self.tolerance > 0:
            raise InvalidInputError("tolerance must be positive (or None)")
        _check_positive("max_steps", self.max_steps)
        _check_aggregation(self.aggregation)

    def run(self, engine, encoded, plan, policy, progress, seed):
        problem, session = engine.gradient_problem(encoded, plan)
        embeddings = engine.embedding_matrix()
        return _core.integrated_gradients(
            session,
            problem,
            embeddings,
            engine.embedding_baseline(self.baseline, encoded, embeddings),
            self.method,
            self.n_steps,
            self.tolerance or 0.0,
            max(self.max_steps, self.n_steps),
            self.aggregation,
            policy,
            progress,
        )


@dataclass(frozen=True)
class _GradientAtInput(Method):
    """The gradient at the input itself, aggregated over the hidden dimension: "sum" or "l2" (its norm)."""

    aggregation: str = "sum"
    needs: ClassVar[str] = "gradient"

    def __post_init__(self):
        _check_aggregation(self.aggregation)

    def run(self, engine, encoded, plan, policy, progress, seed):
        problem, session = engine.gradient_problem(encoded, plan)
        embeddings = engine.embedding_matrix()
        return _core.gradient_at_input(session, problem, embeddings, self.name, self.aggregation, policy, progress)


@dataclass(frozen=True)
class Saliency(_GradientAtInput):
    """|d score / d embedding|, summed over the hidden dimension ("sum") or its L2 norm ("l2")."""

    name: ClassVar[str] = "saliency"


@dataclass(frozen=True)
class InputXGradient(_GradientAtInput):
    """embedding * d score / d embedding, summed over the hidden dimension (or its L2 norm)."""

    name: ClassVar[str] = "input_x_gradient"
