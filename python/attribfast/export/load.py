"""Loading a Hugging Face model and its tokenizer for export, quietly, and checking what the task needs;
the export's import-time objects kept out of the garbage collector's way."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

from ..errors import ExportError, MissingTokenizerError, UnsupportedArchitectureError
from ..tasks import Task
from .marian import is_marian, marian_fast_tokenizer

TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def torch_or_error():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ExportError("export needs torch and transformers: pip install 'attribfast[export]'") from e
    return torch


# Full collections during an export: one per this many young (generation-1) collections instead of
# CPython's 10. With the import-time objects frozen, each full collection still scanned everything
# tracing had made so far and found almost nothing (7 of them, ~1 s, in a tiny GPT-2 export); the
# young generations still run as usual, so short-lived cycles are freed as they go.
FULL_COLLECTION_EVERY = 1000


def imports_frozen(export: Callable) -> Callable:
    """Runs the export with the objects of torch, transformers and ONNX (about a million, made at
    import) frozen out of the garbage collector: tracing makes millions of short-lived objects,
    and each full collection it triggers would scan them all again (~0.3 s each). Full collections
    are rare during the export (FULL_COLLECTION_EVERY), and the imports themselves run without
    automatic collections (four full ones, 0.3 s, found only a few hundred objects). Unfrozen and
    the collector's thresholds restored after; left alone where the caller has frozen objects
    itself. Cyclic garbage that exists when the export starts (a previous small export's model,
    which is not collected at once) is frozen with them and freed by a collection after the export."""

    @functools.wraps(export)
    def run(*args, **kwargs):
        if gc.get_freeze_count() or not _exporter_imported():
            return export(*args, **kwargs)
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(thresholds[0], thresholds[1], max(thresholds[2], FULL_COLLECTION_EVERY))
        try:
            return export(*args, **kwargs)
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()

    return run


def _exporter_imported() -> bool:
    """Imports torch, transformers and torch's ONNX translator (without automatic garbage
    collections); False where they cannot be (the export itself then says what is missing)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        torch_or_error()
        from torch.onnx._internal.exporter import _core  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    finally:
        if enabled:
            gc.enable()
    return True


@contextlib.contextmanager
def quiet():
    """Silences what torch and transformers print that a user cannot act on: the ONNX registry's
    "torchvision is not installed" lines, tracer warnings, the weight-loading progress bar."""
    import transformers

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    bars = transformers.utils.logging.is_progress_bar_enabled()
    verbosity = transformers.utils.logging.get_verbosity()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        if bars:
            transformers.utils.logging.enable_progress_bar()
        transformers.utils.logging.set_verbosity(verbosity)


def load_model(model_or_dir, task: Task, tokenizer, say=None):
    """(model in fp32 eval mode with eager attention, fast tokenizer). say: told of a converted tokenizer."""
    torch = torch_or_error()
    import transformers

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if isinstance(model_or_dir, str | os.PathLike):
        model_dir = Path(model_or_dir)
        if not (model_dir / "config.json").is_file():
            raise ExportError(f"{model_dir} is not a Hugging Face model directory (no config.json)")
        tokenizer = tokenizer if tokenizer is not None else model_dir
        config = transformers.AutoConfig.from_pretrained(model_dir, local_files_only=True)
        check_config(config, task)
        auto = getattr(transformers, task.auto_class)
        options = {"attn_implementation": "eager", "dtype": torch.float32}
        if _is_moe(config):
            # The grouped-mm experts kernel asks for bf16 under tracing; batched matmuls trace in fp32.
            options["experts_implementation"] = "batched_mm"
        with quiet():
            try:
                model = auto.from_pretrained(model_dir, local_files_only=True, **options)
            except ValueError as e:
                raise UnsupportedArchitectureError(
                    f"{config.model_type!r} cannot be loaded for {task.name} ({transformers.__name__} says: {e})"
                ) from None
    elif isinstance(model_or_dir, torch.nn.Module):
        model = model_or_dir
        if not hasattr(model, "config"):
            raise UnsupportedArchitectureError(
                "export takes a Hugging Face model (a PreTrainedModel with a config) or its directory"
            )
        check_config(model.config, task)
        _set_implementations(model)
        if tokenizer is None:
            raise MissingTokenizerError("exporting a module needs tokenizer= (a directory or a fast tokenizer)")
    else:
        raise ExportError(f"cannot export {type(model_or_dir).__name__}: give a model directory or a module")
    if isinstance(tokenizer, str | os.PathLike):
        tokenizer = load_tokenizer(Path(tokenizer), say)
    if not hasattr(tokenizer, "backend_tokenizer"):
        raise MissingTokenizerError("the tokenizer must be a fast (tokenizers-backed) tokenizer")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model = model.eval().float()
    if model.get_input_embeddings() is None:
        raise UnsupportedArchitectureError(f"{type(model).__name__} has no input embeddings to attribute to")
    task.check_model(model)
    return model, tokenizer


def load_tokenizer(folder: Path, say=None):
    import transformers

    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise MissingTokenizerError(f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    if not (folder / "tokenizer.json").is_file() and is_marian(folder):
        # transformers has only a slow (sentencepiece) tokenizer for Marian, and no converter.
        fast, note = marian_fast_tokenizer(folder)
        (say or (lambda line: None))(note)
        return fast
    try:
        with quiet():
            return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as e:
        raise MissingTokenizerError(f"cannot load the tokenizer in {folder}: {e}") from e


def check_config(config, task: Task) -> None:
    """Refuses early what cannot work, naming the missing capability; everything else is tried and
    then judged by the validation against torch."""
    encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    if task.name == "causal-lm" and encoder_decoder:
        raise UnsupportedArchitectureError(
            f"{config.model_type!r} is an encoder-decoder model: export it with task='seq2seq', not causal-lm"
        )
    if task.name == "seq2seq" and not encoder_decoder:
        raise UnsupportedArchitectureError(
            f"{config.model_type!r} is not an encoder-decoder model; seq2seq needs one (t5, bart, marian, mbart, ...)"
        )


def _is_moe(config) -> bool:
    return any(getattr(config, name, None) for name in ("num_local_experts", "num_experts", "n_routed_experts"))


def _set_implementations(model) -> None:
    with quiet():
        model.set_attn_implementation("eager")
        if _is_moe(model.config) and model._can_set_experts_implementation():
            model.set_experts_implementation("batched_mm")
