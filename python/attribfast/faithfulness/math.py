"""Pure math of the faithfulness metrics: feature orderings, removal counts, curve areas, AOPC,
rank correlation. Plain functions over numpy arrays, exactly tested (tests/test_faithfulness.py).

Conventions (docs/faithfulness.md): a "feature" is a group of tokens removed together (a token, or
a word); removing it replaces its tokens by the baseline token. Features are ranked by relevance,
most relevant first, ties by position (a stable sort), so every ordering is reproducible.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidInputError

# ERASER's bins (DeYoung et al., 2020): the share of features, in percent, in the rationale.
ERASER_BINS = (1.0, 5.0, 10.0, 20.0, 50.0)


def feature_relevance(column: np.ndarray, groups: np.ndarray, n_features: int, reduce: str = "sum") -> np.ndarray:
    """Relevance of each feature [n_features] from a per-token column: the sum of its tokens' values
    ("sum"), or their mean ("mean": for methods that already gave every token its group's value).
    Tokens of group -1 belong to no feature."""
    column = np.asarray(column, np.float64)
    inside = groups >= 0
    total = np.bincount(groups[inside], weights=column[inside], minlength=n_features)
    if reduce == "sum":
        return total
    if reduce == "mean":
        return total / np.maximum(np.bincount(groups[inside], minlength=n_features), 1)
    raise InvalidInputError(f"reduce must be 'sum' or 'mean', got {reduce!r}")


def ranking(relevance: np.ndarray) -> np.ndarray:
    """Feature indices, most relevant first; ties keep their position order."""
    return np.argsort(-np.asarray(relevance, np.float64), kind="stable")


def removal_counts(n_features: int, points: int | None, extra=()) -> np.ndarray:
    """The numbers of removed features at which curves are sampled, ascending, 0 and n included.

    points=None: every count 0..n (the exact curve). Else `points` even steps, k_j = round(j n / points)
    (halves up) for j <= points / 2, plus the `extra` counts (the AOPC bins, so that they are read
    off the curves' rows), closed under k -> n - k: the grid is symmetric, so an insertion curve
    reuses the deletion curve's variants.
    """
    if n_features < 1:
        raise InvalidInputError("the input has no features to remove")
    if points is None or points >= n_features:
        return np.arange(n_features + 1, dtype=np.int64)
    lower = [math.floor(j * n_features / points + 0.5) for j in range(points // 2 + 1)]
    lower += [int(k) for k in extra]
    counts = set(lower) | {n_features - k for k in lower}
    return np.array(sorted(counts), dtype=np.int64)


def check_bins(bins) -> tuple[float, ...]:
    """Bins as floats in (0, 100], else InvalidInputError."""
    try:
        values = tuple(float(b) for b in bins)
    except (TypeError, ValueError):
        raise InvalidInputError(f"bins must be a sequence of percentages, got {bins!r}") from None
    if not values:
        raise InvalidInputError("bins must hold at least one percentage")
    for value, given in zip(values, bins, strict=True):
        if isinstance(given, bool) or not 0.0 < value <= 100.0:
            raise InvalidInputError(f"bins must be percentages in (0, 100], got {given!r}")
    return values


def bin_counts(n_features: int, bins) -> np.ndarray:
    """Features in each bin's rationale: ceil(b% of n), at least 1; repeated counts once (a rationale
    that equals the previous one is not averaged twice, as in ferret)."""
    if n_features < 1:
        raise InvalidInputError("the input has no features to remove")
    counts = []
    for b in check_bins(bins):
        # The small tolerance keeps e.g. 10% of 30 at 3, not 4 from float rounding.
        k = min(max(math.ceil(b * n_features / 100.0 - 1e-9), 1), n_features)
        if k not in counts:
            counts.append(k)
    return np.array(counts, dtype=np.int64)


def curve_area(fractions: np.ndarray, values: np.ndarray) -> float:
    """The trapezoid area under values over x = fraction of features removed (or inserted), in [0, 1]."""
    x = np.asarray(fractions, np.float64)
    y = np.asarray(values, np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def aopc(clean: float, perturbed: np.ndarray) -> float:
    """Area over the perturbation curve at the bins: the mean of clean - perturbed score."""
    return float(np.mean(clean - np.asarray(perturbed, np.float64)))


def normalized(value: float, candidates, higher_is_better: bool) -> float:
    """value scaled into [0, 1] by the best and worst of candidates (which include value): 1 = as good
    as the best evaluated ordering, 0 = as bad as the worst. All equal: 1 (none does better)."""
    values = np.asarray(list(candidates), np.float64)
    best, worst = (values.max(), values.min()) if higher_is_better else (values.min(), values.max())
    span = abs(best - worst)
    if span <= 1e-12 * max(1.0, abs(best)):
        return 1.0
    return float(abs(value - worst) / span)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given the mean of the ranks they span."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    ranks = np.empty(values.size, np.float64)
    start = 0
    while start < values.size:
        end = start
        while end + 1 < values.size and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (Pearson's of the average ranks). 0 where either side has no
    spread (a constant attribution orders nothing) or there are fewer than two features."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.size != b.size:
        raise InvalidInputError(f"spearman needs equal lengths, got {a.size} and {b.size}")
    if a.size < 2:
        return 0.0
    ra, rb = average_ranks(a) - (a.size + 1) / 2.0, average_ranks(b) - (b.size + 1) / 2.0
    denominator = math.sqrt(float(np.dot(ra, ra)) * float(np.dot(rb, rb)))
    if denominator == 0.0:
        return 0.0
    return float(np.dot(ra, rb) / denominator)
