"""Validation of the prefix-reuse graphs against the full forward (torch), as the engine chains them:
the prefix graph on the clean row's first p tokens, sliced; the suffix graph on the rest of every row."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..tasks import Task
from ..tasks.prefix import PAST, PREFIX, SUFFIX
from .validation import CASES, example_inputs


def reuse_graphs(extras) -> bool:
    names = {extra.name for extra in extras}
    return PREFIX in names and SUFFIX in names


def validate_reuse(task: Task, model, score_module, bundle: Path, max_length: int) -> float:
    """Largest difference between the suffix graph's scores (past from the prefix graph) and torch's
    scores of the whole sequence (see reuse_cases)."""
    return run_reuse(task, reuse_cases(task, model, score_module, max_length), bundle)


def reuse_cases(task: Task, model, score_module, max_length: int) -> list:
    """The validation cases with prefix lengths from 1 to the shortest row's last scorable
    position, and torch's scores of the whole sequence. Rows of a case share their first p tokens,
    as the variants of one bucket share the clean prefix."""
    import torch

    embedding = model.get_input_embeddings()
    cases = []
    for seed, (batch, seq, n_targets, length) in enumerate(CASES):
        seq = min(seq, max_length)
        if seq < 3:
            continue
        length = max(min(length, seq - 2), 1)
        ids, mask, (positions, score_ids, weights) = example_inputs(
            task, model, batch, seq, n_targets, length, seed, True
        )
        shortest = int(mask.sum(1).min())
        for p in sorted({1, 2, shortest // 2, shortest - 2} - {0}):
            if not 1 <= p <= shortest - 2:
                continue
            shared = ids.clone()
            shared[:, :p] = ids[0, :p]
            # Scored positions from p on: the engine's boundaries stop before the first scored position.
            lengths = mask.sum(1, keepdim=True).unsqueeze(-1)
            local = p + positions % (lengths - 1 - p).clamp(min=1)
            with torch.no_grad():
                reference = score_module(embedding(shared), mask, local, score_ids, weights).numpy()
            targets = (local.numpy(), score_ids.numpy(), weights.numpy())
            cases.append((shared.numpy(), mask.numpy(), p, targets, reference))
    return cases


def run_reuse(task: Task, cases: list, bundle: Path) -> float:
    """The prefix graph on the clean row's first p tokens, sliced; the suffix graph on the rest of
    every row; one ONNX Runtime session at a time."""
    from .sessions import validation_session

    prefix = validation_session(bundle / f"{PREFIX}.onnx")
    pasts = []
    for ids, _, p, _, _ in cases:
        # The clean row's whole cache, sliced to the prefix, as the engine does.
        (present,) = prefix.run(None, {"input_ids": ids[:1], "attention_mask": np.ones_like(ids[:1])})
        pasts.append(present[0, :p])
    del prefix
    suffix = validation_session(bundle / f"{SUFFIX}.onnx")
    worst = 0.0
    for (ids, mask, p, targets, reference), past in zip(cases, pasts, strict=True):
        feeds = {"input_ids": ids[:, p:], "attention_mask": mask[:, p:], PAST: past}
        feeds.update(dict(zip(task.target_inputs, targets, strict=True)))
        (scores,) = suffix.run(None, feeds)
        worst = max(worst, float(np.abs(scores - reference).max()))
    return worst
