"""Hierarchical attribution (AttriBoT's coarse-to-fine pruning): attribute coarse spans first, then
refine only the spans that matter, level by level, down to the finest level asked for.

Each level is one run of the inner method (group occlusion or Shapley sampling) over that level's
groups inside the spans kept at the level before; every other token stays as it is in the input.
A token's value is its group's value at the finest level that refined it, spread evenly over the
group's tokens, so the rows of a span sum to the span's value (`aggregate("sentence")` gives the
coarse values back for spans never refined).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .. import _core
from ..errors import InvalidInputError
from .base import Method, _check_real
from .perturbation import FeatureAblation, Occlusion, ShapleySampling, _seed

# Coarse to fine; a level may follow only one of a lower rank ("sentence" and "line" do not nest).
LEVEL_RANK = {"paragraph": 0, "sentence": 1, "line": 1, "word": 2, "token": 3}
INNER_METHODS = ("occlusion", "feature_ablation", "shapley_sampling")


def kept_spans(scores: np.ndarray, keep: int | float) -> np.ndarray:
    """Indices (ascending) of the spans to refine, from their attribution sizes (>= 0).

    keep as an int: the keep largest (ties: the earlier span first). As a float in (0, 1]: the fewest
    largest spans whose sizes sum to at least keep times the total; spans of size 0 never count
    towards it, so keep=1.0 refines every span with a nonzero value.
    """
    scores = np.asarray(scores, np.float64)
    order = np.argsort(-scores, kind="stable")
    if isinstance(keep, int | np.integer) and not isinstance(keep, bool):
        return np.sort(order[: int(keep)])
    running = np.cumsum(scores[order])
    if running.size == 0 or running[-1] <= 0:
        return np.zeros(0, np.int64)
    count = int(np.searchsorted(running, keep * running[-1], side="left")) + 1
    return np.sort(order[: min(count, scores.size)])


def nested_groups(parents: np.ndarray, level: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Group ids (0, 1, ... in order of first token) of the active tokens: tokens share a group when
    they share both their parent span and their group at this level; inactive tokens get -1."""
    out = np.full(parents.shape, -1, np.int64)
    ids: dict = {}
    for row in np.flatnonzero(active):
        out[row] = ids.setdefault((int(parents[row]), int(level[row])), len(ids))
    return out


def spread(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each token's share of its group's value (values: one row per token holding its group's value):
    the value divided by the group's size; tokens of group -1 get 0."""
    out = np.zeros(values.shape, np.float64)
    active = groups >= 0
    sizes = np.bincount(groups[active])
    out[active] = values[active] / sizes[groups[active]][:, None]
    return out


@dataclass
class HierarchicalResult:
    """The core result's fields that model.attribute reads, plus details merged into the parameters."""

    matrix: np.ndarray
    clean_scores: np.ndarray
    standard_error: np.ndarray | None
    rows_run: int
    token_positions: int
    seconds: float
    details: dict = field(default_factory=dict)
    delta: None = None
    steps: None = None


@dataclass(frozen=True)
class Hierarchical(Method):
    """Coarse-to-fine attribution: the coarsest level's spans first, then only the kept spans are
    split into the next level's groups, and so on (AttriBoT's hierarchical pruning).

    levels: coarse to fine, from "paragraph", "sentence" or "line", "word", "token" (at least two;
        a comma-separated string works too). keep: which spans of a level are refined at the next:
        an int k >= 1 (the k spans of largest |value|) or a float in (0, 1] (the fewest largest
        spans holding that fraction of the total |value|); |value| sums the target columns, so all
        targets share one refinement. inner: the method run at every level: "occlusion" (each
        group replaced by the baseline token; "feature_ablation" is the same), "shapley_sampling",
        or a config carrying its settings (baseline, n_permutations, seed): FeatureAblation(),
        Occlusion() with window and stride 1, or ShapleySampling() without explicit permutations.

    A token's value is its group's value at the finest level that refined it, spread evenly over
    the group's tokens; the tokens outside the refined spans keep their value from the level before
    (docs/hierarchical.md). The result's parameters["hierarchy"] lists per level the groups run,
    the spans kept, model rows and token positions.
    """

    levels: tuple = ("sentence", "token")
    keep: int | float = 0.5
    inner: str | Method = "occlusion"
    name: ClassVar[str] = "hierarchical"
    needs: ClassVar[str] = "forward"

    def __post_init__(self):
        levels = self.levels
        if isinstance(levels, str):
            levels = tuple(part.strip() for part in levels.split(","))
        if not isinstance(levels, tuple | list) or len(levels) < 2:
            raise InvalidInputError(f"levels must name at least two levels, coarse to fine, got {self.levels!r}")
        for level in levels:
            if not isinstance(level, str) or level not in LEVEL_RANK:
                raise InvalidInputError(f"levels are {', '.join(LEVEL_RANK)}; got {level!r}")
        ranks = [LEVEL_RANK[level] for level in levels]
        if any(b <= a for a, b in zip(ranks, ranks[1:], strict=False)):
            raise InvalidInputError(f"levels must go from coarse to fine ({' > '.join(LEVEL_RANK)}), got {levels!r}")
        object.__setattr__(self, "levels", tuple(levels))
        keep = self.keep
        if isinstance(keep, int | np.integer) and not isinstance(keep, bool):
            if keep < 1:
                raise InvalidInputError(f"keep as a count of spans must be >= 1, got {keep!r}")
        else:
            _check_real("keep", keep, positive=True)
            if keep > 1:
                raise InvalidInputError(f"keep as a fraction must be in (0, 1], got {keep!r}; an int keeps k spans")
        object.__setattr__(self, "inner", _inner_config(self.inner))

    def parameters(self) -> dict:
        return {
            "levels": list(self.levels),
            "keep": self.keep,
            "inner": self.inner.name,
            "inner_parameters": {k: v for k, v in self.inner.parameters().items() if k != "groups"},
        }

    def run(self, engine, encoded, plan, policy, progress, seed):
        n = encoded.ids.size
        parents = np.zeros(n, np.int64)
        active = np.ones(n, bool)
        matrix = errors = clean = None
        rows = positions = 0
        seconds = 0.0
        hierarchy = []
        for depth, level in enumerate(self.levels):
            groups = nested_groups(parents, np.asarray(engine.groups(level, encoded)), active)
            result = self._run_inner(engine, encoded, plan, policy, progress, seed, groups)
            values = np.asarray(result.matrix, np.float64)
            if matrix is None:
                matrix = np.zeros_like(values)
                clean = result.clean_scores
                has_errors = result.standard_error is not None
                errors = np.zeros_like(values) if has_errors else None
            matrix[active] = spread(values, groups)[active]
            if errors is not None:
                errors[active] = spread(np.asarray(result.standard_error, np.float64), groups)[active]
            rows += result.rows_run
            positions += result.token_positions
            seconds += result.seconds
            n_groups = int(groups.max()) + 1
            entry = {"level": level, "groups": n_groups, "rows": int(result.rows_run),
                     "token_positions": int(result.token_positions)}
            if depth + 1 < len(self.levels):
                # One row per group: the value every token of the group holds.
                first = np.array([np.flatnonzero(groups == g)[0] for g in range(n_groups)])
                kept = kept_spans(np.abs(values[first]).sum(axis=1), self.keep)
                entry["kept"] = len(kept)
                active = np.isin(groups, kept)
                parents = groups
            hierarchy.append(entry)
            if not active.any():
                break
        return HierarchicalResult(matrix, clean, errors, rows, positions, seconds, {"hierarchy": hierarchy})

    def _run_inner(self, engine, encoded, plan, policy, progress, seed, groups: np.ndarray):
        problem, session = engine.score_problem(encoded, plan)
        inner = self.inner
        baseline = engine.baseline_id(inner.baseline)
        if isinstance(inner, ShapleySampling):
            return _core.shapley_sampling(
                session, problem, groups.tolist(), baseline, inner.n_permutations, _seed(inner, seed),
                inner.max_evaluations or 0, inner.max_seconds or 0.0, [], policy, progress,
            )
        return _core.feature_ablation(session, problem, groups.tolist(), baseline, policy, progress)


def _inner_config(inner) -> Method:
    if isinstance(inner, str):
        if inner not in INNER_METHODS:
            raise InvalidInputError(f"inner must be one of {', '.join(INNER_METHODS)} or such a config, got {inner!r}")
        return ShapleySampling() if inner == "shapley_sampling" else FeatureAblation()
    if isinstance(inner, Occlusion):
        if inner.window != 1 or inner.stride != 1:
            raise InvalidInputError("an inner Occlusion replaces whole groups: window and stride must be 1")
        return FeatureAblation(baseline=inner.baseline)
    if isinstance(inner, FeatureAblation | ShapleySampling):
        if not (isinstance(inner.groups, str) and inner.groups == "token"):
            raise InvalidInputError("the inner method's groups are set by the levels: leave groups='token'")
        if isinstance(inner, ShapleySampling) and inner.permutations is not None:
            raise InvalidInputError("explicit permutations do not fit the changing groups of the levels")
        return inner
    raise InvalidInputError(
        f"inner must be one of {', '.join(INNER_METHODS)}, FeatureAblation, Occlusion or ShapleySampling, "
        f"got {type(inner).__name__}"
    )
