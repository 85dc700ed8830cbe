"""Attribution methods: one frozen config class each, and the registry that names them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from .errors import InvalidInputError, MethodNotAvailableError

# A replacement token for perturbations: "pad", "mask", "unk", "eos", a token id, or None for the
# bundle's pad token (falling back to unk, then eos).
TokenBaseline = str | int | None
TOKEN_BASELINES = ("pad", "mask", "unk", "eos")
# Feature groups: "token" (each token alone), "word" (whitespace-separated words, via the
# tokenizer's offsets), or one group id per token (-1 keeps a token fixed).
Groups = str | tuple
GROUPINGS = ("token", "word")
AGGREGATIONS = ("sum", "l2")


def _check_positive(name: str, value, minimum=1) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_token_baseline(baseline: TokenBaseline) -> None:
    if baseline is None or (
        isinstance(baseline, int | np.integer) and not isinstance(baseline, bool) and baseline >= 0
    ):
        return
    if baseline not in TOKEN_BASELINES:
        raise InvalidInputError(
            f"baseline must be one of {', '.join(TOKEN_BASELINES)}, a token id or None, got {baseline!r}"
        )


def _check_groups(groups: Groups) -> None:
    if isinstance(groups, str):
        if groups not in GROUPINGS:
            raise InvalidInputError(f"groups must be one of {', '.join(GROUPINGS)} or a tuple of ids, got {groups!r}")
        return
    if not all(isinstance(g, int | np.integer) and g >= -1 for g in groups):
        raise InvalidInputError("explicit groups must be integers >= -1, one per input token")


def _check_aggregation(aggregation: str) -> None:
    if aggregation not in AGGREGATIONS:
        raise InvalidInputError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")


class Method:
    """Base of the method configs. `name` is the registry key; `needs` the bundle graph it runs."""

    name: ClassVar[str]
    needs: ClassVar[str]

    def parameters(self) -> dict:
        """The config as plain values (arrays become lists), for results and files."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out


@dataclass(frozen=True)
class Occlusion(Method):
    """Replace windows of tokens by a baseline token and measure the score drop (Captum's Occlusion).

    window: tokens per window. stride: tokens between window starts; overlapping windows are
    averaged. baseline: the replacement token.
    """

    window: int = 1
    stride: int = 1
    baseline: TokenBaseline = None
    name: ClassVar[str] = "occlusion"
    needs: ClassVar[str] = "forward"

    def __post_init__(self):
        _check_positive("window", self.window)
        _check_positive("stride", self.stride)
        _check_token_baseline(self.baseline)


@dataclass(frozen=True)
class FeatureAblation(Method):
    """Replace each feature group by the baseline token; every token of a group gets the group's drop."""

    groups: Groups = "token"
    baseline: TokenBaseline = None
    name: ClassVar[str] = "feature_ablation"
    needs: ClassVar[str] = "forward"

    def __post_init__(self):
        _check_groups(self.groups)
        _check_token_baseline(self.baseline)


@dataclass(frozen=True)
class ShapleySampling(Method):
    """Shapley values estimated from random feature permutations, with a standard error per cell.

    n_permutations: permutations to average. seed: sampling seed (None: the call's seed, else 0).
    max_evaluations / max_seconds: an optional budget; the estimate so far is returned with its
    standard errors once it is reached (checked between sweeps of permutations). permutations:
    explicit permutations of the feature groups, used instead of sampling.
    """

    n_permutations: int = 25
    groups: Groups = "token"
    baseline: TokenBaseline = None
    seed: int | None = None
    max_evaluations: int | None = None
    max_seconds: float | None = None
    permutations: tuple | None = None
    name: ClassVar[str] = "shapley_sampling"
    needs: ClassVar[str] = "forward"

    def __post_init__(self):
        _check_positive("n_permutations", self.n_permutations)
        _check_groups(self.groups)
        _check_token_baseline(self.baseline)
        if self.max_evaluations is not None:
            _check_positive("max_evaluations", self.max_evaluations)
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise InvalidInputError("max_seconds must be positive")


@dataclass(frozen=True)
class KernelShap(Method):
    """KernelSHAP: coalitions drawn from the Shapley kernel, then a weighted least-squares fit.

    The full and the empty coalition are added with weight 1e6 (Captum's stand-in for infinity).
    n_samples: sampled coalitions. ridge: L2 penalty of the fit (0: plain least squares).
    """

    n_samples: int = 200
    groups: Groups = "token"
    baseline: TokenBaseline = None
    seed: int | None = None
    ridge: float = 0.0
    name: ClassVar[str] = "kernel_shap"
    needs: ClassVar[str] = "forward"

    def __post_init__(self):
        _check_positive("n_samples", self.n_samples)
        _check_groups(self.groups)
        _check_token_baseline(self.baseline)
        if self.ridge < 0:
            raise InvalidInputError("ridge must be >= 0")


@dataclass(frozen=True)
class Lime(Method):
    """LIME: random coalitions (each feature kept with probability 1/2) weighted by
    exp(-d^2 / (2 kernel_width^2)), d the cosine distance to the full input, then a ridge fit
    (closed form, unlike Captum's default Lasso, so results are exact and reproducible).
    """

    n_samples: int = 200
    groups: Groups = "token"
    baseline: TokenBaseline = None
    seed: int | None = None
    kernel_width: float = 1.0
    ridge: float = 1e-3
    name: ClassVar[str] = "lime"
    needs: ClassVar[str] = "forward"

    def __post_init__(self):
        _check_positive("n_samples", self.n_samples)
        _check_groups(self.groups)
        _check_token_baseline(self.baseline)
        if not self.kernel_width > 0:
            raise InvalidInputError("kernel_width must be positive")
        if self.ridge < 0:
            raise InvalidInputError("ridge must be >= 0")


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


@dataclass(frozen=True)
class Saliency(Method):
    """|d score / d embedding|, summed over the hidden dimension ("sum") or its L2 norm ("l2")."""

    aggregation: str = "sum"
    name: ClassVar[str] = "saliency"
    needs: ClassVar[str] = "gradient"

    def __post_init__(self):
        _check_aggregation(self.aggregation)


@dataclass(frozen=True)
class InputXGradient(Method):
    """embedding * d score / d embedding, summed over the hidden dimension (or its L2 norm)."""

    aggregation: str = "sum"
    name: ClassVar[str] = "input_x_gradient"
    needs: ClassVar[str] = "gradient"

    def __post_init__(self):
        _check_aggregation(self.aggregation)


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
