"""The result of every attribution: a tokens x targets matrix with everything needed to read it."""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import InvalidInputError

RESULT_FORMAT = "attribfast-attribution"
RESULT_VERSION = 1
NORMALIZATIONS = ("maxabs", "l1")


@dataclass(frozen=True, kw_only=True, eq=False)
class Attribution:
    """Attribution of targets to input tokens.

    matrix: [n_tokens, n_targets] float32. tokens: readable token strings (spaces made visible).
    token_ids, offsets ([n_tokens, 2] character spans in text), special (True for special tokens).
    targets: a label per column. target_scores: the clean score of each target. method and
    parameters: how it was computed. standard_errors: per cell, for sampling methods. deltas and
    steps: IG's convergence delta and steps used, per target. evaluations: model rows run.
    token_positions: token positions those rows computed (batch x padded length of every model run;
    prefix reuse lowers it, not the rows); 0 where not counted (gradient methods).
    """

    matrix: np.ndarray
    tokens: tuple[str, ...]
    targets: tuple[str, ...]
    method: str
    parameters: dict = field(default_factory=dict)
    text: str = ""
    token_ids: np.ndarray | None = None
    offsets: np.ndarray | None = None
    special: np.ndarray | None = None
    target_scores: np.ndarray | None = None
    standard_errors: np.ndarray | None = None
    deltas: np.ndarray | None = None
    steps: np.ndarray | None = None
    task: str = ""
    score: str = ""
    bundle_hash: str = ""
    evaluations: int = 0
    token_positions: int = 0
    seconds: float = 0.0

    def __post_init__(self):
        matrix = np.asarray(self.matrix, dtype=np.float32)
        if matrix.ndim != 2:
            raise InvalidInputError(f"matrix must be 2-D [tokens, targets], got shape {matrix.shape}")
        n_tokens, n_targets = matrix.shape
        set_ = object.__setattr__
        set_(self, "matrix", matrix)
        set_(self, "tokens", tuple(str(t) for t in self.tokens))
        set_(self, "targets", tuple(str(t) for t in self.targets))
        if len(self.tokens) != n_tokens:
            raise InvalidInputError(f"{len(self.tokens)} tokens for a matrix of {n_tokens} rows")
        if len(self.targets) != n_targets:
            raise InvalidInputError(f"{len(self.targets)} targets for a matrix of {n_targets} columns")
        expected = {
            "token_ids": ((n_tokens,), np.int64),
            "offsets": ((n_tokens, 2), np.int64),
            "special": ((n_tokens,), np.bool_),
            "target_scores": ((n_targets,), np.float64),
            "standard_errors": ((n_tokens, n_targets), np.float32),
            "deltas": ((n_targets,), np.float64),
            "steps": ((n_targets,), np.int64),
        }
        for name, (shape, dtype) in expected.items():
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value, dtype=dtype)
            if value.shape != shape:
                raise InvalidInputError(f"{name} must have shape {shape}, got {value.shape}")
            set_(self, name, value)

    @property
    def shape(self) -> tuple[int, int]:
        """(n_tokens, n_targets)."""
        return self.matrix.shape

    def __repr__(self) -> str:
        return (
            f"Attribution(method={self.method!r}, tokens={len(self.tokens)}, targets={list(self.targets)}, "
            f"task={self.task!r})"
        )

    # Views -------------------------------------------------------------------------------------

    def to_pandas(self):
        """A DataFrame: one row per token (index = readable tokens), one column per target."""
        import pandas as pd

        return pd.DataFrame(self.matrix, index=list(self.tokens), columns=list(self.targets))

    def to_dict(self) -> dict:
        """Plain JSON-ready values."""
        out = {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "method": self.method,
            "parameters": self.parameters,
            "task": self.task,
            "score": self.score,
            "text": self.text,
            "tokens": list(self.tokens),
            "targets": list(self.targets),
            "matrix": self.matrix.tolist(),
            "bundle_hash": self.bundle_hash,
            "evaluations": self.evaluations,
            "token_positions": self.token_positions,
            "seconds": self.seconds,
        }
        for name in ("token_ids", "offsets", "special", "target_scores", "standard_errors", "deltas", "steps"):
            value = getattr(self, name)
            out[name] = None if value is None else value.tolist()
        return out

    # Files ---------------------------------------------------------------------------------------

    _ARRAYS = ("matrix", "token_ids", "offsets", "special", "target_scores", "standard_errors", "deltas", "steps")

    def save(self, path: str | os.PathLike) -> None:
        """Writes one .npz holding the arrays bit for bit and the rest as JSON (lossless)."""
        meta = {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "tokens": list(self.tokens),
            "targets": list(self.targets),
            "method": self.method,
            "parameters": self.parameters,
            "text": self.text,
            "task": self.task,
            "score": self.score,
            "bundle_hash": self.bundle_hash,
            "evaluations": self.evaluations,
            "token_positions": self.token_positions,
            "seconds": self.seconds,
        }
        arrays = {name: getattr(self, name) for name in self._ARRAYS if getattr(self, name) is not None}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        with open(path, "wb") as f:
            f.write(buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Attribution:
        """Reads a result written by save(), exactly as it was saved."""
        with np.load(path, allow_pickle=False) as data:
            if "meta" not in data:
                raise InvalidInputError(f"{path} is not a saved Attribution")
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != RESULT_FORMAT:
                raise InvalidInputError(f"{path} is not a saved Attribution")
            if meta.get("version", 0) > RESULT_VERSION:
                raise InvalidInputError(f"{path} was saved by a newer attribfast (result version {meta['version']})")
            arrays = {name: data[name] for name in cls._ARRAYS if name in data}
        meta.pop("format")
        meta.pop("version")
        meta["tokens"] = tuple(meta["tokens"])
        meta["targets"] = tuple(meta["targets"])
        return cls(**meta, **arrays)

    # Transformations -------------------------------------------------------------------------

    def normalize(self, mode: str | None = "maxabs") -> Attribution:
        """Scales each column: by its max |value| ("maxabs"), its sum of |values| ("l1"), or not (None)."""
        if mode is None:
            return self
        if mode not in NORMALIZATIONS:
            raise InvalidInputError(f"normalize takes one of {', '.join(NORMALIZATIONS)} or None, got {mode!r}")
        reduce = np.max if mode == "maxabs" else np.sum
        scale = reduce(np.abs(self.matrix.astype(np.float64)), axis=0)
        scale[scale == 0] = 1.0
        errors = None if self.standard_errors is None else (self.standard_errors / scale).astype(np.float32)
        return replace(
            self,
            matrix=(self.matrix / scale).astype(np.float32),
            standard_errors=errors,
            parameters={**self.parameters, "normalized": mode},
        )

    def aggregate(self, level: str = "word") -> Attribution:
        """Sums subword rows into whitespace-separated words (via offsets); special tokens stay alone.

        Standard errors are combined as if independent (root of the sum of squares).
        """
        if level != "word":
            raise InvalidInputError(f"aggregate supports 'word', got {level!r}")
        if self.offsets is None:
            raise InvalidInputError("word aggregation needs token offsets")
        groups = word_groups(self.text, self.offsets, self.special)
        n_words = max(groups) + 1
        matrix = np.zeros((n_words, self.matrix.shape[1]), np.float64)
        squares = np.zeros_like(matrix)
        starts = np.full(n_words, np.iinfo(np.int64).max)
        ends = np.zeros(n_words, np.int64)
        special = np.zeros(n_words, bool)
        labels = [""] * n_words
        for row, group in enumerate(groups):
            matrix[group] += self.matrix[row]
            if self.standard_errors is not None:
                squares[group] += self.standard_errors[row].astype(np.float64) ** 2
            start, end = self.offsets[row]
            if self.special is not None and self.special[row]:
                special[group] = True
                labels[group] = self.tokens[row]
            starts[group] = min(starts[group], start)
            ends[group] = max(ends[group], end)
        for group in range(n_words):
            if not labels[group]:
                labels[group] = self.text[starts[group] : ends[group]].strip()
        starts[starts == np.iinfo(np.int64).max] = 0
        return replace(
            self,
            matrix=matrix.astype(np.float32),
            tokens=tuple(labels),
            token_ids=None,
            offsets=np.stack([starts, ends], axis=1),
            special=special,
            standard_errors=None if self.standard_errors is None else np.sqrt(squares).astype(np.float32),
            parameters={**self.parameters, "aggregated": "word"},
        )

    # Display ---------------------------------------------------------------------------------

    def plot(
        self,
        ax=None,
        annotate: bool = True,
        cmap: str = "RdYlGn",
        vmax: float | str | None = None,
        scale: str = "global",
        title: str | None = None,
    ):
        """Heatmap: rows = tokens, columns = targets, 4-decimal annotations, colours centred at 0.

        Draws on ax if given (labels and colour bar stay inside it); returns (Figure, Axes).
        vmax: the symmetric colour limit: None (largest |value|), a number, or a percentile of
        |values| such as "p99", which keeps a few outliers from turning every other cell pale.
        scale: "global" (one colour range) or "column" (each target against its own limit).
        Long inputs thin their tick labels; annotations drop out when cells are too small.
        """
        from .plot import heatmap

        return heatmap(
            self.matrix,
            self.tokens,
            self.targets,
            ax=ax,
            annotate=annotate,
            cmap=cmap,
            vmax=vmax,
            scale=scale,
            title=title,
        )

    def to_html(self, vmax: float | str | None = None, scale: str = "global") -> str:
        """HTML fragment: per target, the input text with each token on its colour (green raises the
        target's score, red lowers it) and its value printed beneath, plus a colour legend. The text
        keeps its own whitespace, so it wraps. vmax and scale as in plot()."""
        from .htmlview import render

        return render(self, vmax=vmax, scale=scale)

    def save_html(self, path: str | os.PathLike, vmax: float | str | None = None, scale: str = "global") -> None:
        """Writes the HTML view as a standalone page (UTF-8)."""
        from .htmlview import document

        with open(path, "w", encoding="utf-8") as f:
            f.write(document(self, vmax=vmax, scale=scale))

    def _repr_html_(self) -> str:
        return self.to_html()


def word_groups(text: str, offsets: np.ndarray, special: np.ndarray | None) -> list[int]:
    """Word index of each token: the whitespace-separated chunk of text its first character falls in;
    special tokens (and tokens without a span) form words of their own."""
    chunks = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    groups: list[int] = []
    last_chunk = None
    next_group = 0
    for row, (start, end) in enumerate(np.asarray(offsets)):
        is_special = special is not None and bool(special[row])
        chunk = None
        if not is_special and end > start:
            first = start
            while first < end and text[first].isspace():
                first += 1
            chunk = next((i for i, (a, b) in enumerate(chunks) if a <= first < b), None)
        if chunk is not None and chunk == last_chunk:
            groups.append(next_group - 1)
        else:
            groups.append(next_group)
            next_group += 1
        last_chunk = chunk
    return groups
