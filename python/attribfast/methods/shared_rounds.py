"""Adaptive integrated gradients on the shared gradient graph.

A row of the shared graph runs the backward of every target it holds, so a later adaptive round
for one unconverged target of five would pay four backward passes for nothing. The first round
(every target at n_steps) runs on the shared graph; the targets that did not converge run their
later rounds (2 n_steps, doubling up to max_steps) on the per-target gradient graph. The rounds
are independent (each round recomputes its target's path), so the result is the single-graph one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MergedResult:
    """The fields of a core AttributionResult that results are built from."""

    matrix: np.ndarray
    clean_scores: np.ndarray
    baseline_scores: np.ndarray
    delta: np.ndarray
    steps: np.ndarray
    rows_run: int
    token_positions: int
    seconds: float
    standard_error: None = None


def shared_then_per_target(run, engine, encoded, plan, n_steps: int, max_steps: int, absolute: float,
                           relative: float):
    """run(problem, session, n_steps, max_steps) -> core result. The first round on the shared
    graph, the later rounds of the targets that need them on the per-target graph."""
    first = run(*engine.gradient_problem(encoded, plan), n_steps, n_steps)
    allowed = absolute + relative * np.abs(first.clean_scores - first.baseline_scores)
    pending = np.flatnonzero(np.abs(first.delta) > allowed)
    if pending.size == 0 or 2 * n_steps > max_steps:
        return first
    later = run(*engine.gradient_problem(encoded, plan, only=pending.tolist()), 2 * n_steps, max_steps)
    merged = MergedResult(
        matrix=np.array(first.matrix),
        clean_scores=np.array(first.clean_scores),
        baseline_scores=np.array(first.baseline_scores),
        delta=np.array(first.delta),
        steps=np.array(first.steps),
        rows_run=first.rows_run + later.rows_run,
        token_positions=first.token_positions + later.token_positions,
        seconds=first.seconds + later.seconds,
    )
    merged.matrix[:, pending] = later.matrix
    for name in ("clean_scores", "baseline_scores", "delta", "steps"):
        getattr(merged, name)[pending] = getattr(later, name)
    return merged
