"""The gate of every export: the graphs run under onnxruntime on several shapes, with padding, and
must agree with torch; and the optional offline optimisation, kept only where it is exact and faster."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ExportValidationError
from ..tasks import Task


@dataclass(frozen=True)
class ExportTolerance:
    """Largest accepted differences between ONNX Runtime and torch during validation.

    scores: absolute, on the target scores. gradients: max-abs difference relative to the max-abs
    of torch's gradient.
    """

    scores: float = 1e-4
    gradients: float = 1e-3


# (batch, sequence, targets, target length) of the validation cases.
CASES = ((1, 4, 1, 1), (3, 13, 2, 3), (4, 9, 3, 2), (2, 2, 1, 1))


def example_inputs(task: Task, model, batch: int, seq: int, n_targets: int, length: int, seed: int, padded: bool):
    """Random but valid inputs: ids, mask (with right padding if asked) and the task's targets."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (batch, seq), generator=generator)
    mask = torch.ones(batch, seq, dtype=torch.long)
    lengths = [seq] * batch
    if padded and batch > 1:
        for b in range(1, batch):
            lengths[b] = max(length + 1, seq - b * 2)
            mask[b, lengths[b] :] = 0
    return ids, mask, task.example_targets(model, lengths, n_targets, length, generator)


def validate(task: Task, model, score_module, extras, bundle: Path, max_length: int) -> dict:
    """Largest differences to torch: forward and gradient scores, relative gradients, extra graphs."""
    return run_cases(reference_cases(task, model, score_module, extras, max_length), bundle)


@dataclass(frozen=True)
class References:
    """torch's answers for the validation cases, computed before any ONNX Runtime session opens
    (so that the exporter can release the torch model first)."""

    graphs: tuple
    cases: tuple
    errors: dict


def reference_cases(task: Task, model, score_module, extras, max_length: int) -> References:
    """The feeds of every graph and torch's answers (and the score module's error against the
    model's own forward)."""
    import torch

    embedding = model.get_input_embeddings()
    checked = [extra for extra in extras if extra.validated]
    errors = {"forward_scores": 0.0, "gradient_scores": 0.0, "gradients": 0.0, "auxiliary": 0.0}
    cases = []
    for seed, (batch, seq, n_targets, length) in enumerate(CASES):
        seq = min(seq, max_length)
        length = max(min(length, seq - 1) if task.causal else length, 1)
        ids, mask, targets = example_inputs(task, model, batch, seq, n_targets, length, seed, True)
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        feeds.update({name: t.numpy() for name, t in zip(task.target_inputs, targets, strict=True)})
        embeds = embedding(ids).detach()
        with torch.no_grad():
            reference = score_module(embeds, mask, *targets).numpy()
            check = getattr(task, "model_scores", None)
            if check is not None:
                full = check(model, embeds, mask, *targets, score_module=score_module)
                errors["model_forward"] = max(errors.get("model_forward", 0.0), float(np.abs(full - reference).max()))
            from_ids = getattr(task, "model_scores_from_ids", None)
            if from_ids is not None:
                full = from_ids(model, ids, mask, *targets, score_module=score_module)
                errors["model_forward"] = max(errors.get("model_forward", 0.0), float(np.abs(full - reference).max()))
        leaf = embeds.clone().requires_grad_(True)
        with torch.enable_grad():
            (grad_reference,) = torch.autograd.grad(score_module(leaf, mask, *targets).sum(), leaf)
        extra_cases = {}
        for extra in checked:
            args = extra.example(ids, mask) if extra.example is not None else ()
            with torch.no_grad():
                expected = extra.module(embeds, mask, *args).numpy()
            extra_feeds = {"input_ids": feeds["input_ids"], "attention_mask": feeds["attention_mask"]}
            extra_feeds.update({name: a.numpy() for name, a in zip(extra.inputs, args, strict=True)})
            extra_cases[extra.name] = (extra_feeds, expected)
        cases.append((feeds, embeds.numpy(), reference, grad_reference.numpy(), extra_cases))
    graphs = ("forward", "gradient", *(extra.name for extra in checked))
    return References(graphs, tuple(cases), errors)


def run_cases(references: References, bundle: Path) -> dict:
    """Largest differences between the bundle's graphs and torch's answers. One ONNX Runtime
    session at a time, so that large models hold one copy of the weights in ORT, not one per graph."""
    from .sessions import validation_session

    errors = dict(references.errors)

    def worst(key, got, expected, scale=1.0):
        errors[key] = max(errors[key], float(np.abs(got - expected).max()) / scale)

    for name in references.graphs:
        session = validation_session(bundle / f"{name}.onnx")
        for feeds, embeds, reference, grad_reference, extra_cases in references.cases:
            if name == "forward":
                worst("forward_scores", session.run(None, feeds)[0], reference)
            elif name == "gradient":
                grad_feeds = {key: value for key, value in feeds.items() if key != "input_ids"}
                scores, grads = session.run(None, {**grad_feeds, "inputs_embeds": embeds})
                worst("gradient_scores", scores, reference)
                worst("gradients", grads, grad_reference, max(float(np.abs(grad_reference).max()), 1e-12))
            else:
                extra_feeds, expected = extra_cases[name]
                worst("auxiliary", session.run(None, extra_feeds)[0], expected)
        del session
    return errors


def check_errors(errors: dict, tolerance: ExportTolerance, extras) -> None:
    """Raises ExportError naming each graph that disagrees with torch, and by how much."""
    aux = ", ".join(f"{extra.name}.onnx" for extra in extras) or "extra graphs"
    limits = (
        ("forward_scores", "forward.onnx scores", tolerance.scores),
        ("gradient_scores", "gradient.onnx scores", tolerance.scores),
        ("gradients", "gradient.onnx gradients (relative)", tolerance.gradients),
        ("auxiliary", aux, tolerance.scores),
        ("model_forward", "the score module against the model's own forward (torch)", tolerance.scores),
    )
    failures = [
        f"{what} differ by {errors[key]:.3g} > {limit:.3g}"
        for key, what, limit in limits
        if errors.get(key, 0.0) > limit
    ]
    if failures:
        raise ExportValidationError("exported graphs disagree with torch: " + "; ".join(failures), errors)


def try_optimize(task: Task, model, score_module, extras, out: Path, max_length: int, tolerance) -> dict:
    """Rewrites the graphs with ORT's basic-level offline optimisation where it helps and stays exact."""
    import onnxruntime

    report = {}
    for name in ("forward", "gradient"):
        original = out / f"{name}.onnx"
        candidate = out / f"{name}.optimized.onnx"
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(candidate)
        onnxruntime.InferenceSession(str(original), options, providers=["CPUExecutionProvider"])
        before = _time_graph(original, task, model, max_length)
        after = _time_graph(candidate, task, model, max_length)
        backup = out / f"{name}.unoptimized.onnx"
        original.rename(backup)
        candidate.rename(original)
        try:
            errors = validate(task, model, score_module, extras, out, max_length)
            exact = errors["forward_scores"] <= tolerance.scores and errors["gradients"] <= tolerance.gradients
        except Exception:
            exact = False
        kept = exact and after < before
        if kept:
            backup.unlink()
        else:
            original.replace(candidate)
            backup.rename(original)
            candidate.unlink()
        report[name] = {
            "kept": kept,
            "seconds_before": before,
            "seconds_after": after,
            "speedup": round(before / after, 3) if after > 0 else None,
        }
    return report


def _time_graph(path: Path, task: Task, model, max_length: int) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids, mask, targets = example_inputs(task, model, 8, min(32, max_length), 2, 2, 0, False)
    feeds = {"attention_mask": mask.numpy()}
    feeds.update({n: t.numpy() for n, t in zip(task.target_inputs, targets, strict=True)})
    first = session.get_inputs()[0].name
    feeds[first] = ids.numpy() if first == "input_ids" else model.get_input_embeddings()(ids).detach().numpy()
    session.run(None, feeds)
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        session.run(None, feeds)
        timings.append(time.perf_counter() - start)
    return float(np.median(timings))
