"""Targets that share one row of the shared-forward gradient graph (export/shared.py).

Each group is one row: its suffix and target inputs, and every target it holds is a score column
(a slot) of that row, whose gradient comes from the same forward. Classes and references share the
input as it is (one group); continuations share a packed row (tasks/packed.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .packed import OFFSETS, SEGMENTS, pack_continuations

GRAPH = "shared_gradient"
OUTPUT = "embeds_grads"


@dataclass
class SharedGradientPlan:
    """suffixes / extras: one row per group; target_group / target_slot: each target's row and column."""

    suffixes: list
    extras: dict
    target_group: list
    target_slot: list


def one_row(extras: dict, count: int) -> SharedGradientPlan | None:
    """All targets in one row without a suffix (classes, references); None for a single target,
    which the per-target gradient graph computes at the same cost."""
    if count < 2:
        return None
    return SharedGradientPlan([[]], extras, [0] * count, list(range(count)))


def packed_gradient_layout(n: int, pieces: list[np.ndarray], pad_id: int) -> SharedGradientPlan:
    """Continuations after a prompt of n tokens, packed as the perturbation methods pack them.
    Single-token continuations read nothing after the prompt; the packed graph still wants a suffix,
    so they get one pad token in a segment no query shares."""
    plan = pack_continuations(n, pieces, pad_id)
    extras = dict(plan.extras)
    suffixes = plan.suffixes
    if OFFSETS not in extras:
        count = extras["score_ids"].shape[1]
        extras[OFFSETS] = np.zeros((1, 1), np.int64)
        extras[SEGMENTS] = np.full((1, 1), count + 1, np.int64)
        suffixes = [[pad_id]]
    group, slot = [0] * len(pieces), [0] * len(pieces)
    for g, columns in enumerate(plan.column_targets):
        for j, k in enumerate(columns):
            if k >= 0:
                group[k], slot[k] = g, j
    return SharedGradientPlan(suffixes, extras, group, slot)
