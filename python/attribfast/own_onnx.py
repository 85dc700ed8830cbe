"""Bringing your own ONNX model, as optimum (or torch.onnx.export) writes it: a model file or a
directory with model.onnx, config.json and tokenizer.json; the tokenizer as a path, a
tokenizers.Tokenizer or a transformers fast tokenizer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .engine import Spec
from .errors import InvalidInputError, MissingTokenizerError, ModelLoadError

# Integer inputs a tokenizer-fed graph may take besides the ids and the mask: fed with zeros
# (one segment for BERT-style models, as the tokenizer gives a single text).
ZERO_INPUTS = ("token_type_ids",)
SCORE_OUTPUTS = ("scores", "logits")


def own_onnx_spec(model, *, tokenizer, ids_input, mask_input, score_output, labels, pad_id, causal, max_length) -> Spec:
    path = Path(model)
    config = {}
    if path.is_dir():
        folder = path
        path = folder / "model.onnx"
        if not path.is_file():
            raise ModelLoadError(f"{folder} has no model.onnx")
        if (folder / "config.json").is_file():
            config = _read_config(folder / "config.json")
        if tokenizer is None and (folder / "tokenizer.json").is_file():
            tokenizer = folder / "tokenizer.json"
    tokenizer = _tokenizer(tokenizer)
    if labels is None and config.get("id2label"):
        labels = _labels_of(config["id2label"])
    if pad_id is None:
        pad_id = _pad_id(tokenizer, config)
    _check_count("pad_id", pad_id, 0)
    if max_length is None and config.get("max_position_embeddings"):
        max_length = config["max_position_embeddings"]
    if max_length is not None:
        _check_count("max_length", max_length, 1)
    for key in ("hidden_size", "num_attention_heads", "vocab_size"):
        if key in config:
            _check_count(f"config.json {key}", config[key], 1)
    return Spec(
        task="scores",
        graphs={"forward": path},
        tokenizer=tokenizer,
        special_tokens={"pad": pad_id},
        special_ids=frozenset(),
        labels=tuple(labels) if labels is not None else None,
        max_length=None if max_length is None else int(max_length),
        hidden_size=int(config.get("hidden_size", 768)),
        num_heads=int(config.get("num_attention_heads", 12)),
        vocab_size=config.get("vocab_size"),
        causal=causal,
        score="model output",
        ids_input=ids_input,
        mask_input=mask_input or "",
        score_output=score_output or "",
    )


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return config


def _labels_of(id2label) -> list[str]:
    if not isinstance(id2label, dict) or any(str(i) not in id2label for i in range(len(id2label))):
        raise ModelLoadError("config.json's id2label must map every id 0..n-1 to a label")
    return [str(id2label[str(i)]) for i in range(len(id2label))]


def _check_count(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not minimum <= value < 2**62:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _tokenizer(tokenizer):
    """A tokenizers.Tokenizer with padding and truncation off, from whatever the user gave."""
    if tokenizer is None:
        return None
    if isinstance(tokenizer, str | os.PathLike):
        file = Path(tokenizer)
        if file.is_dir():
            file = file / "tokenizer.json"
        if not file.is_file():
            raise MissingTokenizerError(f"no tokenizer file at {file}")
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(os.fspath(file))
    elif hasattr(tokenizer, "backend_tokenizer"):  # a transformers fast tokenizer
        import copy

        tokenizer = copy.deepcopy(tokenizer.backend_tokenizer)
    elif not (hasattr(tokenizer, "encode") and hasattr(tokenizer, "no_padding")):
        raise MissingTokenizerError(
            f"tokenizer must be a tokenizer.json path, a tokenizers.Tokenizer or a transformers fast tokenizer, "
            f"got {type(tokenizer).__name__}"
        )
    else:
        import copy

        tokenizer = copy.deepcopy(tokenizer)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _pad_id(tokenizer, config: dict) -> int:
    if tokenizer is not None and tokenizer.padding is not None:
        return int(tokenizer.padding["pad_id"])
    if config.get("pad_token_id") is not None:
        return int(config["pad_token_id"])
    if tokenizer is not None:
        for token in ("[PAD]", "<pad>", "<|pad|>"):
            if tokenizer.token_to_id(token) is not None:
                return int(tokenizer.token_to_id(token))
    return 0


def check_graph(session, spec: Spec) -> int:
    """Checks the graph's inputs and picks its score output; returns the number of score columns."""
    names = {i["name"] for i in session.inputs}
    expected = {spec.ids_input} | ({spec.mask_input} if spec.mask_input else set())
    zero = tuple(name for name in ZERO_INPUTS if name in names - expected)
    if names != expected | set(zero):
        raise InvalidInputError(
            f"the model's inputs are {sorted(names)}; attribfast feeds only {sorted(expected | set(ZERO_INPUTS))} "
            "(set ids_input / mask_input)"
        )
    spec.zero_inputs = zero
    outputs = {o["name"]: o for o in session.outputs}
    if not spec.score_output:
        floats = [name for name, o in outputs.items() if o["dtype"].kind == "f"]
        named = [name for name in SCORE_OUTPUTS if name in outputs]
        if not named and len(floats) != 1:
            raise InvalidInputError(f"say which output holds the scores: score_output= one of {', '.join(outputs)}")
        spec.score_output = named[0] if named else floats[0]
    if spec.score_output not in outputs:
        raise InvalidInputError(f"the model has no output {spec.score_output!r} (outputs: {', '.join(outputs)})")
    shape = outputs[spec.score_output]["shape"]
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise InvalidInputError(f"the score output must have shape [batch, n_scores] with fixed n_scores, got {shape}")
    if spec.labels is not None and len(spec.labels) != shape[1]:
        raise InvalidInputError(f"{len(spec.labels)} labels for {shape[1]} score columns")
    return shape[1]
