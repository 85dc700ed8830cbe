"""Gradient methods over the input embeddings, from the bundle's gradient graph."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .. import _core
from ..errors import ConvergenceWarning, InvalidInputError
from .base import Method, _check_aggregation, _check_positive, _check_real
from .shared_rounds import integrated_rounds, pooled_by_session

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

    n_steps: quadrature points (the first round when adaptive). method: Captum's rule names
    ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid" with
    Captum's (n-1)/n weights) or "trapezoid" (normalised). baseline: "pad", "mask", "unk", "eos"
    (that token's embedding at every position), "zero", None (pad, else unk, else eos) or an array
    [n_tokens, hidden]. aggregation: "sum" over the hidden dimension, or "l2" (its norm).

    The quality guard: by default each target's steps double until its convergence delta (the
    attributions' sum minus f(input) - f(baseline)) satisfies |delta| <= tolerance *
    |f(input) - f(baseline)| + absolute_tolerance, up to max_steps. A target that stops short gets a
    ConvergenceWarning naming its delta and steps; the result's `deltas` and `steps` record both.
    tolerance=None runs exactly n_steps (Captum's behaviour). absolute_tolerance covers a target
    whose two scores barely differ, where a relative bound would ask for float32 noise.
    """

    n_steps: int = 50
    method: str = "gausslegendre"
    baseline: str | np.ndarray | None = None
    tolerance: float | None = 0.05
    max_steps: int = 512
    absolute_tolerance: float = 1e-4
    aggregation: str = "sum"
    name: ClassVar[str] = "integrated_gradients"
    needs: ClassVar[str] = "gradient"

    def __post_init__(self):
        if self.method not in INTEGRATION_METHODS:
            raise InvalidInputError(f"method must be one of {', '.join(INTEGRATION_METHODS)}, got {self.method!r}")
        _check_positive("n_steps", self.n_steps, 1 if self.method == "gausslegendre" else 2)
        if isinstance(self.baseline, np.ndarray):
            _check_baseline_array(self.baseline)
        elif self.baseline is not None and (
            not isinstance(self.baseline, str) or self.baseline not in EMBEDDING_BASELINES
        ):
            raise InvalidInputError(
                f"baseline must be one of {', '.join(EMBEDDING_BASELINES)}, None or an array, got {self.baseline!r}"
            )
        if self.tolerance is not None:
            _check_real("tolerance", self.tolerance, positive=True)
        _check_real("absolute_tolerance", self.absolute_tolerance)
        _check_positive("max_steps", self.max_steps)
        _check_aggregation(self.aggregation)

    def run(self, engine, encoded, plan, policy, progress, seed):
        (result,) = self.run_pooled(engine, [(encoded, plan)], policy, progress, seed)
        if self.tolerance is not None:
            self.warn_unconverged(result, plan.labels, stacklevel=5)  # the caller of attribute()
        return result

    def run_pooled(self, engine, inputs, policy, progress, seed) -> list:
        """Core results for many (encoded, plan) pairs, their rows in shared batches; one pair is a
        plain call. No warnings here: the caller warns per text (warn_unconverged)."""
        embeddings = engine.embedding_matrix()
        baselines = [engine.embedding_baseline(self.baseline, encoded, embeddings) for encoded, _ in inputs]
        adaptive = self.tolerance is not None
        absolute, relative = (self.absolute_tolerance, self.tolerance) if adaptive else (0.0, 0.0)

        def run(jobs, n_steps, max_steps):
            def call(session, indexes, problems):
                return _core.pooled_integrated_gradients(
                    session, problems, embeddings, [baselines[k] for k in indexes], self.method, n_steps, absolute,
                    relative, max_steps, self.aggregation, policy, progress,
                )

            return pooled_by_session(call, jobs)

        def allowed(result):
            return absolute + relative * np.abs(np.asarray(result.clean_scores) - np.asarray(result.baseline_scores))

        return integrated_rounds(run, engine, inputs, self.n_steps, max(self.max_steps, self.n_steps), adaptive,
                                 allowed)

    def warn_unconverged(self, result, labels, stacklevel: int = 2) -> None:
        """A ConvergenceWarning per target whose delta is beyond the tolerance (adaptive runs)."""
        difference = np.abs(result.clean_scores - result.baseline_scores)
        allowed = self.tolerance * difference + self.absolute_tolerance
        for t in np.flatnonzero(np.abs(result.delta) > allowed):
            warnings.warn(
                f"integrated gradients did not converge for target {labels[t]!r}: |delta| = "
                f"{abs(result.delta[t]):.4g} is {_share(result.delta[t], difference[t])} of "
                f"|f(input) - f(baseline)| = {difference[t]:.4g} after {int(result.steps[t])} steps "
                f"(tolerance {self.tolerance:g}, max_steps {self.max_steps}); raise max_steps, or pass "
                "tolerance=None for fixed steps",
                ConvergenceWarning,
                stacklevel=stacklevel,
            )


def _share(delta: float, difference: float) -> str:
    return f"{abs(delta) / difference:.1%}" if difference > 0 else "all"


def _check_baseline_array(baseline: np.ndarray) -> None:
    """A numeric 2-D array whose finite values float32 can hold. Its shape is checked against the
    input later, and NaN or infinity by the core, which names the token and dimension."""
    if baseline.dtype.kind not in "biuf":
        raise InvalidInputError(f"an IG baseline array must be numeric, got dtype {baseline.dtype}")
    if baseline.ndim != 2:
        raise InvalidInputError(f"an IG baseline array must be [n_tokens, hidden], got shape {baseline.shape}")
    values = baseline.astype(np.float64, copy=False)
    finite = values[np.isfinite(values)]
    if finite.size and np.max(np.abs(finite)) > np.finfo(np.float32).max:
        raise InvalidInputError("an IG baseline array holds values beyond float32's range")


@dataclass(frozen=True)
class _GradientAtInput(Method):
    """The gradient at the input itself, aggregated over the hidden dimension: "sum" or "l2" (its norm)."""

    aggregation: str = "sum"
    needs: ClassVar[str] = "gradient"

    def __post_init__(self):
        _check_aggregation(self.aggregation)

    def run(self, engine, encoded, plan, policy, progress, seed):
        return self.run_pooled(engine, [(encoded, plan)], policy, progress, seed)[0]

    def run_pooled(self, engine, inputs, policy, progress, seed) -> list:
        """Core results for many (encoded, plan) pairs, their rows in shared batches."""
        embeddings = engine.embedding_matrix()

        def call(session, indexes, problems):
            return _core.pooled_gradient_at_input(session, problems, embeddings, self.name, self.aggregation, policy,
                                                  progress)

        return pooled_by_session(call, [(k, *engine.gradient_problem(*item)) for k, item in enumerate(inputs)])


@dataclass(frozen=True)
class Saliency(_GradientAtInput):
    """|d score / d embedding|, summed over the hidden dimension ("sum") or its L2 norm ("l2")."""

    name: ClassVar[str] = "saliency"


@dataclass(frozen=True)
class InputXGradient(_GradientAtInput):
    """embedding * d score / d embedding, summed over the hidden dimension (or its L2 norm)."""

    name: ClassVar[str] = "input_x_gradient"
