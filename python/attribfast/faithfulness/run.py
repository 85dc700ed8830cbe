"""Running a faithfulness evaluation: the variants of every curve and bin of every target, scored
through the core in one batched sweep (two when leave-one-out is needed: its ordering picks rows
of the second), then the figures from the pure math in faithfulness.math."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import _core
from ..engine import Encoded
from ..errors import InvalidInputError, ResultMismatchError, TargetError
from ..methods.base import TOKEN_BASELINES
from . import math as fm
from .params import Faithfulness

FORMAT_VERSION = 1
# How far the evaluation's clean scores may be from the result's before the targets are judged to
# be planned differently (batching and thread counts move scores by ~1e-6).
CLEAN_TOLERANCE = 1e-3
LOO_METRICS = ("normalized_aopc", "loo_spearman")


def evaluate_result(model, result, params: Faithfulness, targets=None, progress=None):
    """model.evaluate: re-plans the result's targets (its labels, or `targets`) and evaluates."""
    check_result(model, result)
    if result.token_ids is None:
        raise InvalidInputError("the result has no token ids (an aggregated result?): evaluate the token-level result")
    encoded = Encoded(
        np.asarray(result.token_ids, np.int64),
        result.tokens,
        np.zeros((len(result.tokens), 2), np.int64) if result.offsets is None else result.offsets,
        np.zeros(len(result.tokens), bool) if result.special is None else result.special,
        result.text,
        result.word_ids,
    )
    plan = model._plan_targets(encoded, _targets_of(model, result) if targets is None else targets, None)
    if tuple(plan.labels) != tuple(result.targets):
        raise TargetError(
            f"the targets plan to columns {list(plan.labels)}, the result has {list(result.targets)}: "
            "pass the targets the result was computed for"
        )
    return evaluate_planned(model, encoded, plan, result, params, progress, True, check_clean=True)


def _targets_of(model, result) -> list:
    """The result's column labels as targets; unnamed score columns are labelled by their index."""
    labels = list(result.targets)
    if model._spec.labels is None and all(label.isdigit() for label in labels):
        return [int(label) for label in labels]
    return labels


def check_result(model, result) -> None:
    if result.bundle_hash != model._spec.bundle_hash:
        raise ResultMismatchError(
            f"the result was computed with bundle {result.bundle_hash[:12] or '(none)'}, this model is "
            f"{model._spec.bundle_hash[:12] or '(none)'}: evaluate it with the model that computed it"
        )


def evaluate_planned(model, encoded, plan, result, params: Faithfulness, progress, reuse_prefix, check_clean=False):
    """The result with its `faithfulness` figures (a plain dict; see attribution docs). progress: as
    attribute's (True, a callable or None)."""
    from ..model import _progress_callback

    if result.contrasts is not None:
        raise InvalidInputError("contrastive results cannot be evaluated: evaluate the plain result")
    callback, finish = _progress_callback(progress)
    try:
        return _evaluate(model, encoded, plan, result, params, callback, reuse_prefix, check_clean)
    finally:
        finish()


def _evaluate(model, encoded, plan, result, params, progress, reuse_prefix, check_clean):
    engine = model._engine
    groups, reduce = _features(engine, encoded, result, params)
    n_features = int(groups.max()) + 1 if (groups >= 0).any() else 0
    if n_features < 1:
        raise InvalidInputError("the input has no removable features (only special tokens)")
    baseline = engine.baseline_id(_baseline(result, params))
    segment_of = {t: s for s, columns in enumerate(plan.column_targets) for t in columns if t >= 0}
    n_targets = len(plan.labels)
    # Unpacked: each curve row runs with its own target's segment only (a packed row scores them all).
    problem, session = engine.score_problem(encoded, replace(plan, packed=None))
    policy = _policy(model, params.batch_size, reuse_prefix and params.reuse_prefix)
    sweep = _Sweep(session, problem, policy, progress, encoded.ids, groups, n_features, baseline)

    loo = None
    if any(m in params.metrics for m in LOO_METRICS):
        singles = [sweep.add([f], -1) for f in range(n_features)]
        scores = sweep.run()
        loo = np.array([[sweep.clean[t] - scores[i, t] for t in range(n_targets)] for i in singles])
    relevance = [fm.feature_relevance(result.matrix[:, t], groups, n_features, reduce) for t in range(n_targets)]
    orders = [fm.ranking(r) for r in relevance]
    wanted = [_variants(sweep, order, segment_of[t], params, loo, t) for t, order in enumerate(orders)]
    scores = sweep.run()
    if check_clean and result.target_scores is not None:
        _check_clean(sweep.clean, result.target_scores)
    figures = _figures(wanted, scores, sweep.clean, orders, loo, result, groups, n_features, reduce, params)
    figures.update(
        version=FORMAT_VERSION,
        parameters={**params.as_dict(), "baseline_id": baseline, "reduce": reduce},
        bundle_hash=model._spec.bundle_hash,
        features=n_features,
        clean_scores=[float(v) for v in sweep.clean],
        rows_run=sweep.rows_run,
        token_positions=sweep.token_positions,
        seconds=sweep.seconds,
    )
    return replace(result, faithfulness=figures)


class _Sweep:
    """Variants as sets of removed features (one segment each), deduplicated, scored by the core."""

    def __init__(self, session, problem, policy, progress, ids, groups, n_features, baseline):
        self.session, self.problem, self.policy, self.progress = session, problem, policy, progress
        self.ids, self.groups, self.n_features, self.baseline = ids, groups, n_features, baseline
        self.masks: list[np.ndarray] = []
        self.segments: list[int] = []
        self.index: dict = {}
        self.clean = None
        self.rows_run = self.token_positions = 0
        self.seconds = 0.0

    def add(self, removed, segment: int) -> int:
        mask = np.zeros(self.n_features, bool)
        mask[np.asarray(removed, np.int64)] = True
        key = (mask.tobytes(), segment)
        if key not in self.index:
            self.index[key] = len(self.masks)
            self.masks.append(mask)
            self.segments.append(segment)
        return self.index[key]

    def run(self) -> np.ndarray:
        inside = self.groups >= 0
        variants = np.repeat(self.ids[None, :], len(self.masks), axis=0)
        for row, mask in enumerate(self.masks):
            variants[row, inside & mask[np.maximum(self.groups, 0)]] = self.baseline
        offset = self.rows_run
        callback = None if self.progress is None else (lambda d, t: self.progress(offset + d, offset + t))
        scores, clean, rows, positions, seconds = _core.score_variants(
            self.session, self.problem, variants, self.segments, self.policy, callback
        )
        self.clean = clean if self.clean is None else self.clean
        self.rows_run += int(rows)
        self.token_positions += int(positions)
        self.seconds += float(seconds)
        self.masks, self.segments, self.index = [], [], {}
        return scores


def _variants(sweep: _Sweep, order, segment, params, loo, t) -> dict:
    """Indices of the rows each figure of one target reads (keyed by figure)."""
    m = sweep.n_features
    out = {}
    metrics = params.metrics
    bins = fm.bin_counts(m, params.bins)
    if "deletion" in metrics or "insertion" in metrics:
        # The bins on the grid: comprehensiveness and sufficiency then read the curves' rows.
        counts = fm.removal_counts(m, params.points, bins)
        out["counts"] = counts
        out["top"] = [sweep.add(order[:k], segment) for k in counts]  # the k most relevant removed
        out["bottom"] = [sweep.add(order[m - k :], segment) for k in counts]  # the k least relevant removed
    orderings = {"explanation": order}
    if "normalized_aopc" in metrics:
        loo_order = fm.ranking(loo[:, t])
        orderings.update(reverse=order[::-1], loo=loo_order, loo_reverse=loo_order[::-1])
    if any(name in metrics for name in ("comprehensiveness", "sufficiency", "normalized_aopc")):
        for name, ordering in orderings.items():
            out[f"comp:{name}"] = [sweep.add(ordering[:k], segment) for k in bins]
            out[f"suff:{name}"] = [sweep.add(ordering[k:], segment) for k in bins]
    return out


def _figures(wanted, scores, clean, orders, loo, result, groups, m, reduce, params) -> dict:
    metrics = params.metrics
    values: dict[str, list] = {}
    curves: dict[str, list] = {}
    fractions = None
    for t, rows in enumerate(wanted):
        read = lambda idx, t=t: scores[np.asarray(idx, np.int64), t]  # noqa: E731
        if "counts" in rows:
            counts = rows["counts"]
            fractions = counts / m
            # Keeping the top k is removing the bottom m - k; the grid is symmetric, so it is on it.
            position = {int(k): i for i, k in enumerate(counts)}
            top, bottom = read(rows["top"]), read(rows["bottom"])
            flip = np.array([position[m - int(k)] for k in counts])
            named = {}
            if "deletion" in metrics:
                named.update(deletion=top, deletion_lerf=bottom)
            if "insertion" in metrics:
                named.update(insertion=bottom[flip], insertion_lerf=top[flip])
            for name, curve in named.items():
                curves.setdefault(name, []).append([float(v) for v in curve])
                values.setdefault(f"{name}_area", []).append(fm.curve_area(fractions, curve))
        aopcs = {key: fm.aopc(clean[t], read(idx)) for key, idx in rows.items() if ":" in key}
        if "comprehensiveness" in metrics:
            values.setdefault("comprehensiveness", []).append(aopcs["comp:explanation"])
        if "sufficiency" in metrics:
            values.setdefault("sufficiency", []).append(aopcs["suff:explanation"])
        if "normalized_aopc" in metrics:
            comps = [v for k, v in aopcs.items() if k.startswith("comp:")]
            suffs = [v for k, v in aopcs.items() if k.startswith("suff:")]
            values.setdefault("normalized_comprehensiveness", []).append(
                fm.normalized(aopcs["comp:explanation"], comps, higher_is_better=True)
            )
            values.setdefault("normalized_sufficiency", []).append(
                fm.normalized(aopcs["suff:explanation"], suffs, higher_is_better=False)
            )
        if "loo_spearman" in metrics:
            relevance = fm.feature_relevance(result.matrix[:, t], groups, m, reduce)
            values.setdefault("loo_spearman", []).append(fm.spearman(relevance, loo[:, t]))
    figures: dict = {"metrics": list(metrics), "values": values}
    if curves:
        figures["curves"] = {"x": [float(x) for x in fractions], **curves}
    return figures


def _features(engine, encoded, result, params) -> tuple[np.ndarray, str]:
    """Feature id per token (0.., -1 never removed: special tokens, group -1) and how token values
    combine into a feature's relevance ("mean" when the result's method already gave every token of
    a group its group's value: the same groups; else "sum")."""
    own = result.parameters.get("groups")
    own = tuple(own) if isinstance(own, list) else own
    chosen = params.groups if params.groups is not None else (own if own is not None else "token")
    raw = np.asarray(engine.groups(chosen, encoded), np.int64)
    if encoded.special is not None:
        raw = np.where(np.asarray(encoded.special, bool), -1, raw)
    ids: dict[int, int] = {}
    groups = np.array([-1 if g < 0 else ids.setdefault(int(g), len(ids)) for g in raw], np.int64)
    return groups, ("mean" if own is not None and own == chosen and chosen != "token" else "sum")


def _baseline(result, params):
    if params.baseline is not None:
        return params.baseline
    own = result.parameters.get("baseline")
    if isinstance(own, int) or own in TOKEN_BASELINES:
        return own
    return None


def _policy(model, batch_size, reuse_prefix):
    spec = model._spec
    policy = _core.BatchPolicy()
    policy.batch_size = batch_size or 0
    policy.memory_budget = model._memory_budget
    policy.hidden_size = spec.hidden_size
    policy.num_heads = spec.num_heads
    policy.reuse_prefix = reuse_prefix
    session = model.session("forward")
    if session.provider == "cuda":
        policy.max_batch_tokens = 0
        policy.memory_budget = model._device_budget(session)
    return policy


def _check_clean(clean, expected) -> None:
    expected = np.asarray(expected, np.float64)
    if not np.allclose(clean, expected, rtol=CLEAN_TOLERANCE, atol=CLEAN_TOLERANCE):
        raise TargetError(
            f"the targets score {np.round(clean, 6).tolist()} here but {np.round(expected, 6).tolist()} in the "
            "result: its columns were planned differently (per-token or generated targets?); pass the targets "
            "it was computed for"
        )
