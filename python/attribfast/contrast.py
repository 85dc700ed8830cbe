"""Contrastive attribution: columns of score(target) - score(contrast), "why this rather than that".

Every method attribfast runs with aggregation "sum" is linear in the score function: occlusion and
ablation take differences of scores, Shapley sampling averages such differences over permutations,
KernelSHAP and LIME fit the scores by least squares on coalitions and weights that do not depend on
the scores, and integrated gradients / input x gradient sum gradients, which are linear. So the
attribution of score(a) - score(b) is exactly the attribution of a minus that of b when both come
from one sweep (same variants, permutations, samples, quadrature nodes). The contrast targets are
therefore planned as extra score columns of the same run, and the columns are combined here by a
weight matrix. Saliency (|gradient|), aggregation "l2" (a norm) and the squares of smoothgrad_sq and
vargrad are not linear: they refuse. SmoothGrad over a linear method and GradientSHAP share their noise
across the columns of a run, so they stay linear.
See docs/semantics.md, "Contrastive attribution".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from .errors import MethodNotAvailableError, TargetError

OTHERS = "others"


@dataclass(frozen=True)
class ContrastPlan:
    """items: what to plan (the targets, then the contrast targets that are not among them).
    weights [len(items), n_columns]: column j of the result is sum_i weights[i, j] * planned column i.
    against: per result column, the index of its contrast among items, or None for "others".
    names: the label of each item (known once the task has planned them)."""

    items: tuple
    weights: np.ndarray
    against: tuple
    names: tuple = ()


def plan_with_contrast(model, encoded, targets, contrast, generate, per_token, method):
    """(TargetPlan of the targets and the contrast targets together, ContrastPlan): one run scores both."""
    if targets is None:
        raise TargetError("contrast needs explicit targets (the top prediction is not known before the run)")
    if generate is not None or per_token:
        raise TargetError("contrast applies to whole targets; it cannot be combined with generate or per_token")
    check_linear(method)
    labels = None
    if isinstance(targets, Mapping):
        labels, items = [str(label) for label in targets], list(targets.values())
    else:
        items = [targets] if isinstance(targets, str | int | np.integer) else list(targets)
    if not items:
        raise TargetError("targets is empty")
    contrast_plan = plan_contrast(items, contrast)
    plan = model._plan_targets(encoded, list(contrast_plan.items), None)
    names = list(plan.labels)
    if labels is not None:
        names[: len(labels)] = labels
    return plan, replace(contrast_plan, names=tuple(names))


def apply_contrast(fields: dict, contrast_plan: ContrastPlan) -> dict:
    """The Attribution fields of the planned columns -> those of the contrastive columns."""
    combined = combine_columns(
        contrast_plan.weights,
        fields["matrix"],
        fields.get("target_scores"),
        fields.get("standard_errors"),
        fields.get("deltas"),
        fields.get("steps"),
    )
    names = contrast_plan.names
    against = tuple(OTHERS if i is None else names[i] for i in contrast_plan.against)
    targets = tuple(contrast_label(names[j], other) for j, other in enumerate(against))
    return {**fields, **combined, "targets": targets, "contrasts": against}


def plan_contrast(targets: list, contrast) -> ContrastPlan:
    """The plan for the target items (already a list) and the user's contrast: one target for every
    column, a list aligned with the targets, or "others" (the mean of the other targets' scores)."""
    n = len(targets)
    if isinstance(contrast, str) and contrast == OTHERS:
        if n < 2:
            raise TargetError('contrast="others" needs at least two targets')
        weights = np.full((n, n), -1.0 / (n - 1))
        np.fill_diagonal(weights, 1.0)
        return ContrastPlan(tuple(targets), weights, (None,) * n)
    if isinstance(contrast, str | int | np.integer) and not isinstance(contrast, bool):
        contrasts = [contrast] * n
    elif isinstance(contrast, list | tuple):
        contrasts = list(contrast)
        if len(contrasts) != n:
            raise TargetError(
                f"contrast has {len(contrasts)} entries for {n} targets; give one, a list of {n}, or 'others'"
            )
    else:
        raise TargetError(f"contrast must be a target, a list of targets or 'others', got {type(contrast).__name__}")
    items = list(targets)
    against = []
    for column, other in enumerate(contrasts):
        if isinstance(other, bool) or not isinstance(other, str | int | np.integer):
            raise TargetError(f"a contrast target must be a string or an integer, got {other!r}")
        if _same(other, targets[column]):
            raise TargetError(f"target {other!r} is contrasted with itself (the column would be 0)")
        index = next((i for i, item in enumerate(items) if _same(item, other)), None)
        if index is None:
            items.append(other)
            index = len(items) - 1
        against.append(index)
    weights = np.zeros((len(items), n))
    for column, index in enumerate(against):
        weights[column, column] = 1.0
        weights[index, column] = -1.0
    return ContrastPlan(tuple(items), weights, tuple(against))


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b


def _linear(name: str, parameters: dict) -> bool:
    """Saliency takes |gradient|, "l2" a norm, smoothgrad_sq and vargrad square: not linear."""
    if name == "smoothgrad" and (parameters.get("nt_type") != "smoothgrad" or parameters.get("method") == "saliency"):
        return False
    return name != "saliency" and parameters.get("aggregation", "sum") == "sum"


def check_linear(method) -> None:
    """Refuses methods whose attribution is not linear in the score (see the module docstring)."""
    if not _linear(method.name, method.parameters()):
        raise MethodNotAvailableError(
            f"contrast needs a method linear in the score; {method.name} with aggregation "
            f"{getattr(method, 'aggregation', 'sum')!r} takes an absolute value, a square or a norm per token, so "
            "attribution(a - b) is not attribution(a) - attribution(b). Use input_x_gradient, integrated_gradients "
            "or a perturbation method with aggregation='sum', or compare the two columns yourself"
        )


def check_linear_result(result) -> None:
    """check_linear for a finished result (its method name and parameters), and no normalisation:
    columns scaled by different factors do not subtract into the contrast's attribution."""
    aggregation = result.parameters.get("aggregation", "sum")
    if not _linear(result.method, result.parameters):
        raise MethodNotAvailableError(
            f"contrast needs a method linear in the score; {result.method} with aggregation {aggregation!r} is not "
            "(an absolute value, a square or a norm per token)"
        )
    if result.parameters.get("normalized"):
        raise MethodNotAvailableError("contrast the result before normalize(): its columns are scaled apart")


def combine_columns(weights: np.ndarray, matrix=None, scores=None, errors=None, deltas=None, steps=None) -> dict:
    """The combined arrays (None stays None). matrix, scores and IG deltas are linear: weights applied.
    Standard errors: the per-column ones do not give the error of a difference of correlated columns
    (one sweep, shared samples); sum_i |w_i| se_i bounds it (triangle inequality) and is reported.
    IG steps: the most any contributing column used."""
    weights = np.asarray(weights, np.float64)
    used = weights != 0
    out = {
        "matrix": None if matrix is None else np.asarray(matrix, np.float64) @ weights,
        "target_scores": None if scores is None else np.asarray(scores, np.float64) @ weights,
        "standard_errors": None if errors is None else np.asarray(errors, np.float64) @ np.abs(weights),
        "deltas": None if deltas is None else np.asarray(deltas, np.float64) @ weights,
        "steps": None,
    }
    if steps is not None:
        steps = np.asarray(steps, np.int64)
        out["steps"] = np.array([steps[used[:, j]].max() for j in range(weights.shape[1])], np.int64)
    return out


def contrast_label(target: str, against: str) -> str:
    """The column label of target contrasted with against: "target vs against"."""
    return f"{target} vs {against}"
