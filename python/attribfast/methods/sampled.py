"""Gradient methods at noisy points: NoiseTunnel (SmoothGrad, SmoothGrad^2, VarGrad) and GradientSHAP.

The noise is drawn in Python, from numpy's default_rng(seed), in this order: the Gaussian noise
[n_samples, n_tokens, hidden] (standard deviation `stdevs`), then for GradientSHAP the baseline index of
each sample (integers in [0, k)) and its point on the path (uniform in [0, 1)). It is added to the
input embeddings of the attributed tokens only, never to a continuation or a target. The core then
evaluates the gradient graph at every sample's points (_core.pooled_sampled_gradients) and combines them the
way Captum's NoiseTunnel and GradientShap do, so the same draws give Captum's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .. import _core
from ..errors import InvalidInputError
from .base import Method, _check_aggregation, _check_positive, _check_real
from .gradient import EMBEDDING_BASELINES, InputXGradient, IntegratedGradients, Saliency, _check_baseline_array
from .shared_rounds import pooled_by_session

NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")
# The noise of all samples is drawn and held at once: 2^28 float32 values (1 GiB) at most.
MAX_NOISE_VALUES = 2**28
_TUNNEL_BASES = {cls.name: cls for cls in (Saliency, InputXGradient, IntegratedGradients)}


def _check_seed(seed) -> None:
    if seed is not None:
        _check_positive("seed", seed, 0)


def _seed(method, seed: int | None) -> int:
    """The config's own seed, else the call's, else 0."""
    return method.seed if method.seed is not None else (seed or 0)


def _noise(rng, n_samples: int, n: int, hidden: int, stdevs: float) -> np.ndarray:
    """[n_samples, n, hidden] float32 Gaussian noise; refuses sizes and scales float32 cannot hold."""
    if n_samples * n * hidden > MAX_NOISE_VALUES:
        raise InvalidInputError(
            f"{n_samples} samples of {n} x {hidden} noise values exceed the limit of {MAX_NOISE_VALUES} values "
            "held at once: use fewer samples"
        )
    # abs: numpy refuses a scale of -0.0, which the parameter check lets through as 0.
    noise = rng.normal(0.0, abs(float(stdevs)), (n_samples, n, hidden))
    if noise.size and not np.abs(noise).max() <= np.finfo(np.float32).max:
        raise InvalidInputError(f"stdevs {stdevs!r} gives noise beyond float32's range")
    return noise.astype(np.float32)


@dataclass(frozen=True, eq=False)
class NoiseTunnel(Method):
    """Captum's NoiseTunnel over a gradient method: the method runs at nt_samples noisy copies of the
    input embeddings (x + N(0, stdevs^2) per element) and the sample attributions are combined per
    embedding element, before the method's aggregation over the hidden dimension.

    method: "saliency", "input_x_gradient", "integrated_gradients" or such a config (its aggregation
    and, for integrated gradients, its n_steps, method and baseline are used; integrated gradients runs
    exactly n_steps inside the tunnel: the adaptive tolerance is not applied, and no deltas are kept).
    nt_type: "smoothgrad" (the mean), "smoothgrad_sq" (the mean of squares) or "vargrad" (the variance,
    mean of squares minus squared mean). stdevs: the noise's standard deviation, in embedding units
    (Captum's default 1.0; embeddings are often far smaller, so scale it to the model's).
    seed: the noise seed (None: the call's seed, else 0). standard_errors: for smoothgrad and
    smoothgrad_sq under aggregation "sum", the spread of the per-sample values / sqrt(nt_samples).
    How the noise is drawn from the seed: docs/semantics.md, "SmoothGrad, VarGrad and GradientSHAP".
    """

    method: str | Method = "saliency"
    nt_type: str = "smoothgrad"
    nt_samples: int = 5
    stdevs: float = 1.0
    seed: int | None = None
    base: Method = field(init=False, repr=False)
    name: ClassVar[str] = "smoothgrad"
    needs: ClassVar[str] = "gradient"

    def __post_init__(self):
        method = self.method
        if isinstance(method, str):
            if method not in _TUNNEL_BASES:
                raise InvalidInputError(f"a noise tunnel runs one of {', '.join(_TUNNEL_BASES)}, got {method!r}")
            method = _TUNNEL_BASES[method]()
        elif not isinstance(method, tuple(_TUNNEL_BASES.values())):
            raise InvalidInputError(
                f"a noise tunnel runs one of {', '.join(_TUNNEL_BASES)} (a name or a config), got {method!r}"
            )
        object.__setattr__(self, "base", method)
        if self.nt_type not in NT_TYPES:
            raise InvalidInputError(f"nt_type must be one of {', '.join(NT_TYPES)}, got {self.nt_type!r}")
        _check_positive("nt_samples", self.nt_samples)
        _check_real("stdevs", self.stdevs)
        _check_seed(self.seed)

    @property
    def aggregation(self) -> str:
        return self.base.aggregation

    def parameters(self) -> dict:
        return {
            "method": self.base.name,
            "method_parameters": self.base.parameters(),
            "nt_type": self.nt_type,
            "nt_samples": self.nt_samples,
            "stdevs": self.stdevs,
            "seed": self.seed,
            "aggregation": self.aggregation,
        }

    def run(self, engine, encoded, plan, policy, progress, seed):
        return self.run_pooled(engine, [(encoded, plan)], policy, progress, seed)[0]

    def run_pooled(self, engine, inputs, policy, progress, seed) -> list:
        """Core results for many (encoded, plan) pairs, their rows in shared batches; each text's
        noise drawn from the seed as a call for that text alone draws it."""
        base = self.base
        if isinstance(base, IntegratedGradients):
            alphas, weights = _core.quadrature(base.method, base.n_steps)
        else:
            alphas, weights = np.ones(1), np.ones(1)
        embeddings = engine.embedding_matrix()
        draws = []
        for encoded, _ in inputs:
            n, hidden = encoded.ids.size, embeddings.shape[1]
            noise = _noise(np.random.default_rng(_seed(self, seed)), self.nt_samples, n, hidden, self.stdevs)
            if isinstance(base, IntegratedGradients):
                baselines = engine.embedding_baseline(base.baseline, encoded, embeddings)[None]
            else:
                # input x gradient is (x - 0) * grad; saliency ignores the baseline.
                baselines = np.zeros((1, n, hidden), np.float32)
            points = np.tile(alphas, (self.nt_samples, 1))
            draws.append(_Draws(noise, baselines, np.zeros(self.nt_samples, np.int64), points))
        return _run_pooled(engine, inputs, draws, weights, isinstance(base, Saliency), self.nt_type, self.aggregation,
                           policy, progress)


@dataclass(frozen=True, eq=False)
class GradientShap(Method):
    """Captum's GradientShap: the expected (x_s - b) * grad(b + alpha (x_s - b)) over n_samples draws
    of a noisy input x_s = x + N(0, stdevs^2), a baseline b from the distribution and alpha ~ U(0, 1).

    baselines: "pad", "mask", "unk", "eos", "zero", None (pad, else unk, else eos), an array
    [n_tokens, hidden], or a distribution [k, n_tokens, hidden] each sample draws one row of.
    seed: the sampling seed (None: the call's seed, else 0). aggregation: "sum" over the hidden
    dimension, or "l2" (its norm). standard_errors (aggregation "sum"): the spread of the per-sample
    values / sqrt(n_samples). The draws: docs/semantics.md, "SmoothGrad, VarGrad and GradientSHAP".
    """

    n_samples: int = 5
    stdevs: float = 0.0
    baselines: str | np.ndarray | None = None
    seed: int | None = None
    aggregation: str = "sum"
    name: ClassVar[str] = "gradient_shap"
    needs: ClassVar[str] = "gradient"

    def __post_init__(self):
        _check_positive("n_samples", self.n_samples)
        _check_real("stdevs", self.stdevs)
        _check_seed(self.seed)
        _check_aggregation(self.aggregation)
        if isinstance(self.baselines, np.ndarray):
            if self.baselines.ndim == 3:
                if self.baselines.shape[0] == 0:
                    raise InvalidInputError("a baseline distribution needs at least one row")
                _check_baseline_array(self.baselines.reshape(-1, self.baselines.shape[-1]))
            else:
                _check_baseline_array(self.baselines)
        elif self.baselines is not None and (
            not isinstance(self.baselines, str) or self.baselines not in EMBEDDING_BASELINES
        ):
            raise InvalidInputError(
                f"baselines must be one of {', '.join(EMBEDDING_BASELINES)}, None or an array, got {self.baselines!r}"
            )

    def run(self, engine, encoded, plan, policy, progress, seed):
        return self.run_pooled(engine, [(encoded, plan)], policy, progress, seed)[0]

    def run_pooled(self, engine, inputs, policy, progress, seed) -> list:
        """Core results for many (encoded, plan) pairs, their rows in shared batches; each text's
        draws made from the seed as a call for that text alone makes them."""
        embeddings = engine.embedding_matrix()
        draws = []
        for encoded, _ in inputs:
            n, hidden = encoded.ids.size, embeddings.shape[1]
            if isinstance(self.baselines, np.ndarray) and self.baselines.ndim == 3:
                if self.baselines.shape[1:] != (n, hidden):
                    raise InvalidInputError(
                        f"the baselines must have shape (k, {n}, {hidden}), got {self.baselines.shape}"
                    )
                baselines = self.baselines.astype(np.float32)
            else:
                baselines = engine.embedding_baseline(self.baselines, encoded, embeddings)[None]
            rng = np.random.default_rng(_seed(self, seed))
            noise = _noise(rng, self.n_samples, n, hidden, self.stdevs)
            index = rng.integers(0, baselines.shape[0], self.n_samples)
            draws.append(_Draws(noise, baselines, index, rng.uniform(0.0, 1.0, (self.n_samples, 1))))
        return _run_pooled(engine, inputs, draws, np.ones(1), False, "smoothgrad", self.aggregation, policy, progress)


@dataclass(frozen=True)
class _Draws:
    """One text's samples: noise [n_samples, n, hidden], baselines [k, n, hidden], each sample's
    baseline index and its points on the path [n_samples, K]."""

    noise: np.ndarray
    baselines: np.ndarray
    index: np.ndarray
    alphas: np.ndarray


def _run_pooled(engine, inputs, draws, weights, absolute, nt_type, aggregation, policy, progress) -> list:
    embeddings = engine.embedding_matrix()

    def call(session, indexes, problems):
        chosen = [draws[k] for k in indexes]
        return _core.pooled_sampled_gradients(
            session,
            problems,
            embeddings,
            [d.noise for d in chosen],
            [d.baselines for d in chosen],
            [d.index.tolist() for d in chosen],
            [d.alphas for d in chosen],
            weights,
            absolute,
            nt_type,
            aggregation,
            policy,
            progress,
        )

    return pooled_by_session(call, [(k, *engine.gradient_problem(*item)) for k, item in enumerate(inputs)])
