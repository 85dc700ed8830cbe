"""Exporting Hugging Face models to attribution bundles (needs torch and transformers).

Route: a module computing the target scores (and, for the gradient graph, the scores and their
gradient with respect to the input embeddings via torch.autograd.grad) is traced with
make_fx(tracing_mode="symbolic") and the core ATen decompositions, then the traced graph is exported
with torch.onnx.export(dynamo=True) with dynamic batch, sequence and target axes. Symbolic tracing
can silently specialise a shape, so every export is validated against torch on several shapes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import platform
import resource
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .bundle import MANIFEST, SCHEMA_VERSION, TARGET_INPUTS, TASKS, sha256_of
from .errors import (
    ExportError,
    MissingTokenizerError,
    OutputExistsError,
    UnknownTaskError,
    UnsupportedArchitectureError,
)

# Architectures whose export is tested, per task.
SUPPORTED_MODEL_TYPES = {
    "causal-lm": ("gpt2", "llama"),
    "sequence-classification": ("bert",),
    "sentence-similarity": ("bert",),
}
SCORE_KINDS = {
    "causal-lm": ("logprob", "prob", "logit"),
    "sequence-classification": ("logit", "logprob", "prob"),
    "sentence-similarity": ("cosine",),
}
DEFAULT_OPSET = 18
# Above this many parameter bytes the weights go to external data files (protobuf caps at 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1 << 30


@dataclass(frozen=True)
class ExportTolerance:
    """Largest accepted differences between ONNX Runtime and torch during validation.

    scores: absolute, on the target scores. gradients: max-abs difference relative to the max-abs
    of torch's gradient.
    """

    scores: float = 1e-4
    gradients: float = 1e-3


def _torch():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ExportError("export needs torch and transformers: pip install 'attribfast[export]'") from e
    return torch


def _score_modules(model, task: str, score: str):
    """The score module (inputs_embeds, attention_mask, *targets) -> scores [batch, n_targets], and
    the task's auxiliary module: next-token logits for causal LMs, sentence embeddings for similarity."""
    torch = _torch()

    class CausalLMScore(torch.nn.Module):
        # Hidden states are gathered at the scored positions before the LM head, so the head's
        # cost is paid only for the targets, never for the whole vocabulary at every position.
        def __init__(self):
            super().__init__()
            self.base = model.base_model
            self.head = model.get_output_embeddings()

        def forward(self, inputs_embeds, attention_mask, score_positions, score_ids, score_weights):
            hidden = self.base(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False
            ).last_hidden_state
            b, t, n = score_positions.shape
            index = score_positions.reshape(b, t * n, 1).expand(b, t * n, hidden.shape[-1])
            logits = self.head(torch.gather(hidden, 1, index))
            picked = torch.gather(logits, 2, score_ids.reshape(b, t * n, 1)).reshape(b, t, n)
            if score == "logit":
                return (picked * score_weights).sum(-1)
            log_probs = picked - torch.logsumexp(logits, dim=-1).reshape(b, t, n)
            total = (log_probs * score_weights).sum(-1)
            return total if score == "logprob" else torch.exp(total)

    class ClassifierScore(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, inputs_embeds, attention_mask, target_classes):
            logits = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits
            if score == "logprob":
                logits = torch.log_softmax(logits, dim=-1)
            elif score == "prob":
                logits = torch.softmax(logits, dim=-1)
            return torch.gather(logits, 1, target_classes)

    class SentenceEmbedding(torch.nn.Module):
        # Mean pooling over the mask, then L2 normalisation, as sentence-transformers does.
        def __init__(self):
            super().__init__()
            self.base = model.base_model

        def forward(self, inputs_embeds, attention_mask):
            hidden = self.base(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=-1)

    class SimilarityScore(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = SentenceEmbedding()

        def forward(self, inputs_embeds, attention_mask, reference_embeddings):
            embedding = self.embed(inputs_embeds, attention_mask)
            reference = torch.nn.functional.normalize(reference_embeddings, p=2, dim=-1)
            return (reference @ embedding.unsqueeze(-1)).squeeze(-1)

    class NextTokenLogits(torch.nn.Module):
        # Full-vocabulary logits at one position per row: only used to generate targets greedily.
        def __init__(self):
            super().__init__()
            self.base = model.base_model
            self.head = model.get_output_embeddings()

        def forward(self, inputs_embeds, attention_mask, positions):
            hidden = self.base(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False
            ).last_hidden_state
            index = positions.reshape(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
            return self.head(torch.gather(hidden, 1, index).squeeze(1))

    if task == "causal-lm":
        return CausalLMScore().eval(), NextTokenLogits().eval()
    if task == "sequence-classification":
        return ClassifierScore().eval(), None
    similarity = SimilarityScore().eval()
    return similarity, similarity.embed


def _example_inputs(task: str, model, batch: int, seq: int, n_targets: int, length: int, seed: int, padded: bool):
    """Random but valid inputs: ids, mask (with right padding if asked) and targets."""
    torch = _torch()
    generator = torch.Generator().manual_seed(seed)
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (batch, seq), generator=generator)
    mask = torch.ones(batch, seq, dtype=torch.long)
    lengths = [seq] * batch
    if padded and batch > 1:
        for b in range(1, batch):
            lengths[b] = max(length + 1, seq - b * 2)
            mask[b, lengths[b] :] = 0
    if task == "causal-lm":
        positions = torch.stack(
            [torch.randint(0, lengths[b] - 1, (n_targets, length), generator=generator) for b in range(batch)]
        )
        score_ids = torch.randint(0, vocab, (batch, n_targets, length), generator=generator)
        weights = torch.ones(batch, n_targets, length)
        weights[:, :, -1] = 0.5  # non-trivial weights exercise the reduction
        targets = (positions, score_ids, weights)
    elif task == "sequence-classification":
        targets = (torch.randint(0, model.config.num_labels, (batch, n_targets), generator=generator),)
    else:
        hidden = model.config.hidden_size
        targets = (torch.randn(batch, n_targets, hidden, generator=generator),)
    return ids, mask, targets


def _trace_and_export(fn, args, input_names, output_names, dynamic, path: Path, opset: int, external: bool):
    torch = _torch()
    from torch._decomp import core_aten_decompositions
    from torch.fx.experimental.proxy_tensor import make_fx

    with warnings.catch_warnings():
        # torch's tracer and exporter warn about their own internals; nothing a user can act on.
        warnings.simplefilter("ignore")
        traced = make_fx(
            fn,
            tracing_mode="symbolic",
            decomposition_table=core_aten_decompositions(),
            _allow_non_fake_inputs=True,
        )(*args)

    class Traced(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.graph_module = traced

        def forward(self, *inputs):
            return self.graph_module(*inputs)

    dims = {}
    shapes = []
    for name in input_names:
        axes = {}
        for axis, dim_name in dynamic.get(name, {}).items():
            dims.setdefault(dim_name, torch.export.Dim(dim_name, min=1))
            axes[axis] = dims[dim_name]
        shapes.append(axes or None)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            Traced().eval(),
            tuple(args),
            dynamo=True,
            dynamic_shapes=(tuple(shapes),),
            input_names=list(input_names),
            output_names=list(output_names),
            opset_version=opset,
            verbose=False,
        )
        program.save(str(path), external_data=external)


def _dynamic_axes(task: str, embeds: bool) -> dict:
    first = "inputs_embeds" if embeds else "input_ids"
    axes = {first: {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    if task == "causal-lm":
        for name in TARGET_INPUTS[task]:
            axes[name] = {0: "batch", 1: "targets", 2: "target_length"}
    else:
        axes[TARGET_INPUTS[task][0]] = {0: "batch", 1: "targets"}
    return axes


def _load(model_or_dir, task: str, tokenizer):
    torch = _torch()
    import transformers

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if isinstance(model_or_dir, str | os.PathLike):
        model_dir = Path(model_or_dir)
        if not (model_dir / "config.json").is_file():
            raise ExportError(f"{model_dir} is not a Hugging Face model directory (no config.json)")
        tokenizer = tokenizer if tokenizer is not None else model_dir
        auto = {
            "causal-lm": transformers.AutoModelForCausalLM,
            "sequence-classification": transformers.AutoModelForSequenceClassification,
            "sentence-similarity": transformers.AutoModel,
        }[task]
        config = transformers.AutoConfig.from_pretrained(model_dir, local_files_only=True)
        _check_architecture(config, task)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = auto.from_pretrained(
                model_dir, local_files_only=True, attn_implementation="eager", dtype=torch.float32
            )
    elif isinstance(model_or_dir, torch.nn.Module):
        model = model_or_dir
        if not hasattr(model, "config"):
            raise UnsupportedArchitectureError(
                "export takes a Hugging Face model (a PreTrainedModel with a config) or its directory"
            )
        _check_architecture(model.config, task)
        model.config._attn_implementation = "eager"
        if tokenizer is None:
            raise MissingTokenizerError("exporting a module needs tokenizer= (a directory or a fast tokenizer)")
    else:
        raise ExportError(f"cannot export {type(model_or_dir).__name__}: give a model directory or a module")
    if isinstance(tokenizer, str | os.PathLike):
        tokenizer = _load_tokenizer(Path(tokenizer))
    if not hasattr(tokenizer, "backend_tokenizer"):
        raise MissingTokenizerError("the tokenizer must be a fast (tokenizers-backed) tokenizer")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval().float(), tokenizer


def _load_tokenizer(folder: Path):
    import transformers

    names = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")
    if not any((folder / name).is_file() for name in names):
        raise MissingTokenizerError(f"{folder} has no tokenizer files ({', '.join(names)})")
    try:
        return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as e:
        raise MissingTokenizerError(f"cannot load the tokenizer in {folder}: {e}") from e


def _check_architecture(config, task: str) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES[task]:
        raise UnsupportedArchitectureError(
            f"model type {model_type!r} is not supported for {task} "
            f"(supported: {', '.join(SUPPORTED_MODEL_TYPES[task])})"
        )


def _special_tokens(tokenizer) -> dict:
    def token_id(name):
        value = getattr(tokenizer, f"{name}_token_id", None)
        return int(value) if value is not None else None

    return {name: token_id(name) for name in ("pad", "mask", "unk", "bos", "eos", "cls", "sep")}


def _validate(task, model, score_module, aux_module, bundle: Path, max_length: int) -> dict:
    """Runs the graphs under onnxruntime on several shapes, with padding, and compares with torch."""
    import onnxruntime

    torch = _torch()
    embedding = model.get_input_embeddings()
    sessions = {
        name: onnxruntime.InferenceSession(str(bundle / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        for name in ("forward", "gradient", {"causal-lm": "next_token", "sentence-similarity": "embed"}.get(task))
        if name is not None
    }
    errors = {"forward_scores": 0.0, "gradient_scores": 0.0, "gradients": 0.0, "auxiliary": 0.0}
    cases = [(1, 4, 1, 1), (3, min(13, max_length), 2, 3), (4, min(9, max_length), 3, 2), (2, 2, 1, 1)]
    for seed, (batch, seq, n_targets, length) in enumerate(cases):
        length = min(length, seq - 1) if task == "causal-lm" else length
        ids, mask, targets = _example_inputs(task, model, batch, seq, n_targets, max(length, 1), seed, True)
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        feeds.update({name: t.numpy() for name, t in zip(TARGET_INPUTS[task], targets, strict=True)})
        embeds = embedding(ids).detach()
        with torch.no_grad():
            reference = score_module(embeds, mask, *targets).numpy()
        (scores,) = sessions["forward"].run(None, feeds)
        errors["forward_scores"] = max(errors["forward_scores"], float(np.abs(scores - reference).max()))
        leaf = embeds.clone().requires_grad_(True)
        with torch.enable_grad():
            (grad_reference,) = torch.autograd.grad(score_module(leaf, mask, *targets).sum(), leaf)
        grad_feeds = {name: value for name, value in feeds.items() if name != "input_ids"}
        grad_feeds["inputs_embeds"] = embeds.numpy()
        scores, grads = sessions["gradient"].run(None, grad_feeds)
        errors["gradient_scores"] = max(errors["gradient_scores"], float(np.abs(scores - reference).max()))
        scale = max(float(grad_reference.abs().max()), 1e-12)
        errors["gradients"] = max(errors["gradients"], float(np.abs(grads - grad_reference.numpy()).max()) / scale)
        aux_feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        aux_args = [embeds, mask]
        if task == "causal-lm":
            positions = mask.sum(1) - 1
            aux_feeds["positions"] = positions.numpy()
            aux_args.append(positions)
        if aux_module is not None:
            with torch.no_grad():
                expected = aux_module(*aux_args).numpy()
            (got,) = sessions["next_token" if task == "causal-lm" else "embed"].run(None, aux_feeds)
            errors["auxiliary"] = max(errors["auxiliary"], float(np.abs(got - expected).max()))
    return errors


def export(
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
) -> Path:
    """Exports a Hugging Face model (or its local directory) to an attribution bundle.

    Args:
        model: a model directory, or a transformers PreTrainedModel.
        task: "causal-lm", "sequence-classification" or "sentence-similarity".
        out_dir: the bundle directory to create.
        tokenizer: a directory or fast tokenizer; defaults to the model directory.
        score: what a target's score is: "logprob" (default), "prob" or "logit" for causal LMs;
            "logit" (default), "logprob" or "prob" for classifiers; "cosine" for similarity.
        max_length: longest input the bundle accepts; defaults to the model's position limit.
        opset: ONNX opset of the graphs.
        overwrite: replace an existing out_dir.
        tolerance: validation limits (see ExportTolerance).
        external_data: store weights in external files; None decides by size.
        optimize: also try ONNX Runtime's offline graph optimisation and keep it only where the
            outputs stay within tolerance and it is faster.
        progress: called with a line of text at each step.

    Returns the bundle path.
    """
    if task not in TASKS:
        raise UnknownTaskError(f"unknown task {task!r} (possible: {', '.join(TASKS)})")
    score = score or SCORE_KINDS[task][0]
    if score not in SCORE_KINDS[task]:
        raise ExportError(f"score {score!r} does not apply to {task} (possible: {', '.join(SCORE_KINDS[task])})")
    tolerance = tolerance or ExportTolerance()
    say = progress or (lambda line: None)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise OutputExistsError(f"{out} already exists (use overwrite=True / --overwrite to replace it)")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    started = time.perf_counter()
    torch = _torch()
    import onnx
    import transformers

    say("loading the model")
    model, tokenizer = _load(model, task, tokenizer)
    config = model.config
    position_limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    max_length = int(max_length or position_limit or 512)
    if position_limit and max_length > position_limit:
        raise ExportError(f"max_length {max_length} exceeds the model's {position_limit} positions")
    score_module, aux_module = _score_modules(model, task, score)
    embedding = model.get_input_embeddings()
    n_parameters = sum(p.numel() for p in model.parameters())
    external = external_data if external_data is not None else n_parameters * 4 > EXTERNAL_DATA_THRESHOLD

    out.mkdir(parents=True, exist_ok=True)
    # Distinct sizes above 1 keep symbolic tracing from merging or specialising dimensions.
    ids, mask, targets = _example_inputs(
        task, model, 2, min(11, max_length), 3, 5 if task == "causal-lm" else 1, 0, True
    )
    if task == "causal-lm" and min(11, max_length) <= 5:
        raise ExportError("max_length must be at least 6 to trace the graphs")
    target_names = TARGET_INPUTS[task]

    def forward_fn(input_ids, attention_mask, *target_tensors):
        return score_module(embedding(input_ids), attention_mask, *target_tensors)

    def gradient_fn(inputs_embeds, attention_mask, *target_tensors):
        with torch.enable_grad():
            leaf = inputs_embeds.requires_grad_(True)
            scores = score_module(leaf, attention_mask, *target_tensors)
            (grad,) = torch.autograd.grad(scores.sum(), leaf)
        return scores, grad

    say("exporting forward.onnx")
    _trace_and_export(
        forward_fn,
        (ids, mask, *targets),
        ("input_ids", "attention_mask", *target_names),
        ["scores"],
        _dynamic_axes(task, embeds=False),
        out / "forward.onnx",
        opset,
        external,
    )
    say("exporting gradient.onnx")
    _trace_and_export(
        gradient_fn,
        (embedding(ids).detach(), mask, *targets),
        ("inputs_embeds", "attention_mask", *target_names),
        ["scores", "embeds_grad"],
        _dynamic_axes(task, embeds=True),
        out / "gradient.onnx",
        opset,
        external,
    )
    graphs = {
        "forward": {
            "file": "forward.onnx",
            "inputs": ["input_ids", "attention_mask", *target_names],
            "outputs": ["scores"],
        },
        "gradient": {
            "file": "gradient.onnx",
            "inputs": ["inputs_embeds", "attention_mask", *target_names],
            "outputs": ["scores", "embeds_grad"],
        },
    }
    sequence_axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    if task == "sentence-similarity":
        say("exporting embed.onnx")
        _trace_and_export(
            lambda input_ids, attention_mask: aux_module(embedding(input_ids), attention_mask),
            (ids, mask),
            ("input_ids", "attention_mask"),
            ["sentence_embedding"],
            sequence_axes,
            out / "embed.onnx",
            opset,
            external,
        )
        graphs["embed"] = {
            "file": "embed.onnx",
            "inputs": ["input_ids", "attention_mask"],
            "outputs": ["sentence_embedding"],
        }
    if task == "causal-lm":
        say("exporting next_token.onnx")
        positions = (mask.sum(1) - 1).to(torch.long)
        _trace_and_export(
            lambda input_ids, attention_mask, positions: aux_module(embedding(input_ids), attention_mask, positions),
            (ids, mask, positions),
            ("input_ids", "attention_mask", "positions"),
            ["logits"],
            {**sequence_axes, "positions": {0: "batch"}},
            out / "next_token.onnx",
            opset,
            external,
        )
        graphs["next_token"] = {
            "file": "next_token.onnx",
            "inputs": ["input_ids", "attention_mask", "positions"],
            "outputs": ["logits"],
        }

    say("writing the tokenizer and the embedding matrix")
    # Padding and truncation are attribfast's job (batching, explicit length errors), not the tokenizer's.
    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(out / "tokenizer.json"))
    np.save(out / "embeddings.npy", embedding.weight.detach().numpy().astype(np.float32))

    say("validating against torch")
    errors = _validate(task, model, score_module, aux_module, out, max_length)
    failures = [
        f"{name} {value:.3g} > {limit:.3g}"
        for name, value, limit in (
            ("forward scores", errors["forward_scores"], tolerance.scores),
            ("gradient scores", errors["gradient_scores"], tolerance.scores),
            ("gradients (relative)", errors["gradients"], tolerance.gradients),
            ("next-token logits / sentence embeddings", errors["auxiliary"], tolerance.scores),
        )
        if value > limit
    ]
    if failures:
        raise ExportError("exported graphs disagree with torch: " + "; ".join(failures))

    optimization = None
    if optimize:
        say("trying ONNX Runtime's offline optimisation")
        optimization = _try_optimize(task, model, score_module, aux_module, out, max_length, tolerance)

    labels = None
    if task == "sequence-classification":
        labels = {str(k): v for k, v in getattr(config, "id2label", {}).items()}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "score": score,
        "architecture": (config.architectures or [type(model).__name__])[0],
        "model_type": config.model_type,
        "hidden_size": int(embedding.weight.shape[1]),
        "vocab_size": int(embedding.weight.shape[0]),
        "num_heads": int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_head", 0) or 1),
        "num_layers": int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layer", 0) or 1),
        "special_tokens": _special_tokens(tokenizer),
        "special_ids": sorted({int(i) for i in tokenizer.all_special_ids}),
        "max_length": max_length,
        "causal": task == "causal-lm",
        "labels": labels,
        "opset": opset,
        "graphs": graphs,
        "tokenizer": "tokenizer.json",
        "embeddings": "embeddings.npy",
        "export_errors": errors,
        "tolerance": asdict(tolerance),
        "optimization": optimization,
        "versions": {
            "attribfast": _version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnx": onnx.__version__,
            "python": platform.python_version(),
        },
        "export_seconds": round(time.perf_counter() - started, 2),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    manifest["files"] = {f.name: sha256_of(f) for f in sorted(out.iterdir()) if f.is_file() and f.name != MANIFEST}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    say(f"done in {manifest['export_seconds']} s, peak memory {manifest['peak_memory_mb']} MB")
    return out


def _version() -> str:
    from . import __version__

    return __version__


def _try_optimize(task, model, score_module, aux_module, out: Path, max_length: int, tolerance) -> dict:
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
            errors = _validate(task, model, score_module, aux_module, out, max_length)
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


def _time_graph(path: Path, task: str, model, max_length: int) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids, mask, targets = _example_inputs(task, model, 8, min(32, max_length), 2, 2, 0, False)
    feeds = {"attention_mask": mask.numpy()}
    feeds.update({n: t.numpy() for n, t in zip(TARGET_INPUTS[task], targets, strict=True)})
    first = session.get_inputs()[0].name
    feeds[first] = ids.numpy() if first == "input_ids" else model.get_input_embeddings()(ids).detach().numpy()
    session.run(None, feeds)
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        session.run(None, feeds)
        timings.append(time.perf_counter() - start)
    return float(np.median(timings))
