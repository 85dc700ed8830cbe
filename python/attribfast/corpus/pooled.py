"""The pooled path of a corpus sweep: the variants of many texts evaluated in shared, length-sorted
batches by one core call (_core.pooled_*), each result equal to its per-text call up to float32
batching. Perturbation and gradient methods pool (adaptive integrated gradients too: the texts that
need another round run it together); Shapley sampling with a budget or explicit permutations, and
calls with contrast or a progress callback run text by text (sweep.py).

Causal LMs: pooled rows run without prefix reuse, so their results match per-text calls with
reuse_prefix=False exactly and those with reuse within float rounding. Texts with several
multi-token continuations run packed where the bundle has the packed graphs, in a core call of
their own (packed_score.onnx); texts whose continuations are single tokens share the forward graph's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .. import _core
from ..checks import check_target_texts, optional_count
from ..errors import AttribfastError, InvalidInputError, TargetError
from ..methods import (
    FeatureAblation,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    Lime,
    Method,
    NoiseTunnel,
    Occlusion,
    Saliency,
    ShapleySampling,
)
from ..methods.perturbation import _seed

# Texts per core call: bounds the variants held in memory, and a chunk is the unit of progress.
POOL_CHUNK = 256
POOLED_OPTIONS = frozenset({"batch_size", "seed", "truncate", "per_token", "generate", "reuse_prefix", "pack_targets"})


def poolable(method: Method, options: dict) -> bool:
    """Whether the pooled path serves this method and these attribute() options."""
    if not set(options) <= POOLED_OPTIONS:
        return False
    if isinstance(method, ShapleySampling):
        return method.max_evaluations is None and method.max_seconds is None and method.permutations is None
    return isinstance(method, Occlusion | FeatureAblation | KernelShap | Lime | GRADIENT_METHODS)


# Gradient methods whose configs run many texts at once (run_pooled).
GRADIENT_METHODS = IntegratedGradients | Saliency | InputXGradient | NoiseTunnel | GradientShap
# The per-text state one pooled gradient call holds for all its texts at once (noisy inputs,
# float64 path sums, per token x hidden value): at most this many values (512 MiB of float64),
# else the chunk is split into several calls. Long texts with many samples would otherwise hold
# a chunk's worth of per-text state that a per-text call holds one text at a time.
GRADIENT_STATE_VALUES = 2**26


def pooled_attributions(
    model, texts: Sequence, targets: Sequence, method: Method, progress: Callable[[int], None] | None = None, **options
) -> list:
    """Per text an Attribution, or the AttribfastError that text raised (empty, too long, bad target).

    An error of the core call itself (a non-finite score of one text) is raised: the caller reruns
    the chunk text by text to tell which text failed.
    """
    truncate = options.get("truncate")
    if truncate not in (None, "left", "right"):
        raise InvalidInputError(f"truncate must be None, 'left' or 'right', got {truncate!r}")
    generate = optional_count("generate", options.get("generate"), 1, TargetError)
    per_token = options.get("per_token", False)
    if not isinstance(per_token, bool):
        raise InvalidInputError("per_token must be True or False")
    engine = model._engine
    out: list = [None] * len(texts)
    ready = []  # (index, encoded, plan, groups)
    for index, (text, text_targets) in enumerate(zip(texts, targets, strict=True)):
        try:
            check_target_texts(text_targets)
            encoded = model._encode(text, truncate)
            plan = model._plan_targets(encoded, text_targets, generate, per_token)
            groups = None if isinstance(method, GRADIENT_METHODS) else _groups(method, engine, encoded)
            ready.append((index, encoded, plan, groups))
        except AttribfastError as error:
            out[index] = error
    if not ready:
        return out
    pack = options.get("pack_targets", True)
    if not isinstance(pack, bool):
        raise InvalidInputError("pack_targets must be True or False")
    if not pack:
        for _, _, plan, _ in ready:
            plan.packed = plan.shared_gradient = None
    policy = model._policy(method, optional_count("batch_size", options.get("batch_size"), 1), False)
    seed = optional_count("seed", options.get("seed"), 0)
    if isinstance(method, GRADIENT_METHODS):
        results = []
        for part in _state_bounded(method, ready, engine.embedding_matrix().shape[1]):
            inputs = [(encoded, plan) for _, encoded, plan, _ in part]
            results += method.run_pooled(engine, inputs, policy, _row_progress(progress, len(part)), seed)
        if isinstance(method, IntegratedGradients) and method.tolerance is not None:
            for (_, _, plan, _), result in zip(ready, results, strict=True):
                method.warn_unconverged(result, plan.labels, stacklevel=4)
    else:
        results = _perturbation_results(method, engine, ready, policy, _row_progress(progress, len(ready)), seed)
    for (index, encoded, plan, _), result in zip(ready, results, strict=True):
        out[index] = model._attribution(encoded, plan, method, result)
    return out


def _perturbation_results(method: Method, engine, ready, policy, report, seed) -> list:
    # Texts whose plans run the same graph (packed continuations or one row per segment) share a core call.
    calls: dict = {}
    for k, (_, encoded, plan, _) in enumerate(ready):
        problem, session = engine.score_problem(encoded, plan)
        calls.setdefault(id(session), (session, []))[1].append((k, problem))
    results: list = [None] * len(ready)
    for session, members in calls.values():
        problems = [problem for _, problem in members]
        groups = [ready[k][3] for k, _ in members]
        for (k, _), result in zip(members, _run(method, engine, problems, groups, policy, report, seed, session),
                                  strict=True):
            results[k] = result
    return results


def _state_bounded(method: Method, ready: list, hidden: int) -> list:
    """ready in consecutive parts whose texts' gradient state stays within GRADIENT_STATE_VALUES."""
    samples = getattr(method, "nt_samples", None) or getattr(method, "n_samples", 1)
    parts, size = [[]], 0
    for item in ready:
        _, encoded, plan, _ = item
        values = encoded.ids.size * hidden * (len(plan.labels) * (2 + samples) + samples)
        if parts[-1] and size + values > GRADIENT_STATE_VALUES:
            parts.append([])
            size = 0
        parts[-1].append(item)
        size += values
    return parts


def _groups(method: Method, engine, encoded):
    if isinstance(method, Occlusion):
        if method.window > encoded.ids.size:
            raise InvalidInputError(
                f"occlusion window {method.window} is longer than the input ({encoded.ids.size} tokens)"
            )
        return None
    return engine.groups(method.groups, encoded)


def _run(method: Method, engine, problems, groups, policy, progress, seed, session):
    baseline = engine.baseline_id(method.baseline)
    if isinstance(method, Occlusion):
        return _core.pooled_occlusion(session, problems, method.window, method.stride, baseline, policy, progress)
    if isinstance(method, FeatureAblation):
        return _core.pooled_feature_ablation(session, problems, groups, baseline, policy, progress)
    if isinstance(method, ShapleySampling):
        return _core.pooled_shapley_sampling(
            session, problems, groups, baseline, method.n_permutations, _seed(method, seed), policy, progress
        )
    kind, width = ("lime", method.kernel_width) if isinstance(method, Lime) else ("kernel_shap", 1.0)
    return _core.pooled_surrogate(
        session, problems, kind, groups, baseline, method.n_samples, _seed(method, seed), width, method.ridge,
        policy, progress,
    )


def _row_progress(progress: Callable[[int], None] | None, n_texts: int):
    """The core's (rows done, rows total) as whole texts of the chunk for a per-text progress."""
    if progress is None:
        return None
    reported = 0

    def update(done: int, total: int) -> None:
        nonlocal reported
        texts = n_texts * done // max(total, 1)
        if texts > reported:
            progress(texts - reported)
            reported = texts

    return update
