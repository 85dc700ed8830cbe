"""Integrated gradients over one text or many (a pooled corpus sweep), with the shared gradient graph.

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


def integrated_rounds(run, engine, inputs: list, n_steps: int, max_steps: int, adaptive: bool, allowed) -> list:
    """One core result per (encoded, plan) of inputs.

    run(jobs, n_steps, max_steps) -> results, jobs a list of (input index, problem, session): one
    pooled core call per session. allowed(result) -> the |delta| each target may have. Texts whose
    plan has no shared gradient (or that run fixed steps) take one call with every round; the others
    take their first round on the shared graph and their later rounds on the per-target graph.
    """
    out: list = [None] * len(inputs)
    split = [k for k, (_, plan) in enumerate(inputs)
             if adaptive and engine.shares_gradients() and plan.shared_gradient is not None]
    whole = sorted(set(range(len(inputs))) - set(split))
    if whole:
        jobs = [(k, *engine.gradient_problem(*inputs[k])) for k in whole]
        for k, result in zip(whole, run(jobs, n_steps, max_steps), strict=True):
            out[k] = result
    if not split:
        return out
    jobs = [(k, *engine.gradient_problem(*inputs[k])) for k in split]
    later = []  # (input index, targets still pending)
    for k, result in zip(split, run(jobs, n_steps, n_steps), strict=True):
        out[k] = result
        pending = np.flatnonzero(np.abs(np.asarray(result.delta)) > allowed(result))
        if pending.size and 2 * n_steps <= max_steps:
            later.append((k, pending))
    if later:
        jobs = [(k, *engine.gradient_problem(*inputs[k], only=pending.tolist())) for k, pending in later]
        for (k, pending), result in zip(later, run(jobs, 2 * n_steps, max_steps), strict=True):
            out[k] = _merge(out[k], result, pending)
    return out


def _merge(first, later, pending: np.ndarray) -> MergedResult:
    """The first round's result with the pending targets' columns from their later rounds."""
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


def pooled_by_session(call, jobs: list) -> list:
    """call(session, indexes, problems) -> results, once per core session of the jobs (input index,
    problem, session); the results in the jobs' order."""
    by_session: dict = {}
    for position, (k, problem, session) in enumerate(jobs):
        by_session.setdefault(id(session), (session, []))[1].append((position, k, problem))
    out: list = [None] * len(jobs)
    for session, members in by_session.values():
        results = call(session, [k for _, k, _ in members], [problem for _, _, problem in members])
        for (position, _, _), result in zip(members, results, strict=True):
            out[position] = result
    return out
