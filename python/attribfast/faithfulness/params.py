"""The parameters and metric names of a faithfulness evaluation."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import InvalidInputError
from ..methods.base import Groups, TokenBaseline, _check_groups, _check_positive, _check_token_baseline
from .math import ERASER_BINS, check_bins

# metric name -> what it reports (docs/faithfulness.md). The first four cost a bounded number of rows
# per target; the last two need leave-one-out occlusion (one row per feature).
METRICS = {
    "deletion": "score as the most (and least) relevant features are removed first; area under each curve",
    "insertion": "score as the most (and least) relevant features are put back first into an all-removed input",
    "comprehensiveness": "AOPC: mean score drop when the top-k% features are removed, over the bins",
    "sufficiency": "AOPC: mean score drop when only the top-k% features are kept, over the bins",
    "normalized_aopc": "comprehensiveness and sufficiency scaled by the best and worst evaluated orderings",
    "loo_spearman": "Spearman correlation of the relevance with leave-one-out occlusion drops",
}
DEFAULT_METRICS = ("deletion", "insertion", "comprehensiveness", "sufficiency")


def resolve_metrics(metrics) -> tuple[str, ...]:
    """Metric names in registry order: None = the defaults, "all" = every metric."""
    if metrics is None:
        return DEFAULT_METRICS
    if isinstance(metrics, str):
        metrics = tuple(METRICS) if metrics == "all" else (metrics,)
    try:
        names = [str(m) if isinstance(m, str) else m for m in metrics]
    except TypeError:
        raise InvalidInputError(f"metrics must be a name or a sequence of names, got {metrics!r}") from None
    if not names:
        raise InvalidInputError(f"metrics is empty (available: {', '.join(METRICS)})")
    for name in names:
        if name not in METRICS:
            raise InvalidInputError(f"unknown metric {name!r} (available: {', '.join(METRICS)}, or 'all')")
    return tuple(m for m in METRICS if m in names)


@dataclass(frozen=True)
class Faithfulness:
    """How to evaluate an attribution's faithfulness (docs/faithfulness.md).

    metrics: names from attribfast.faithfulness.METRICS, "all", or None (deletion, insertion,
        comprehensiveness, sufficiency: at most 44 rows per target whatever the length).
    points: even steps of the deletion and insertion curves, to which the bins' counts (and their
        mirrors n - k) are added: about 20 points by default (None: every feature count, exact).
    bins: ERASER's rationale sizes, percent of the features, each in (0, 100].
    baseline: the replacement token (None: the result's own token baseline, else the bundle's pad).
    groups: the features removed together, "token", "word" or ids per token (None: the result's
        own groups, else tokens). Special tokens are never removed.
    batch_size: rows per model run (None: chosen from the memory budget).
    reuse_prefix: causal LMs: rows reuse the clean input's key/value cache (as attribute's option).
    """

    metrics: tuple | str | None = None
    points: int | None = 12
    bins: tuple = ERASER_BINS
    baseline: TokenBaseline = None
    groups: Groups | None = None
    batch_size: int | None = None
    reuse_prefix: bool = True

    def __post_init__(self):
        object.__setattr__(self, "metrics", resolve_metrics(self.metrics))
        if self.points is not None:
            _check_positive("points", self.points, 2)
        object.__setattr__(self, "bins", check_bins(self.bins))
        _check_token_baseline(self.baseline)
        if self.groups is not None:
            _check_groups(self.groups)
            if not isinstance(self.groups, str):
                object.__setattr__(self, "groups", tuple(int(g) for g in self.groups))
        if self.batch_size is not None:
            _check_positive("batch_size", self.batch_size)
        if not isinstance(self.reuse_prefix, bool):
            raise InvalidInputError("reuse_prefix must be True or False")

    def as_dict(self) -> dict:
        out = asdict(self)
        out["metrics"] = list(self.metrics)
        out["bins"] = list(self.bins)
        if isinstance(self.groups, tuple):
            out["groups"] = list(self.groups)
        return out


def as_params(evaluate) -> Faithfulness:
    """A Faithfulness config from True, a metric name or list of names, or a config."""
    if isinstance(evaluate, Faithfulness):
        return evaluate
    if evaluate is True:
        return Faithfulness()
    if isinstance(evaluate, str | list | tuple):
        return Faithfulness(metrics=evaluate)
    raise InvalidInputError(f"evaluate must be True, metric names or an attribfast.Faithfulness, got {evaluate!r}")
