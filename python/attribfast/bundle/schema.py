"""The manifest's schema: one JSON Schema, checked once at load, errors naming the field."""

from __future__ import annotations

import jsonschema

from ..errors import BundleError

_ID = {"type": "integer", "minimum": 0}
_NAME_LIST = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}
_GRAPH = {
    "type": "object",
    "required": ["file", "inputs", "outputs"],
    "properties": {"file": {"type": "string", "minLength": 1}, "inputs": _NAME_LIST, "outputs": _NAME_LIST},
}


# An int8 copy's record (attribfast.quantize): each graph's precision, and the bundle it came from.
_QUANTIZATION = {
    "type": "object",
    "required": ["method", "graphs", "source"],
    "properties": {
        "method": {"enum": ["dynamic-int8"]},
        "graphs": {"type": "object", "additionalProperties": {"enum": ["int8", "float32"]}},
        "source": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "per_channel": {"type": "boolean"},
        "weight_type": {"enum": ["int8", "uint8"]},
    },
}


def manifest_schema(tasks: tuple[str, ...], schema_version: int) -> dict:
    """The JSON Schema of a bundle manifest (docs/bundle-format.md describes each field)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": [
            "schema_version", "task", "hidden_size", "vocab_size", "num_heads",
            "special_tokens", "graphs", "tokenizer", "embeddings", "files",
        ],
        "properties": {
            "schema_version": {"type": "integer", "minimum": 1, "maximum": schema_version},
            "task": {"enum": list(tasks)},
            "score": {"type": "string"},
            "hidden_size": {"type": "integer", "minimum": 1},
            "vocab_size": {"type": "integer", "minimum": 1},
            "num_heads": {"type": "integer", "minimum": 1},
            "num_layers": {"type": "integer", "minimum": 1},
            "special_tokens": {
                "type": "object",
                "additionalProperties": {"anyOf": [_ID, {"type": "null"}]},
            },
            "special_ids": {"type": "array", "items": _ID},
            "max_length": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
            "causal": {"type": "boolean"},
            "labels": {
                "anyOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "propertyNames": {"pattern": "^(0|[1-9][0-9]*)$"},
                        "additionalProperties": {"type": "string"},
                    },
                ]
            },
            "dtype": {"enum": ["float32", "float16"]},
            "quantization": _QUANTIZATION,
            "graphs": {
                "type": "object",
                "required": ["forward"],
                "additionalProperties": _GRAPH,
            },
            "tokenizer": {"type": "string", "minLength": 1},
            "embeddings": {"type": "string", "minLength": 1},
            "files": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            },
        },
    }


def check_manifest(manifest, tasks: tuple[str, ...], schema_version: int, where: str) -> None:
    """BundleError naming the first offending field (the most specific one jsonschema finds)."""
    validator = jsonschema.Draft202012Validator(manifest_schema(tasks, schema_version))
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest))
    if error is None:
        return
    field = ".".join(str(part) for part in error.absolute_path) or "(the manifest itself)"
    if error.validator == "required":
        missing = next((name for name in error.validator_value if name not in error.instance), "?")
        field = f"{field}.{missing}" if error.absolute_path else missing
        raise BundleError(f"{where}: manifest field {field} is missing")
    raise BundleError(f"{where}: manifest field {field} is invalid: {_short(error.message)}")


def _short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."
