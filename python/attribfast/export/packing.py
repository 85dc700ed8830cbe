"""Validation of the packed graphs (ONNX Runtime, after export): packed scores must equal the
forward graph's unpacked scores, and the packed suffix graph after a cached prefix must equal the
packed graph, as the engine chains them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..tasks.packed import PACKED, PACKED_SUFFIX, pack_continuations
from ..tasks.prefix import PAST, PREFIX

# Continuation lengths of the check: one token (read nothing), longer than the prompt, uneven.
PIECE_SIZES = ((3, 1, 2, 4), (11, 2))
PROMPT_LENGTHS = (9, 6)


def validate_packing(vocab: int, bundle: Path, with_reuse: bool, tolerance: float, max_length: int) -> dict:
    """The manifest's packing note: available / reuse flags, the largest errors, a reason if not.
    A check that cannot run (ONNX Runtime refuses a graph) drops the graphs, never the export."""
    try:
        return _validate(vocab, bundle, with_reuse, tolerance, max_length)
    except Exception as e:  # noqa: BLE001 - any failure means the optional graphs are not kept
        return {"available": False, "reuse": False, "reason": f"the packed graphs failed their check: {str(e)[:500]}"}


def _validate(vocab: int, bundle: Path, with_reuse: bool, tolerance: float, max_length: int) -> dict:
    from .sessions import validation_session

    def session(name):
        return validation_session(bundle / f"{name}.onnx")

    rng = np.random.default_rng(5)
    # One ONNX Runtime session at a time (each holds its own copy of the weights): the unpacked
    # answers first, then the packed graph, then the prefix and packed suffix graphs.
    forward, problems = session("forward"), []
    # Sizes within the model's positions: prompt + longest continuation <= max_length.
    lengths = [max(2, min(n, max_length - 2 - k)) for k, n in enumerate(PROMPT_LENGTHS)]
    for sizes in PIECE_SIZES:
        pieces = [rng.integers(0, vocab, max(1, min(size, max_length - max(lengths) + 1))) for size in sizes]
        prompts = [rng.integers(0, vocab, n) for n in lengths]
        expected = [_unpacked(forward, prompt, pieces) for prompt in prompts]
        problems.append((prompts, [pack_continuations(prompt.size, pieces, 0) for prompt in prompts], expected))
    del forward
    packed, worst, cases = session(PACKED), 0.0, []
    for prompts, plans, expected in problems:
        # Two rows of different lengths in one batch: the shorter is right-padded, as the engine does.
        seq = max(p.size + len(plan.suffixes[0]) for p, plan in zip(prompts, plans, strict=True))
        ids = np.zeros((2, seq), np.int64)
        mask = np.zeros((2, seq), np.int64)
        for b, (prompt, plan) in enumerate(zip(prompts, plans, strict=True)):
            row = np.concatenate([prompt, plan.suffixes[0]])
            ids[b, : row.size], mask[b, : row.size] = row, 1
        extras = {name: np.concatenate([plan.extras[name][:1] for plan in plans]) for name in plans[0].extras}
        (scores,) = packed.run(None, {"input_ids": ids, "attention_mask": mask, **extras})
        worst = max(worst, float(np.abs(scores - np.stack(expected)).max()))
        cases.append((ids[:1, : prompts[0].size + len(plans[0].suffixes[0])], plans[0], scores[:1]))
    del packed
    note = {"available": worst <= tolerance, "error": worst, "reuse": False}
    if worst > tolerance:
        note["reason"] = f"packed scores differ from the unpacked forward by {worst:.3g}"
        return note
    if with_reuse:
        prefix, pasts = session(PREFIX), []
        for ids, plan, _ in cases:
            n = ids.shape[1] - len(plan.suffixes[0])
            (present,) = prefix.run(None, {"input_ids": ids[:, :n], "attention_mask": np.ones((1, n), np.int64)})
            pasts.append(present)
        del prefix
        suffix, error = session(PACKED_SUFFIX), 0.0
        for (ids, plan, scores), present in zip(cases, pasts, strict=True):
            n = ids.shape[1] - len(plan.suffixes[0])
            for p in sorted({1, n // 2, n - 1}):
                feeds = {"input_ids": ids[:, p:], "attention_mask": np.ones_like(ids[:, p:]), PAST: present[0, :p]}
                feeds.update({name: value[:1] for name, value in plan.extras.items()})
                (got,) = suffix.run(None, feeds)
                error = max(error, float(np.abs(got - scores).max()))
        note.update(reuse=error <= tolerance, reuse_error=error)
        if error > tolerance:
            note["reason"] = f"packed suffix scores differ from the packed forward by {error:.3g}"
    return note


def _unpacked(forward, prompt: np.ndarray, pieces: list[np.ndarray]) -> np.ndarray:
    """Each continuation's score from its own row of the forward graph."""
    n, out = prompt.size, []
    for piece in pieces:
        row = np.concatenate([prompt, piece[:-1]])[None]
        feeds = {
            "input_ids": row,
            "attention_mask": np.ones_like(row),
            "score_positions": (n - 1 + np.arange(piece.size)).reshape(1, 1, -1),
            "score_ids": piece.reshape(1, 1, -1).astype(np.int64),
            "score_weights": np.ones((1, 1, piece.size), np.float32),
        }
        out.append(forward.run(None, feeds)[0][0, 0])
    return np.asarray(out, np.float32)
