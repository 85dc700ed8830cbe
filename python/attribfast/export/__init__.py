"""Exporting Hugging Face models to attribution bundles (needs torch and transformers).

Route: the task gives the module that computes its target scores from input embeddings (and its
extra graphs, e.g. next-token logits); one joint function (scores, their gradient with respect to
the input embeddings via torch.autograd.grad, the extra outputs) is traced with
make_fx(tracing_mode="symbolic"), exported once with dynamic batch, sequence and target axes, and
every bundle graph is carved out of it (trace.py). Symbolic tracing can silently specialise a
shape, so every export is validated against torch on several shapes (validate.py): that, not a
list of architectures, is the gate.

The function is `attribfast.export_model` (also `attribfast.export.export_model`); this module is
callable, so code written for 0.1 (`attribfast.export(model, task=..., out_dir=...)`) still works.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import platform
import resource
import shutil
import sys
import time
import types
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..bundle import MANIFEST, SCHEMA_VERSION, sha256_of
from ..errors import ExportError, OutputExistsError
from ..tasks import TASKS, get_task
from ..tasks.packed import PACKED, PACKED_SUFFIX
from ..tasks.prefix import PREFIX, SUFFIX
from .load import imports_frozen, load_model, torch_or_error
from .packing import validate_packing
from .reuse import reuse_cases, reuse_graphs, run_reuse
from .shared import SHARED, graph_io, loop_over_targets, ones_cotangent, shared_cases, source_of, validate_shared
from .validation import ExportTolerance, check_errors, example_inputs, reference_cases, run_cases, try_optimize

DEFAULT_OPSET = 18
# Above this many parameter bytes the weights go to one external data file that all graphs share
# (protobuf caps a file at 2 GiB, and three inline copies of large weights waste disk and memory).
EXTERNAL_DATA_THRESHOLD = 1 << 28
SCORE_KINDS = {name: task.score_kinds for name, task in TASKS.items()}


@imports_frozen
def export_model(
    model,
    *,
    task: str,
    out_dir: str | os.PathLike,
    tokenizer=None,
    score: str | None = None,
    max_length: int | None = None,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    tolerance: ExportTolerance | None = None,
    external_data: bool | None = None,
    optimize: bool = False,
    progress: Callable[[str], None] | None = None,
    prefix_reuse: bool = True,
    packed_targets: bool = True,
    shared_gradient: bool = True,
) -> Path:
    """Exports a Hugging Face model (or its local directory) to an attribution bundle.

    Args:
        model: a model directory, or a transformers PreTrainedModel.
        task: "causal-lm", "sequence-classification", "sentence-similarity" or "seq2seq" (an
            encoder-decoder model: T5, BART, Marian, mBART).
        out_dir: the bundle directory to create.
        tokenizer: a directory or fast tokenizer; defaults to the model directory.
        score: what a target's score is: "logprob" (default), "prob" or "logit" for causal LMs and seq2seq;
            "logit" (default), "logprob" or "prob" for classifiers; "cosine" for similarity.
        max_length: longest input the bundle accepts; defaults to the model's position limit.
        opset: ONNX opset of the graphs.
        overwrite: replace an existing out_dir.
        tolerance: validation limits (see ExportTolerance).
        external_data: store weights in one external file shared by the graphs; None decides by size.
        optimize: also try ONNX Runtime's offline graph optimisation and keep it only where the
            outputs stay within tolerance and it is faster.
        progress: called with a line of text at each step.
        prefix_reuse: causal LMs: also export the prefix and suffix_score graphs that let
            perturbation methods reuse the clean input's key/value cache (kept only where they trace
            and match the full forward). False skips them: a faster export and a smaller bundle.
        packed_targets: causal LMs: also export the packed score graphs, which score every
            continuation of a prompt from one row (kept only where the model honours a block mask
            and position ids, and the packed scores match the unpacked ones).
        shared_gradient: also export the shared_gradient graph, which returns the gradients of
            several targets (classes, references, packed continuations) from one forward (kept only
            where it matches the per-target gradient graph). False: a faster export.

    Returns the bundle path. Raises UnsupportedArchitectureError naming a missing capability, or
    ExportValidationError naming the graph that disagrees with torch and by how much.
    """
    task_name = task
    task = get_task(task_name)
    if task.name not in TASKS:
        raise ExportError(f"task {task.name!r} is for own ONNX models; it has no export")
    score = score or task.score_kinds[0]
    if score not in task.score_kinds:
        raise ExportError(f"score {score!r} does not apply to {task.name} (possible: {', '.join(task.score_kinds)})")
    tolerance = tolerance or ExportTolerance()
    say = progress or (lambda line: None)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise OutputExistsError(f"{out} already exists (use overwrite=True / --overwrite to replace it)")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    started = time.perf_counter()
    torch = torch_or_error()
    import onnx
    import transformers

    from .trace import COTANGENT, carve, trace_joint

    say("loading the model")
    model, tokenizer = load_model(model, task, tokenizer, say)
    config = model.config
    position_limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    max_length = int(max_length or position_limit or 512)
    if position_limit and max_length > position_limit:
        raise ExportError(f"max_length {max_length} exceeds the model's {position_limit} positions")
    if task.causal and min(11, max_length) <= 5:
        raise ExportError("max_length must be at least 6 to trace the graphs")
    score_module = task.score_module(model, score)
    extras = task.extra_graphs(model, score_module)
    embedding = model.get_input_embeddings()
    n_parameters = sum(p.numel() for p in model.parameters())
    external = external_data if external_data is not None else n_parameters * 4 > EXTERNAL_DATA_THRESHOLD

    out.mkdir(parents=True, exist_ok=True)
    # Distinct sizes above 1 keep symbolic tracing from merging or specialising dimensions.
    # A target_length axis is traced at 5 (a size 1 would be specialised away).
    ragged = any("target_length" in axes.values() for axes in task.target_input_axes().values())
    ids, mask, targets = example_inputs(task, model, 2, min(11, max_length), 3, 5 if ragged else 1, 0, True)
    extra_args = [extra.example(ids, mask) if extra.example is not None else () for extra in extras]
    reuse_note = {"available": reuse_graphs(extras)} if task.causal else None
    if not prefix_reuse and reuse_graphs(extras):
        extras, extra_args = _without_reuse(extras, extra_args)
        reuse_note = {"available": False, "reason": "not requested (prefix_reuse=False)"}
    packing_note = None
    if task.causal:
        packing_note = {"available": False, "reason": "not requested (packed_targets=False)"}
        if packed_targets:
            packed, reason = task.packed_graphs(model, score_module, reuse_graphs(extras), max_length)
            extras += packed
            extra_args += [extra.example(ids, mask) for extra in packed]
            packing_note = {"available": bool(packed), **({"reason": reason} if reason else {})}
            del packed  # its modules hold the model (released before validation)
    say("tracing and converting the graphs")
    source = source_of(task, PACKED in {extra.name for extra in extras}) if shared_gradient else None
    shared_note = {"available": False, "reason": "not requested (shared_gradient=False)" if not shared_gradient
                   else f"{task.name} targets do not share a row"}
    while True:
        try:
            example = (ids, mask, targets, extra_args)
            traced = trace_joint(task, model, score_module, extras, example, out, opset, external, source)
            break
        except ExportError as e:
            # The packed, shared-gradient and prefix-reuse graphs are optimisations: without them the
            # bundle still attributes. Retrace without the shared gradient, the packed suffix graph,
            # then the packed graph, then reuse.
            why = f"did not trace: {str(e)[:500]}"
            names = {extra.name for extra in extras}
            if source is not None:
                say("the shared gradient graph did not trace; exporting without it")
                shared_note = {"available": False, "reason": "the shared gradient graph " + why}
                source = None
            elif PACKED_SUFFIX in names:
                say("the packed suffix graph did not trace; exporting without it")
                packing_note = {**packing_note, "reuse": False, "reason": "the packed suffix graph " + why}
                extras, extra_args = _without_reuse(extras, extra_args, (PACKED_SUFFIX,))
            elif PACKED in names:
                say("the packed graph did not trace; exporting without it")
                packing_note = {"available": False, "reason": "the packed graph " + why}
                extras, extra_args = _without_reuse(extras, extra_args, (PACKED,))
            elif reuse_graphs(extras):
                say("the prefix-reuse graphs did not trace; exporting without them")
                reuse_note = {"available": False, "reason": "the cache path " + why}
                extras, extra_args = _without_reuse(extras, extra_args)
            else:
                raise
    say("writing " + ", ".join(["forward.onnx", "gradient.onnx", *(f"{e.name}.onnx" for e in extras)]))
    graphs = {
        "forward": (["input_ids", "attention_mask", *task.target_inputs], ["scores"]),
        "gradient": (["inputs_embeds", "attention_mask", *task.target_inputs], ["scores", "embeds_grad"]),
    }
    # (A comprehension: a loop variable would keep the last extra graph's module, and with it the
    # model, alive until validation.)
    graphs.update({
        extra.name: (
            ["input_ids", "attention_mask", *extra.inputs, *(task.target_inputs if extra.with_targets else ())],
            [extra.output],
        )
        for extra in extras
    })
    for name, (inputs, outputs) in graphs.items():
        cotangent = name == "gradient" and source == "scores"
        read = inputs + [COTANGENT] * cotangent
        carve(traced, out / f"{name}.onnx", read, outputs, from_ids=inputs[0] == "input_ids")
        if cotangent:
            ones_cotangent(out / "gradient.onnx", task.target_inputs[0])
    if source is not None:
        graphs[SHARED] = graph_io(task, source)
        shared_note = _carve_shared(traced, out, graphs, source, task.target_inputs[0])
    del traced

    say("writing the tokenizer and the embedding matrix")
    # Padding and truncation are attribfast's job (batching, explicit length errors), not the tokenizer's.
    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(out / "tokenizer.json"))
    # The embedding module's output per token id (models such as Gemma scale inside the module).
    with torch.no_grad():
        vocab = torch.arange(embedding.weight.shape[0])
        table = torch.cat([embedding(vocab[i : i + 8192]) for i in range(0, vocab.numel(), 8192)])
    np.save(out / "embeddings.npy", np.asarray(table.numpy(), np.float32))
    vocab_size, hidden_size = table.shape
    del table

    say("validating against torch")
    # torch's answers first; then, unless the optimisation below needs it, the torch model goes
    # before any ONNX Runtime session opens (each holds its own copy of the weights).
    references = reference_cases(task, model, score_module, extras, max_length)
    reuse_references = reuse_cases(task, model, score_module, max_length) if reuse_graphs(extras) else None
    architecture = (config.architectures or [type(model).__name__])[0]
    task_fields = task.manifest_fields(model, tokenizer)
    # The shared-gradient check compares two ONNX graphs; it needs the model only for its inputs.
    checks_of_shared = shared_cases(task, model, source, max_length) if SHARED in graphs else None
    if not optimize:
        extras = [types.SimpleNamespace(name=extra.name) for extra in extras]
        # Every name that reaches the model goes (the extra graphs' modules and example functions
        # close over it, in reference cycles), so that a large model's weights are freed before
        # ONNX Runtime loads its own copy. A collection costs ~0.5 s: not for small models.
        del model, score_module, embedding, extra_args, example
        if external:
            gc.collect()
    errors = run_cases(references, out)
    del references
    check_errors(errors, tolerance, extras)
    if reuse_references is not None:
        error = run_reuse(task, reuse_references, out)
        reuse_note = {"available": error <= tolerance.scores, "error": error}
        if error > tolerance.scores:
            # Wrong reuse graphs must not be used; the bundle keeps the exact no-reuse path.
            say(f"the prefix-reuse graphs differ from the full forward by {error:.3g}; dropping them")
            reuse_note["reason"] = f"differs from the full forward by {error:.3g}"
            for name in (PREFIX, SUFFIX, PACKED_SUFFIX):
                if name in graphs:
                    (out / f"{name}.onnx").unlink()
                    del graphs[name]
            extras, _ = _without_reuse(extras, [()] * len(extras))
    if PACKED in graphs:
        packing_note = validate_packing(vocab_size, out, PACKED_SUFFIX in graphs, tolerance.scores, max_length)
        # Wrong packed graphs must not be used: the bundle keeps the unpacked plan.
        for name in (PACKED, PACKED_SUFFIX):
            if name in graphs and not packing_note["reuse" if name == PACKED_SUFFIX else "available"]:
                say(f"dropping {name}.onnx: {packing_note.get('reason', '')}")
                (out / f"{name}.onnx").unlink()
                del graphs[name]

    if SHARED in graphs:
        if PACKED in graphs or not task.causal:
            shared_note = validate_shared(checks_of_shared, out, tolerance)
        else:
            shared_note = {"available": False, "reason": "the packed graph was dropped"}
        if not shared_note["available"]:
            # Wrong shared gradients must not be used: the engine keeps a row per target.
            say(f"dropping {SHARED}.onnx: {shared_note['reason']}")
            (out / f"{SHARED}.onnx").unlink()
            del graphs[SHARED]

    optimization = None
    if optimize:
        say("trying ONNX Runtime's offline optimisation")
        optimization = try_optimize(task, model, score_module, extras, out, max_length, tolerance)

    manifest = {
        "schema_version": SCHEMA_VERSION,
        "task": task.name,
        "score": score,
        "architecture": architecture,
        "model_type": config.model_type,
        "hidden_size": int(hidden_size),
        "vocab_size": int(vocab_size),
        "num_heads": int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_head", 0) or 1),
        "num_layers": int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layer", 0) or 1),
        "special_tokens": _special_tokens(tokenizer),
        "special_ids": sorted({int(i) for i in tokenizer.all_special_ids}),
        "max_length": max_length,
        "causal": task.causal,
        "labels": None,
        "opset": opset,
        "graphs": {
            name: {"file": f"{name}.onnx", "inputs": inputs, "outputs": outputs}
            for name, (inputs, outputs) in graphs.items()
        },
        "tokenizer": "tokenizer.json",
        "embeddings": "embeddings.npy",
        "export_errors": errors,
        "tolerance": asdict(tolerance),
        "optimization": optimization,
        "prefix_reuse": reuse_note,
        "packing": packing_note,
        "shared_gradient": shared_note,
        "versions": {
            "attribfast": _version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnx": onnx.__version__,
            "python": platform.python_version(),
        },
    }
    manifest.update(task_fields)
    manifest["export_seconds"] = round(time.perf_counter() - started, 2)
    manifest["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    manifest["files"] = {f.name: sha256_of(f) for f in sorted(out.iterdir()) if f.is_file() and f.name != MANIFEST}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    say(f"done in {manifest['export_seconds']} s, peak memory {manifest['peak_memory_mb']} MB")
    return out


def _carve_shared(traced, out: Path, graphs: dict, source: str, target: str) -> dict:
    """Writes shared_gradient.onnx (export/shared.py), or leaves it out and says why."""
    from .trace import COTANGENT, COTANGENT_GRAD, carve

    inputs, _ = graphs[SHARED]
    path = out / f"{SHARED}.onnx"
    grad = "embeds_grad" if source == "scores" else COTANGENT_GRAD
    try:
        carve(traced, path, [*inputs, COTANGENT], [source, grad], from_ids=False)
        loop_over_targets(path, source, grad, target)
    except Exception as e:  # noqa: BLE001 - an optional graph: the bundle attributes without it
        path.unlink(missing_ok=True)
        del graphs[SHARED]
        return {"available": False, "reason": f"the shared gradient graph could not be built: {str(e)[:500]}"}
    return {"available": True}


def _without_reuse(extras, extra_args, dropped=(PREFIX, SUFFIX, PACKED_SUFFIX)):
    kept = [k for k, extra in enumerate(extras) if extra.name not in dropped]
    return [extras[k] for k in kept], [extra_args[k] for k in kept]


def _special_tokens(tokenizer) -> dict:
    def token_id(name):
        value = getattr(tokenizer, f"{name}_token_id", None)
        return int(value) if value is not None else None

    return {name: token_id(name) for name in ("pad", "mask", "unk", "bos", "eos", "cls", "sep")}


def _version() -> str:
    from .. import __version__

    return __version__


class _CallableModule(types.ModuleType):
    """`attribfast.export(...)` keeps working: calling the module calls export_model."""

    def __call__(self, *args, **kwargs) -> Path:
        return export_model(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["DEFAULT_OPSET", "SCORE_KINDS", "ExportTolerance", "export_model"]
