"""One corpus row's result as plain columns, and back to an Attribution.

The columns (docs/corpus.md): `tokens`, `targets` (lists of strings), `matrix` ([n_tokens, n_targets]
float32), `target_scores` (float64 per target), `method`, `parameters` (JSON text) and `error`
("" on success; the typed error's name and message otherwise, with the other columns empty).
"""

from __future__ import annotations

import json

import numpy as np

from ..attribution import Attribution

RESULT_COLUMNS = ("tokens", "targets", "matrix", "target_scores", "method", "parameters", "error")


def to_record(result: Attribution) -> dict:
    return {
        "tokens": list(result.tokens),
        "targets": list(result.targets),
        "matrix": np.asarray(result.matrix, np.float32),
        "target_scores": (
            np.asarray(result.target_scores, np.float64)
            if result.target_scores is not None
            else np.zeros(0, np.float64)
        ),
        "method": result.method,
        "parameters": json.dumps(result.parameters, sort_keys=True),
        "error": "",
    }


def error_record(error: Exception, method: str) -> dict:
    return {
        "tokens": [],
        "targets": [],
        "matrix": np.zeros((0, 0), np.float32),
        "target_scores": np.zeros(0, np.float64),
        "method": method,
        "parameters": "{}",
        "error": f"{type(error).__name__}: {error}",
    }


def to_attribution(row, text_column: str = "text") -> Attribution:
    """The Attribution of one successful output row (a dict, or a pandas row)."""
    if row["error"]:
        raise ValueError(f"this row failed: {row['error']}")
    tokens, targets = tuple(row["tokens"]), tuple(row["targets"])
    matrix = _matrix(row["matrix"], len(tokens), len(targets))
    scores = np.asarray(row["target_scores"], np.float64)
    return Attribution(
        matrix=matrix,
        tokens=tokens,
        targets=targets,
        method=row["method"],
        parameters=json.loads(row["parameters"]),
        text=str(row.get(text_column, "")) if hasattr(row, "get") else "",
        target_scores=scores if scores.size else None,
    )


def _matrix(value, n_tokens: int, n_targets: int) -> np.ndarray:
    """A matrix from Parquet (a list of row lists) or Ray (an array), as [n_tokens, n_targets] float32."""
    if isinstance(value, np.ndarray) and value.dtype != object:
        return value.astype(np.float32).reshape(n_tokens, n_targets)
    rows = [np.asarray(r, np.float32) for r in value]
    return np.stack(rows).reshape(n_tokens, n_targets) if rows else np.zeros((n_tokens, n_targets), np.float32)
