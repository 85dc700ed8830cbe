"""Perturbation methods: replace tokens by a baseline token and measure the change of the scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .. import _core
from ..errors import InvalidInputError
from .base import (
    Groups,
    Method,
    TokenBaseline,
    _check_groups,
    _check_permutations,
    _check_positive,
    _check_real,
    _check_token_baseline,
)


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

    def run(self, engine, encoded, plan, policy, progress, seed):
        if self.window > encoded.ids.size:
            raise InvalidInputError(
                f"occlusion window {self.window} is longer than the input ({encoded.ids.size} tokens)"
            )
        problem, session = engine.score_problem(encoded, plan)
        baseline = engine.baseline_id(self.baseline)
        return _core.occlusion(session, problem, self.window, self.stride, baseline, policy, progress)


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

    def run(self, engine, encoded, plan, policy, progress, seed):
        problem, session = engine.score_problem(encoded, plan)
        groups = engine.groups(self.groups, encoded)
        return _core.feature_ablation(session, problem, groups, engine.baseline_id(self.baseline), policy, progress)


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
        _check_real("max_seconds", self.max_seconds, positive=True, allow_none=True)
        _check_permutations(self.permutations)

    def run(self, engine, encoded, plan, policy, progress, seed):
        problem, session = engine.score_problem(encoded, plan)
        permutations = [] if self.permutations is None else np.asarray(self.permutations, np.int64).ravel().tolist()
        return _core.shapley_sampling(
            session,
            problem,
            engine.groups(self.groups, encoded),
            engine.baseline_id(self.baseline),
            self.n_permutations,
            _seed(self, seed),
            self.max_evaluations or 0,
            self.max_seconds or 0.0,
            permutations,
            policy,
            progress,
        )


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
        _check_real("ridge", self.ridge)

    def run(self, engine, encoded, plan, policy, progress, seed):
        return _surrogate(self, "kernel_shap", 1.0, engine, encoded, plan, policy, progress, seed)


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
        _check_real("kernel_width", self.kernel_width, positive=True)
        _check_real("ridge", self.ridge)

    def run(self, engine, encoded, plan, policy, progress, seed):
        return _surrogate(self, "lime", self.kernel_width, engine, encoded, plan, policy, progress, seed)


def _seed(method: Method, seed: int | None) -> int:
    """The config's own seed, else the call's, else 0."""
    return method.seed if method.seed is not None else (seed or 0)


def _surrogate(method, kind: str, width: float, engine, encoded, plan, policy, progress, seed):
    problem, session = engine.score_problem(encoded, plan)
    groups = engine.groups(method.groups, encoded)
    baseline = engine.baseline_id(method.baseline)
    return _core.surrogate(
        session,
        problem,
        kind,
        groups,
        baseline,
        method.n_samples,
        _seed(method, seed),
        width,
        method.ridge,
        policy,
        progress,
    )
